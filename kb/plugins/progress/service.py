"""The progress plugin's logic: heartbeats, completion, the ledger, per-person statistics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app, g, has_app_context
from sqlalchemy import (
    DateTime,
    Float,
    Integer,
    String,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    text,
    update,
)

from kb import db, emit
from kb.events import AttendanceMarked, LessonCompleted, QuizPassed
from kb.models import Course, Lesson, OrgUnit, User, utcnow

from . import rules
from .models import CourseDone, LedgerEntry, LessonProgress, Notice, RequiredCourse, UserYear

log = logging.getLogger(__name__)


def _insert(model):
    """An INSERT that can ignore conflicts on the current backend (SQLite or PostgreSQL)."""
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(model)


# -- heartbeats and completion ----------------------------------------------------------------

@dataclass
class BeatResult:
    seconds: int
    max_scroll: float
    completed: bool
    just_completed: bool


def _clean_scroll(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    if v != v:  # NaN
        return 0.0
    return min(1.0, max(0.0, v))


def get_row(user_id: int, lesson_id: int) -> LessonProgress | None:
    """The row as the database has it now (heartbeats write it without the ORM)."""
    return db.session.scalar(select(LessonProgress).where(
        LessonProgress.user_id == user_id, LessonProgress.lesson_id == lesson_id)
        .execution_options(populate_existing=True))


_BEAT_SQL = """
INSERT INTO progress_lesson (user_id, lesson_id, course_slug, lesson_slug, seconds, max_scroll,
                             last_scroll, started_at, last_beat_at, updated_at)
VALUES (:user_id, :lesson_id, :course_slug, :lesson_slug, 0, :scroll, :at, :now, :now, :now)
ON CONFLICT (user_id, lesson_id) DO UPDATE SET
    seconds = {least}(progress_lesson.seconds + {gain}, :cap_lesson),
    max_scroll = {greatest}(progress_lesson.max_scroll, excluded.max_scroll),
    last_scroll = excluded.last_scroll,
    last_beat_at = excluded.last_beat_at,
    updated_at = excluded.updated_at
WHERE progress_lesson.last_beat_at < excluded.last_beat_at
RETURNING id, seconds, max_scroll, completed_at
"""
# The whole seconds since the row's previous heartbeat (positive: see the WHERE), at most
# :cap_beat, as Python's int() of the elapsed time.
_GAIN = {
    "postgresql": "CAST(floor(least(EXTRACT(EPOCH FROM excluded.last_beat_at - "
                  "progress_lesson.last_beat_at), :cap_beat)) AS INTEGER)",
    # julianday() keeps milliseconds; rounded to whole milliseconds first (it is a float).
    "sqlite": "min(CAST(round((julianday(excluded.last_beat_at) - "
              "julianday(progress_lesson.last_beat_at)) * 86400000) AS INTEGER) / 1000, :cap_beat)",
}
_BEAT_STATEMENTS: dict[str, object] = {}


def _beat_statement(dialect: str):
    """The heartbeat as one statement: insert the row (the first heartbeat starts the clock) or
    credit the time since the previous heartbeat, capped, and return the row.

    ``INSERT … ON CONFLICT (user_id, lesson_id) DO UPDATE … WHERE last_beat_at < :now
    RETURNING``, the same on SQLite (≥ 3.35) and PostgreSQL but for the date arithmetic. The
    database applies heartbeats on one row one after the other (the conflicting row is locked,
    and the update reads its latest version), so each credits only the time since the one
    before it: parallel requests add no time. A heartbeat whose time is not after the row's
    returns nothing and changes nothing (a clock going backwards, or a later heartbeat that got
    there first).

    Written as text, built once per dialect: SQLAlchemy does not cache the compiled form of its
    dialect ``insert()`` constructs (``inherit_cache = False``), and compiling this one took
    longer than running it.
    """
    stmt = _BEAT_STATEMENTS.get(dialect)
    if stmt is None:
        postgresql = dialect == "postgresql"
        sql = _BEAT_SQL.format(least="least" if postgresql else "min",
                               greatest="greatest" if postgresql else "max",
                               gain=_GAIN["postgresql" if postgresql else "sqlite"])
        stmt = _BEAT_STATEMENTS[dialect] = text(sql).bindparams(
            bindparam("user_id", type_=Integer()), bindparam("lesson_id", type_=Integer()),
            bindparam("course_slug", type_=String()), bindparam("lesson_slug", type_=String()),
            bindparam("scroll", type_=Float()), bindparam("at", type_=Float()),
            bindparam("now", type_=DateTime()), bindparam("cap_beat", type_=Integer()),
            bindparam("cap_lesson", type_=Integer()),
        ).columns(id=Integer(), seconds=Integer(), max_scroll=Float(), completed_at=DateTime())
    return stmt


def heartbeat(user, lesson, scroll, now: datetime | None = None, position=None) -> BeatResult:
    """Record one heartbeat of ``user`` reading ``lesson`` (a catalog LessonView).

    The server decides what counts: the time since this person's previous accepted heartbeat on
    this lesson, at most ``PROGRESS_BEAT_CAP`` seconds, and at most the lesson cap in total.
    The first heartbeat only starts the clock. One statement (:func:`_beat_statement`); the
    completion rule is checked on the row it returns, and only a heartbeat that completes the
    lesson does more (:func:`_complete`: the ledger entry, the course total).
    """
    now = now or utcnow()
    scroll = _clean_scroll(scroll)  # how far the reader got
    at = scroll if position is None else _clean_scroll(position)  # where they are now (resume)
    session = db.session
    cap_beat = int(current_app.config.get("PROGRESS_BEAT_CAP", rules.BEAT_CAP_SECONDS))
    row = session.execute(_beat_statement(session.get_bind().dialect.name), {
        "user_id": user.id, "lesson_id": lesson.id, "course_slug": lesson.course_slug,
        "lesson_slug": lesson.slug, "scroll": scroll, "at": at, "now": now, "cap_beat": cap_beat,
        "cap_lesson": rules.lesson_cap_seconds(lesson.minutes)}).first()
    if row is None:  # nothing changed: read the row as it is
        t = LessonProgress.__table__
        row = session.execute(select(t.c.id, t.c.seconds, t.c.max_scroll, t.c.completed_at).where(
            t.c.user_id == user.id, t.c.lesson_id == lesson.id)).one()
    row_id, seconds, max_scroll, completed_at = row
    just = False
    if completed_at is None and max_scroll >= rules.completion().get("scroll", 0.9) \
            and seconds >= rules.min_seconds(lesson.minutes):
        just = _complete(user.id, lesson, row_id, now)
        completed_at = now if just else _completed_at(row_id)
    return BeatResult(seconds=seconds, max_scroll=max_scroll, completed=completed_at is not None,
                      just_completed=just)


def _completed_at(row_id: int) -> datetime | None:
    return db.session.scalar(select(LessonProgress.completed_at).where(LessonProgress.id == row_id))


def _complete(user_id: int, lesson, row_id: int, now: datetime | None = None) -> bool:
    """Set the row's completed_at once and emit ``LessonCompleted``; True if this call did it."""
    now = now or utcnow()
    t = LessonProgress.__table__
    seconds = db.session.execute(
        update(t).where(t.c.id == row_id, t.c.completed_at.is_(None)).values(completed_at=now)
        .returning(t.c.seconds)).scalar()
    if seconds is None:  # completed already (another request did it)
        return False
    bump_course_done(user_id, lesson.course_slug)
    emit(LessonCompleted(user_id=user_id, key=f"lesson:{user_id}:{lesson.id}",
                         occurred_at=now, lesson_id=lesson.id, course_slug=lesson.course_slug,
                         lesson_slug=lesson.slug, minutes=lesson.minutes, seconds=seconds))
    return True


def complete(user, lesson, row: LessonProgress, now: datetime | None = None) -> bool:
    """Mark the row completed once and emit ``LessonCompleted``; True if this call did it."""
    just = _complete(user.id, lesson, row.id, now)
    db.session.refresh(row)
    return just


def press_done(user, lesson) -> tuple[bool, int]:
    """「学完了」: complete the lesson if enough time was spent; return (ok, seconds missing)."""
    row = get_row(user.id, lesson.id)
    if row is not None and row.completed_at is not None:
        return True, 0
    need = rules.min_seconds(lesson.minutes)
    have = row.seconds if row is not None else 0
    if have < need:
        return False, need - have
    if row is None:
        heartbeat(user, lesson, 0.0)
        row = get_row(user.id, lesson.id)
    complete(user, lesson, row)
    return True, 0


# -- the ledger -------------------------------------------------------------------------------

def add_entry(*, user_id: int, hours: float, source: str, title: str, key: str | None,
              occurred_at: datetime | None = None, note: str = "", created_by_id=None,
              corrects_id=None) -> bool:
    """Append a ledger entry; an entry whose key is already there is ignored (returns False)."""
    occurred_at = occurred_at or utcnow()
    values = dict(user_id=user_id, year=rules.study_year(occurred_at), hours=round(float(hours), 2),
                  source=source, title=title[:200], event_key=key, note=note,
                  occurred_at=occurred_at, created_at=utcnow(), created_by_id=created_by_id,
                  corrects_id=corrects_id)
    stmt = _insert(LedgerEntry).values(**values)
    if key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["event_key"])
    # RETURNING tells reliably whether a row was written (rowcount is not, on every driver).
    if db.session.execute(stmt.returning(LedgerEntry.id)).scalar() is None:
        return False
    up = _insert(UserYear).values(user_id=user_id, year=values["year"], hours=values["hours"])
    db.session.execute(up.on_conflict_do_update(
        index_elements=["user_id", "year"], set_={"hours": UserYear.hours + up.excluded.hours}))
    return True


def bump_course_done(user_id: int, course_slug: str) -> None:
    up = _insert(CourseDone).values(user_id=user_id, course_slug=course_slug, lessons=1)
    db.session.execute(up.on_conflict_do_update(
        index_elements=["user_id", "course_slug"], set_={"lessons": CourseDone.lessons + 1}))


def rebuild_totals() -> tuple[int, int]:
    """Recompute the derived totals from the ledger and the lesson rows (``kb progress-rebuild``)."""
    from sqlalchemy import delete, insert

    db.session.execute(delete(UserYear))
    db.session.execute(delete(CourseDone))
    db.session.execute(insert(UserYear).from_select(
        ["user_id", "year", "hours"],
        select(LedgerEntry.user_id, LedgerEntry.year, func.sum(LedgerEntry.hours))
        .group_by(LedgerEntry.user_id, LedgerEntry.year)))
    db.session.execute(insert(CourseDone).from_select(
        ["user_id", "course_slug", "lessons"],
        select(LessonProgress.user_id, LessonProgress.course_slug, func.count())
        .where(LessonProgress.completed_at.is_not(None))
        .group_by(LessonProgress.user_id, LessonProgress.course_slug)))
    return (db.session.scalar(select(func.count()).select_from(UserYear)),
            db.session.scalar(select(func.count()).select_from(CourseDone)))


def track(event) -> None:
    """Turn LessonCompleted, QuizPassed and AttendanceMarked into ledger entries."""
    if not isinstance(event, (LessonCompleted, QuizPassed, AttendanceMarked)):
        return
    if db.session.get(User, event.user_id) is None:
        log.warning("progress: %s for unknown user %s ignored", event.name, event.user_id)
        return
    if isinstance(event, LessonCompleted):
        title = event.lesson_slug
        if has_app_context():
            from kb import get_catalog

            view = get_catalog().lesson_by_id(event.lesson_id)
            title = view.title if view is not None else title
        add_entry(user_id=event.user_id, hours=rules.lesson_hours(event.minutes), source="lesson",
                  title=title, key=event.key, occurred_at=event.occurred_at)
    elif isinstance(event, QuizPassed):
        add_entry(user_id=event.user_id, hours=rules.quiz_hours(), source="quiz",
                  title=event.quiz_title or event.quiz_slug, key=event.key,
                  occurred_at=event.occurred_at)
    else:
        add_entry(user_id=event.user_id, hours=rules.attendance_hours(event.hours),
                  source="attendance", title=event.class_title, key=event.key,
                  occurred_at=event.occurred_at)


def hours_in_year(user_id: int, year: int) -> float:
    total = db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.hours), 0.0)).where(
        LedgerEntry.user_id == user_id, LedgerEntry.year == year))
    return round(float(total or 0), 2)


# -- required courses -------------------------------------------------------------------------

def county_of(user) -> int | None:
    """The county above a person's township (the unit whose staff set required courses)."""
    org = getattr(user, "org_unit", None) if getattr(user, "is_authenticated", False) else None
    if org is None:
        return None
    if org.kind == "county":
        return org.id
    return org.parent_id if org.kind == "township" else None


def required_for(user, year: int) -> list[RequiredCourse]:
    county = county_of(user)
    if county is None:
        return []
    return list(db.session.scalars(select(RequiredCourse).where(
        RequiredCourse.county_id == county, RequiredCourse.year == year,
        RequiredCourse.role == user.role).order_by(RequiredCourse.due_on, RequiredCourse.course_slug)))


def course_lesson_totals():
    """SELECT course slug, number of active lessons."""
    return (select(Course.slug.label("slug"), func.count(Lesson.id).label("total"))
            .join(Lesson, Lesson.course_id == Course.id)
            .where(Course.is_active.is_(True), Lesson.is_active.is_(True))
            .group_by(Course.slug))


def completed_lessons(user_id: int) -> dict[str, set[str]]:
    """Course slug -> slugs of the lessons this person completed."""
    out: dict[str, set[str]] = {}
    for course, lesson in db.session.execute(select(
            LessonProgress.course_slug, LessonProgress.lesson_slug).where(
            LessonProgress.user_id == user_id, LessonProgress.completed_at.is_not(None))):
        out.setdefault(course, set()).add(lesson)
    return out


def done_by_course(user_id: int) -> dict[str, int]:
    rows = db.session.execute(select(LessonProgress.course_slug, func.count()).where(
        LessonProgress.user_id == user_id, LessonProgress.completed_at.is_not(None))
        .group_by(LessonProgress.course_slug))
    return {slug: n for slug, n in rows}


# -- statistics for reports -------------------------------------------------------------------

def target_expr(role_col):
    t = rules.targets()
    return case({r: literal(float(v)) for r, v in t.items()}, value=role_col, else_=literal(0.0))


def person_stats_query(user_filter, year: int, today: date, wide: bool = False):
    """One SELECT: a row per active learner matching ``user_filter``, with hours and required counts.

    Columns: user_id, name, role, org_unit_id, county_id, hours, target, req_total, req_done, req_overdue.
    Hours come from ``progress_user_year`` and completed lessons from ``progress_course_done``
    (totals kept with the ledger and the lesson rows), so no report scans the big tables.
    """
    township = db.aliased(OrgUnit)
    people = (select(User.id.label("id"), User.name.label("name"), User.role.label("role"),
                     User.org_unit_id.label("org_unit_id"), township.parent_id.label("county_id"))
              .join(township, township.id == User.org_unit_id)
              .where(user_filter, User.active.is_(True), User.role.in_(rules.LEARNER_ROLES))
              .cte("people"))
    hours = (select(UserYear.user_id, UserYear.hours)
             .where(UserYear.year == year).subquery())
    req = (select(people.c.id.label("user_id"), RequiredCourse.course_slug.label("slug"),
                  RequiredCourse.due_on.label("due_on"))
           .join(RequiredCourse, and_(RequiredCourse.county_id == people.c.county_id,
                                      RequiredCourse.role == people.c.role,
                                      RequiredCourse.year == year))
           .subquery("req"))
    if wide:
        # Many people (a province): read the totals of this year's required courses in one pass
        # (a hash join) rather than one index probe per person and course.
        done = (select(CourseDone.user_id, CourseDone.course_slug, CourseDone.lessons)
                .join(people, people.c.id == CourseDone.user_id)
                .where(CourseDone.course_slug.in_(
                    select(RequiredCourse.course_slug).where(RequiredCourse.year == year).distinct()))
                .subquery())
    else:
        done = CourseDone.__table__
    totals = course_lesson_totals().subquery()
    is_done = and_(totals.c.total > 0, func.coalesce(done.c.lessons, 0) >= totals.c.total)
    req_agg = (select(req.c.user_id,
                      func.count().label("req_total"),
                      func.sum(case((is_done, 1), else_=0)).label("req_done"),
                      func.sum(case((and_(~is_done, req.c.due_on < today), 1), else_=0))
                      .label("req_overdue"))
               .select_from(req)
               .outerjoin(totals, totals.c.slug == req.c.slug)
               .outerjoin(done, and_(done.c.user_id == req.c.user_id,
                                     done.c.course_slug == req.c.slug))
               .group_by(req.c.user_id).subquery())
    return (select(people.c.id.label("user_id"), people.c.name, people.c.role,
                   people.c.org_unit_id, people.c.county_id,
                   func.coalesce(hours.c.hours, 0.0).label("hours"),
                   target_expr(people.c.role).label("target"),
                   func.coalesce(req_agg.c.req_total, 0).label("req_total"),
                   func.coalesce(req_agg.c.req_done, 0).label("req_done"),
                   func.coalesce(req_agg.c.req_overdue, 0).label("req_overdue"))
            .select_from(people)
            .outerjoin(hours, hours.c.user_id == people.c.id)
            .outerjoin(req_agg, req_agg.c.user_id == people.c.id))


def group_stats_query(person_q, group_col_from_person):
    """Aggregate person rows by a key: people, hours, met target, required incomplete/overdue."""
    p = person_q.subquery()
    key = group_col_from_person(p)
    met = p.c.hours >= p.c.target
    return (select(key.label("group_id"),
                   func.count().label("people"),
                   func.sum(p.c.hours).label("hours"),
                   func.sum(case((met, 1), else_=0)).label("met"),
                   func.sum(case((p.c.req_done < p.c.req_total, 1), else_=0)).label("req_open"),
                   func.sum(case((p.c.req_overdue > 0, 1), else_=0)).label("req_overdue"),
                   func.sum(case((or_(~met, p.c.req_done < p.c.req_total), 1), else_=0))
                   .label("incomplete"))
            .group_by(key))


def _cache() -> dict:
    try:
        return g.setdefault("_progress_stats", {})
    except RuntimeError:
        return {}


def person_stats(user_ids: tuple[int, ...], year: int) -> dict[int, dict]:
    key = ("person", user_ids, year)
    cache = _cache()
    if key not in cache:
        q = person_stats_query(User.id.in_(user_ids or (-1,)), year, rules.local_today())
        cache[key] = {r.user_id: r._asdict() for r in db.session.execute(q)}
    return cache[key]


def township_stats(org_ids: tuple[int, ...], year: int) -> dict[int, dict]:
    key = ("township", org_ids, year)
    cache = _cache()
    if key not in cache:
        q = group_stats_query(
            person_stats_query(User.org_unit_id.in_(org_ids or (-1,)), year, rules.local_today()),
            lambda p: p.c.org_unit_id)
        cache[key] = {r.group_id: r._asdict() for r in db.session.execute(q)}
    return cache[key]


def county_stats(county_ids: tuple[int, ...], year: int) -> dict[int, dict]:
    """Per county: learners of its townships (township.parent_id is the county)."""
    key = ("county", county_ids, year)
    cache = _cache()
    if key not in cache:
        town = db.aliased(OrgUnit)
        townships = select(town.id).where(town.parent_id.in_(county_ids or (-1,)),
                                          town.kind == "township")
        q = group_stats_query(
            person_stats_query(User.org_unit_id.in_(townships), year, rules.local_today(),
                               wide=True),
            lambda p: p.c.county_id)
        cache[key] = {r.group_id: r._asdict() for r in db.session.execute(q)}
    return cache[key]


def unread_notices(user_id: int, limit: int = 5) -> list[Notice]:
    return list(db.session.scalars(select(Notice).where(
        Notice.user_id == user_id, Notice.read_at.is_(None))
        .order_by(Notice.created_at.desc()).limit(limit)))


def last_unfinished(user_id: int) -> list[LessonProgress]:
    return list(db.session.scalars(select(LessonProgress).where(
        LessonProgress.user_id == user_id, LessonProgress.completed_at.is_(None))
        .order_by(LessonProgress.updated_at.desc()).limit(5)))


def year_bounds(year: int) -> tuple[datetime, datetime]:
    start = datetime(year, 1, 1)
    return start, start.replace(year=year + 1) - timedelta(microseconds=1)
