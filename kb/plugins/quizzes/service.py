"""The attempt flow, 错题本/每日一练 scheduling and statistics (no Flask views here)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import String, exists, func, insert, literal, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from kb import db, emit
from kb.events import QuizPassed
from kb.hotread import HotRead
from kb.models import OrgUnit, User, report_members, utcnow

from .grading import grade
from .grading import score as percent
from .models import Answer, Attempt, Daily, Question, Quiz, ReviewCard

GRACE = timedelta(seconds=5)  # in-flight requests at the deadline; the client cannot extend it


class QuizError(Exception):
    """A refused action, shown to the person (``str(exc)`` is Chinese UI text)."""


# -- visibility ---------------------------------------------------------------------------------

def _org_path(user) -> str | None:
    org = getattr(user, "org_unit", None)
    return org.path if org is not None else None


def _county_rule(org_path):
    """Who may see a quiz, for a person whose org path is ``org_path`` (a bound parameter):
    shipped quizzes, banks imported without a unit, and banks of the person's own unit or a
    unit above it, i.e. the person's path starts with the bank unit's materialised path (one
    primary-key look-up per bank; no person's org path means none of those banks)."""
    o = OrgUnit.__table__
    return or_(Quiz.origin == "file", Quiz.org_unit_id.is_(None),
               exists().where(o.c.id == Quiz.org_unit_id, org_path.like(o.c.path + "%")))


def visible_quizzes_query(user):
    """Quizzes a person may take: shipped ones, and imported banks of their own county."""
    q = select(Quiz).where(Quiz.is_active.is_(True))
    if getattr(user, "role", None) == "admin":
        return q
    return q.where(_county_rule(literal(_org_path(user), String)))


def _panel_rows_statement(admin: bool):
    """The statement of :func:`lesson_panel_rows` (bound parameters)."""
    from sqlalchemy import bindparam

    q, a = Quiz.__table__, Attempt.__table__
    stmt = (select(q.c.slug, q.c.title, q.c.grading, a.c.number, a.c.score, a.c.passed)
            .select_from(q.outerjoin(a, (a.c.quiz_id == q.c.id)
                                     & (a.c.user_id == bindparam("user_id"))
                                     & (a.c.status == "submitted")))
            .where(q.c.is_active.is_(True), q.c.course_slug == bindparam("course_slug"))
            .order_by(q.c.title, q.c.id, a.c.number))
    if not admin:  # the rule of visible_quizzes_query
        stmt = stmt.where(_county_rule(bindparam("org_path", type_=String)))
    return stmt


# Made on nearly every signed-in lesson page: on the driver's cursor (kb.hotread).
_PANEL_ROWS = {admin: HotRead(lambda admin=admin: _panel_rows_statement(admin)) for admin in (False, True)}


def lesson_panel_rows(user, course_slug: str) -> tuple:
    """The quizzes of a course the person may take (the rule of :func:`visible_quizzes_query`),
    with the attempt that counts for each (:func:`quiz_result`): ``((slug, title, score,
    passed), ...)`` ordered by title; score and passed are None without a submitted attempt.
    One query, no ORM objects."""
    admin = getattr(user, "role", None) == "admin"
    params = {"user_id": user.id, "course_slug": course_slug}
    if not admin:
        params["org_path"] = _org_path(user)
    best: dict[str, list] = {}
    for slug, title, grading, number, score, passed in _PANEL_ROWS[admin].all(params):
        entry = best.setdefault(slug, [title, None])
        if number is None:
            continue
        rank = number if grading == "last" else (score or 0, -number)
        if entry[1] is None or rank > entry[1][0]:
            entry[1] = (rank, score, passed)
    return tuple((slug, title, *(counted[1:] if counted else (None, None)))
                 for slug, (title, counted) in best.items())


def get_visible_quiz(user, slug: str) -> Quiz | None:
    return db.session.scalar(visible_quizzes_query(user).where(Quiz.slug == slug))


def staff_scope_prefix(user) -> str | None:
    """The org path under which a staff member's people live (None: no one)."""
    if user.role == "admin":
        return "/"
    if user.role == "county_staff" and user.org_unit is not None:
        return user.org_unit.path
    if user.role in ("chair", "secretary") and user.org_unit is not None:
        return user.org_unit.path
    return None


def managed_quizzes_query(user):
    """Quizzes a staff member may manage (export, see statistics for)."""
    q = select(Quiz).where(Quiz.is_active.is_(True))
    if user.role == "admin":
        return q
    return q.where(_county_rule(literal(_org_path(user), String)))


# -- attempts -----------------------------------------------------------------------------------

def attempts_of(user_id: int, quiz_id: int) -> list[Attempt]:
    return list(db.session.scalars(select(Attempt).where(
        Attempt.user_id == user_id, Attempt.quiz_id == quiz_id).order_by(Attempt.number)))


def close_expired(user_id: int, quiz_id: int | None = None) -> None:
    """Grade every open attempt of the person whose time is up (on what was saved)."""
    q = select(Attempt).where(Attempt.user_id == user_id, Attempt.status == "open",
                              Attempt.deadline.is_not(None))
    if quiz_id is not None:
        q = q.where(Attempt.quiz_id == quiz_id)
    now = utcnow()
    for attempt in db.session.scalars(q).all():
        if attempt.deadline + GRACE < now:
            finalize(attempt, expired=True)


def is_expired(attempt: Attempt, now: datetime | None = None) -> bool:
    return attempt.deadline is not None and (now or utcnow()) > attempt.deadline + GRACE


def attempts_left(quiz: Quiz, user_id: int) -> int | None:
    if not quiz.attempts_allowed:
        return None
    used = db.session.scalar(select(func.count()).select_from(Attempt).where(
        Attempt.user_id == user_id, Attempt.quiz_id == quiz.id))
    return max(0, quiz.attempts_allowed - used)


def draw_questions(quiz: Quiz, user_id: int, rng: random.Random | None = None) -> list[int]:
    """All live questions in order, or a draw of N with the ones the person has not seen first."""
    rng = rng or random.Random()
    live = [q.id for q in quiz.live_questions()]
    if not quiz.draw or quiz.draw >= len(live):
        return live
    seen: set[int] = set()
    for ids in db.session.scalars(select(Attempt.question_ids).where(
            Attempt.user_id == user_id, Attempt.quiz_id == quiz.id)):
        seen.update(ids or [])
    unseen = [i for i in live if i not in seen]
    again = [i for i in live if i in seen]
    rng.shuffle(unseen)
    rng.shuffle(again)
    chosen = (unseen + again)[: quiz.draw]
    order = {qid: n for n, qid in enumerate(live)}
    return sorted(chosen, key=order.get)


def open_attempt(quiz_id: int, user_id: int) -> Attempt | None:
    return db.session.scalar(select(Attempt).where(
        Attempt.user_id == user_id, Attempt.quiz_id == quiz_id, Attempt.status == "open"))


def start_attempt(quiz: Quiz, user, rng: random.Random | None = None) -> Attempt:
    """Resume the open attempt or start a new one (two tabs starting at once get one)."""
    close_expired(user.id, quiz.id)
    current = open_attempt(quiz.id, user.id)
    if current is not None:
        return current
    left = attempts_left(quiz, user.id)
    if left == 0:
        raise QuizError(_("本测验的作答次数已用完"))
    ids = draw_questions(quiz, user.id, rng)
    if not ids:
        raise QuizError(_("本测验还没有题目"))
    rng = rng or random.Random()
    orders = {}
    if quiz.shuffle_options:
        by_id = {q.id: q for q in quiz.questions}
        for qid in ids:
            keys = [o["key"] for o in by_id[qid].options]
            if keys:
                rng.shuffle(keys)
                orders[str(qid)] = keys
    number = (db.session.scalar(select(func.max(Attempt.number)).where(
        Attempt.user_id == user.id, Attempt.quiz_id == quiz.id)) or 0) + 1
    now = utcnow()
    attempt = Attempt(quiz_id=quiz.id, user_id=user.id, number=number, status="open",
                      started_at=now, question_ids=ids, option_orders=orders,
                      deadline=now + timedelta(minutes=quiz.time_limit_minutes)
                      if quiz.time_limit_minutes else None)
    db.session.add(attempt)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        current = open_attempt(quiz.id, user.id)
        if current is None:
            raise QuizError(_("请重试")) from None
        return current
    return attempt


def clean_response(question: Question, values) -> list[str]:
    """Keep only what a question can take (known option keys, one short text)."""
    if isinstance(values, str):
        values = [values]
    values = [str(v).strip()[:500] for v in (values or []) if v is not None and str(v).strip()]
    if question.type in ("single", "multiple"):
        keys = {o["key"] for o in question.options}
        picked = sorted({v.upper() for v in values if v.upper() in keys})
        return picked[:1] if question.type == "single" else picked
    return values[:1]


def save_answer(attempt: Attempt, question_id: int, values) -> Answer:
    """Save (upsert) one answer while the attempt is open and its time not up."""
    # Lock the attempt row (PostgreSQL) so a save and a submit never interleave.
    status = db.session.scalar(select(Attempt.status).where(Attempt.id == attempt.id)
                               .with_for_update())
    if status != "open" or attempt.status != "open":
        db.session.rollback()
        db.session.refresh(attempt)
        raise QuizError(_("本次测验已交卷，答案不能再修改"))
    if is_expired(attempt):
        db.session.rollback()
        finalize(attempt, expired=True)
        raise QuizError(_("作答时间已到，已按保存的答案交卷"))
    if question_id not in (attempt.question_ids or []):
        raise QuizError(_("这道题不在本次测验中"))
    question = db.session.get(Question, question_id)
    response = clean_response(question, values)
    for _try in range(2):
        row = db.session.scalar(select(Answer).where(
            Answer.attempt_id == attempt.id, Answer.question_id == question_id))
        if row is None:
            row = Answer(attempt_id=attempt.id, question_id=question_id)
            db.session.add(row)
        row.response, row.saved_at = response, utcnow()
        try:
            db.session.commit()
            return row
        except IntegrityError:  # the same answer saved from two tabs at once
            db.session.rollback()
    raise QuizError(_("保存失败，请重试"))


def finalize(attempt: Attempt, *, expired: bool = False) -> bool:
    """Grade an open attempt once; return False when it was already graded (double submit)."""
    now = utcnow()
    claimed = db.session.execute(
        update(Attempt).where(Attempt.id == attempt.id, Attempt.status == "open")
        .values(status="submitted", submitted_at=now, expired=expired)
        .execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        db.session.rollback()
        db.session.refresh(attempt)
        return False
    quiz = db.session.get(Quiz, attempt.quiz_id)
    questions = {q.id: q for q in db.session.scalars(
        select(Question).where(Question.id.in_(attempt.question_ids or [-1])))}
    saved = {a.question_id: (a.id, a.response) for a in db.session.execute(
        select(Answer.id, Answer.question_id, Answer.response)
        .where(Answer.attempt_id == attempt.id))}
    credits, updates, inserts, outcomes = [], [], [], []
    for qid in attempt.question_ids or []:
        q = questions.get(qid)
        if q is None:
            continue
        row_id, response = saved.get(qid, (None, []))
        credit = grade(q.type, q.answer, response or [], q.partial_credit)
        credits.append(credit)
        if row_id is None:
            inserts.append({"attempt_id": attempt.id, "question_id": qid, "response": [],
                            "credit": credit, "saved_at": now})
        else:
            updates.append({"id": row_id, "credit": credit})
        outcomes.append((q, response or [], credit >= 1.0))
    if updates:
        db.session.execute(update(Answer), updates)  # one executemany by primary key
    if inserts:
        db.session.execute(insert(Answer), inserts)
    review_many(attempt.user_id, outcomes, now)
    result = percent(credits, len(attempt.question_ids or []))
    passed = result >= quiz.pass_score
    db.session.execute(update(Attempt).where(Attempt.id == attempt.id)
                       .values(score=result, passed=passed)
                       .execution_options(synchronize_session=False))
    if passed:
        # Before the commit: what listeners write (the progress ledger's 学时) is committed
        # with the grade, as attendance does with its records.
        emit(QuizPassed(user_id=attempt.user_id, key=f"quiz:{quiz.slug}:{attempt.user_id}",
                        quiz_slug=quiz.slug, quiz_title=quiz.title, attempt_id=attempt.id,
                        score=result, course_slug=quiz.course_slug))
    db.session.commit()
    db.session.refresh(attempt)
    return True


def quiz_result(quiz: Quiz, attempts: list[Attempt]) -> Attempt | None:
    """The attempt that counts: best or last, by the quiz's grading method."""
    done = [a for a in attempts if a.status == "submitted"]
    if not done:
        return None
    if quiz.grading == "last":
        return max(done, key=lambda a: a.number)
    return max(done, key=lambda a: (a.score or 0, -a.number))


# -- FSRS: 错题本 and 每日一练 -----------------------------------------------------------------------

_SCHEDULER = None


def scheduler():
    """One FSRS scheduler per process (it holds only parameters)."""
    global _SCHEDULER
    if _SCHEDULER is None:
        from fsrs import Scheduler

        _SCHEDULER = Scheduler(enable_fuzzing=False, learning_steps=(timedelta(days=1),),
                               relearning_steps=(timedelta(days=1),))
    return _SCHEDULER


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC)


def flag_lapses() -> int:
    return int(current_app.config.get("QUIZZES_FLAG_LAPSES", 3))


def _apply(card_row: ReviewCard, question: Question, response, correct: bool, now: datetime):
    from fsrs import Card, Rating

    # card_id given: fsrs otherwise sleeps a millisecond per new card to make ids unique
    card = Card.from_dict(card_row.card) if card_row.card else Card(card_id=question.id)
    card, _log = scheduler().review_card(card, Rating.Good if correct else Rating.Again,
                                         _aware(now))
    card_row.card = card.to_dict()
    card_row.due = card.due.astimezone(UTC).replace(tzinfo=None)
    card_row.reviews = (card_row.reviews or 0) + 1
    if not correct:
        card_row.lapses = (card_row.lapses or 0) + 1
        card_row.last_response = list(response or [])
    card_row.flagged = card_row.lapses >= flag_lapses()
    card_row.updated_at = now


def review_many(user_id: int, outcomes, now: datetime, *, create: bool = True) -> dict:
    """Record answers on the person's review cards: a wrong answer makes (or lapses) a card,
    a right one reviews an existing card. ``outcomes`` is [(question, response, correct)]."""
    outcomes = list(outcomes)
    if not outcomes:
        return {}
    ids = [q.id for q, _, _ in outcomes]
    rows = {c.question_id: c for c in db.session.scalars(select(ReviewCard).where(
        ReviewCard.user_id == user_id, ReviewCard.question_id.in_(ids)))}
    fresh = []
    for question, response, correct in outcomes:
        row = rows.get(question.id)
        if row is None:
            if correct or not create:
                continue
            row = ReviewCard(user_id=user_id, question_id=question.id, lapses=0, reviews=0,
                             created_at=now, card={})
            rows[question.id] = row
            fresh.append(row)
        _apply(row, question, response, correct, now)
    if fresh:
        try:
            with db.session.begin_nested():
                db.session.add_all(fresh)
                db.session.flush()
        except IntegrityError:  # the same person answering in two places at once: keep theirs
            for row in fresh:
                rows.pop(row.question_id, None)
    return rows


def review(user_id: int, question: Question, response, correct: bool, now: datetime,
           *, create: bool) -> ReviewCard | None:
    """Record one answer on the person's review card (see :func:`review_many`)."""
    return review_many(user_id, [(question, response, correct)], now, create=create).get(question.id)


def local_today() -> date:
    tz = ZoneInfo(current_app.config.get("TIMEZONE", "Asia/Shanghai"))
    return datetime.now(tz).date()


def _day_end_utc(day: date) -> datetime:
    tz = ZoneInfo(current_app.config.get("TIMEZONE", "Asia/Shanghai"))
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return end.astimezone(UTC).replace(tzinfo=None)


def required_courses(user, year: int) -> list[str]:
    from kb import plugin_manager
    from kb.pluginhost import call_each

    out: list[str] = []
    for _name, slugs in call_each(plugin_manager(), "kb_required_courses", user=user, year=year):
        out.extend(s for s in slugs or [] if s not in out)
    return out


def daily_set(user, day: date | None = None, n: int | None = None) -> Daily:
    """Today's 每日一练: due review cards first, then new questions from required courses."""
    day = day or local_today()
    row = db.session.scalar(select(Daily).where(Daily.user_id == user.id, Daily.day == day))
    if row is not None:
        return row
    n = n or int(current_app.config.get("QUIZZES_DAILY_COUNT", 5))
    due_ids = list(db.session.scalars(
        select(ReviewCard.question_id).join(Question, Question.id == ReviewCard.question_id)
        .where(ReviewCard.user_id == user.id, ReviewCard.due < _day_end_utc(day),
               Question.retired.is_(False))
        .order_by(ReviewCard.due).limit(n)))
    chosen = list(due_ids)
    if len(chosen) < n:
        answered = (select(Answer.question_id).join(Attempt, Attempt.id == Answer.attempt_id)
                    .where(Attempt.user_id == user.id))
        carded = select(ReviewCard.question_id).where(ReviewCard.user_id == user.id)
        visible = visible_quizzes_query(user).with_only_columns(Quiz.id)
        base = (select(Question.id, Quiz.course_slug).join(Quiz, Quiz.id == Question.quiz_id)
                .where(Question.retired.is_(False), Question.quiz_id.in_(visible),
                       Question.id.not_in(answered), Question.id.not_in(carded)))
        fresh = db.session.execute(base).all()
        courses = set(required_courses(user, day.year))
        rng = random.Random(f"{user.id}:{day.isoformat()}")
        first = [qid for qid, c in fresh if c in courses]
        rest = [qid for qid, c in fresh if c not in courses]
        rng.shuffle(first)
        rng.shuffle(rest)
        for qid in first + rest:
            if len(chosen) >= n:
                break
            if qid not in chosen:
                chosen.append(qid)
    row = Daily(user_id=user.id, day=day, question_ids=chosen, done={})
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        row = db.session.scalar(select(Daily).where(Daily.user_id == user.id, Daily.day == day))
    return row


def daily_answer(user, daily: Daily, question_id: int, values) -> dict:
    """Grade one daily question (once) and reschedule its review card."""
    key = str(question_id)
    if question_id not in (daily.question_ids or []):
        raise QuizError(_("这道题不在今天的练习中"))
    if key in (daily.done or {}):
        return daily.done[key]
    question = db.session.get(Question, question_id)
    response = clean_response(question, values)
    credit = grade(question.type, question.answer, response, question.partial_credit)
    review(user.id, question, response, credit >= 1.0, utcnow(), create=True)
    result = {"response": response, "correct": credit >= 1.0}
    daily.done = {**(daily.done or {}), key: result}
    db.session.commit()
    return result


# -- statistics (SQL, scoped to the viewer's people) -------------------------------------------

_RANKED = """
WITH ranked AS (
  SELECT a.id AS attempt_id,
         ROW_NUMBER() OVER (ORDER BY a.score DESC, a.id) AS rn,
         COUNT(*) OVER () AS n
  FROM quiz_attempt a
  JOIN "user" u ON u.id = a.user_id
  JOIN org_unit o ON o.id = u.org_unit_id
  WHERE a.quiz_id = :quiz_id AND a.status = 'submitted' AND o.path LIKE :prefix
), grouped AS (
  SELECT attempt_id,
         CASE WHEN rn <= (n * 27 + 99) / 100 THEN 'U'
              WHEN rn > n - (n * 27 + 99) / 100 THEN 'L' ELSE 'M' END AS grp
  FROM ranked
)
SELECT ans.question_id AS question_id,
       COUNT(*) AS answered,
       AVG(CASE WHEN ans.credit >= 1 THEN 1.0 ELSE 0.0 END) AS rate,
       AVG(CASE WHEN g.grp = 'U' THEN (CASE WHEN ans.credit >= 1 THEN 1.0 ELSE 0.0 END) END) AS upper_rate,
       AVG(CASE WHEN g.grp = 'L' THEN (CASE WHEN ans.credit >= 1 THEN 1.0 ELSE 0.0 END) END) AS lower_rate
FROM quiz_answer ans JOIN grouped g ON g.attempt_id = ans.attempt_id
GROUP BY ans.question_id
"""


def question_stats(quiz: Quiz, prefix: str) -> list[dict]:
    """Per question: answered, correct rate, discrimination (upper 27% rate − lower 27% rate)."""
    rows = {r.question_id: r for r in db.session.execute(
        text(_RANKED), {"quiz_id": quiz.id, "prefix": prefix + "%"})}
    out = []
    for q in quiz.questions:
        r = rows.get(q.id)
        if r is None and q.retired:
            continue
        upper = float(r.upper_rate) if r is not None and r.upper_rate is not None else None
        lower = float(r.lower_rate) if r is not None and r.lower_rate is not None else None
        out.append({"question": q, "answered": r.answered if r else 0,
                    "rate": float(r.rate) if r is not None else None,
                    "discrimination": (upper - lower) if upper is not None and lower is not None
                    else None})
    return out


def pass_rate_by_township(quiz: Quiz, prefix: str) -> list[dict]:
    passed_user = func.max(func.coalesce(Attempt.passed, False).cast(db.Integer))
    per_person = (select(User.org_unit_id.label("org_id"), Attempt.user_id,
                         passed_user.label("passed"))
                  .join(User, User.id == Attempt.user_id)
                  .join(OrgUnit, OrgUnit.id == User.org_unit_id)
                  .where(Attempt.quiz_id == quiz.id, Attempt.status == "submitted",
                         OrgUnit.path.like(prefix + "%"))
                  .group_by(User.org_unit_id, Attempt.user_id).subquery())
    rows = db.session.execute(
        select(OrgUnit.id, OrgUnit.name, func.count(per_person.c.user_id),
               func.sum(per_person.c.passed))
        .join(per_person, per_person.c.org_id == OrgUnit.id)
        .group_by(OrgUnit.id, OrgUnit.name).order_by(OrgUnit.name)).all()
    return [{"org_id": r[0], "name": r[1], "people": r[2], "passed": int(r[3] or 0),
             "rate": 100.0 * int(r[3] or 0) / r[2] if r[2] else 0.0} for r in rows]


def most_missed(quiz_ids: list[int], prefix: str, limit: int = 20) -> list[dict]:
    wrong = func.sum(db.case((Answer.credit < 1, 1), else_=0))
    rows = db.session.execute(
        select(Question, Quiz.slug, Quiz.title, func.count(Answer.id), wrong)
        .join(Answer, Answer.question_id == Question.id)
        .join(Attempt, Attempt.id == Answer.attempt_id)
        .join(Quiz, Quiz.id == Question.quiz_id)
        .join(User, User.id == Attempt.user_id)
        .join(OrgUnit, OrgUnit.id == User.org_unit_id)
        .where(Attempt.status == "submitted", Question.quiz_id.in_(quiz_ids or [-1]),
               OrgUnit.path.like(prefix + "%"))
        .group_by(Question.id, Quiz.slug, Quiz.title)
        .having(wrong > 0)
        .order_by(wrong.desc(), Question.id).limit(limit)).all()
    return [{"question": r[0], "quiz_slug": r[1], "quiz_title": r[2], "answered": r[3],
             "wrong": int(r[4]), "rate": 1 - int(r[4]) / r[3] if r[3] else 0} for r in rows]


def _year_bounds(year: int) -> tuple[datetime, datetime]:
    tz = ZoneInfo(current_app.config.get("TIMEZONE", "Asia/Shanghai"))
    start = datetime(year, 1, 1, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
    end = datetime(year + 1, 1, 1, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
    return start, end


def report_pass_rate(scope) -> dict[int, float]:
    """Township or county rows: % of (person, quiz) pairs attempted in the year that were passed."""
    if not scope.row_ids:
        return {}
    start, end = _year_bounds(scope.year)
    members = report_members(scope).subquery()
    passed = func.max(func.coalesce(Attempt.passed, False).cast(db.Integer))
    pairs = (select(members.c.row_id.label("row_id"), passed.label("passed"))
             .join(members, members.c.user_id == Attempt.user_id)
             .where(Attempt.status == "submitted", Attempt.submitted_at >= start,
                    Attempt.submitted_at < end)
             .group_by(members.c.row_id, Attempt.user_id, Attempt.quiz_id).subquery())
    rows = db.session.execute(select(pairs.c.row_id, func.avg(pairs.c.passed * 100.0))
                              .group_by(pairs.c.row_id))
    return {row: round(float(v), 1) for row, v in rows}


def report_passed_count(scope) -> dict[int, int]:
    """Person rows: number of quizzes passed in the year."""
    if not scope.row_ids:
        return {}
    start, end = _year_bounds(scope.year)
    rows = db.session.execute(
        select(Attempt.user_id, func.count(func.distinct(Attempt.quiz_id)))
        .where(Attempt.status == "submitted", Attempt.passed.is_(True),
               Attempt.submitted_at >= start, Attempt.submitted_at < end,
               Attempt.user_id.in_(scope.row_ids))
        .group_by(Attempt.user_id))
    return {uid: int(n) for uid, n in rows}
