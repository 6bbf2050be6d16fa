"""Quizzes: grading, quiz files, the attempt flow (clock, resume, double submit), draws, FSRS."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from kb import hookimpl
from kb.cli import run_sync
from kb.extensions import db
from kb.models import User, utcnow
from kb.plugins.quizzes import service
from kb.plugins.quizzes.content import parse_quiz
from kb.plugins.quizzes.grading import grade, normalize, parse_bool
from kb.plugins.quizzes.models import Answer, Attempt, Question, Quiz, ReviewCard

from .quizzes_support import QUIZ_YAML, login, small_world, write_quiz

# -- grading ------------------------------------------------------------------------------------

GRADING = [
    # type, answer, response, partial, expected credit
    ("single", ["C"], ["C"], False, 1.0),
    ("single", ["C"], ["c"], False, 1.0),
    ("single", ["C"], ["Ｃ"], False, 1.0),  # full-width letter
    ("single", ["C"], ["B"], False, 0.0),
    ("single", ["C"], [], False, 0.0),
    ("multiple", ["A", "B"], ["B", "A"], False, 1.0),
    ("multiple", ["A", "B"], ["A"], False, 0.0),  # all-or-nothing by default
    ("multiple", ["A", "B"], ["A"], True, 0.5),  # partial credit
    ("multiple", ["A", "B"], ["A", "C"], True, 0.0),  # a wrong pick earns nothing
    ("multiple", ["A", "B", "D"], ["ＡＢＤ"], False, 1.0),
    ("truefalse", [False], ["错"], False, 1.0),
    ("truefalse", [False], ["错误"], False, 1.0),
    ("truefalse", [False], ["×"], False, 1.0),
    ("truefalse", [False], ["false"], False, 1.0),
    ("truefalse", [True], ["对"], False, 1.0),
    ("truefalse", [True], ["正确"], False, 1.0),
    ("truefalse", [True], ["√"], False, 1.0),
    ("truefalse", [True], ["TRUE"], False, 1.0),
    ("truefalse", [True], ["错"], False, 0.0),
    ("truefalse", [True], ["也许"], False, 0.0),
    ("fill", ["三", "3"], ["三"], False, 1.0),
    ("fill", ["三", "3"], ["３"], False, 1.0),  # full-width digit
    ("fill", ["三", "3"], [" 3 "], False, 1.0),
    ("fill", ["三分之二", "2/3"], ["２／３"], False, 1.0),  # full-width digits and slash
    ("fill", ["主席团"], ["主 席 团"], False, 1.0),
    ("fill", ["主席团"], ["主席团\u3000"], False, 1.0),  # ideographic space
    ("fill", ["NPC"], ["ｎｐｃ"], False, 1.0),  # full-width, lower case
    ("fill", ["三", "3"], ["四"], False, 0.0),
    ("fill", ["三", "3"], [""], False, 0.0),
]


@pytest.mark.parametrize("qtype,answer,response,partial,expected", GRADING)
def test_grading_table(qtype, answer, response, partial, expected):
    assert grade(qtype, answer, response, partial) == expected


def test_normalize_and_bool():
    assert normalize("Ａ Ｂ\tc") == "abc"
    assert parse_bool("√") is True and parse_bool("×") is False and parse_bool("x?") is None


# -- quiz files ---------------------------------------------------------------------------------

def _errors(text):
    data, problems = parse_quiz(text)
    assert data is None
    return problems


def test_parse_valid_quiz():
    data, problems = parse_quiz(QUIZ_YAML)
    assert problems == []
    assert [q["qid"] for q in data["questions"]] == ["q-single", "q-multi", "q-tf", "q-fill"]
    assert data["questions"][1]["options"][2] == {"key": "C", "text": "批准预算调整"}
    assert data["questions"][2]["answer"] == [False]


def test_bad_quiz_files_name_the_line():
    bad_answer = QUIZ_YAML.replace("    answer: C\n", "    answer: D\n")
    assert any(line == 15 and "不在选项" in msg for line, msg in _errors(bad_answer))
    dup = QUIZ_YAML.replace("id: q-multi", "id: q-single")
    assert any(line == 19 and "重复" in msg for line, msg in _errors(dup))
    over = QUIZ_YAML.replace("pass_score: 60", "pass_score: 120")
    assert any(line == 3 and "pass_score" in msg for line, msg in _errors(over))
    no_expl = QUIZ_YAML.replace("    explanation: 乡镇人大不设常委会。\n", "")
    assert any(line == 26 and "解析" in msg for line, msg in _errors(no_expl))
    syntax = QUIZ_YAML.replace("title: 基础测验", "title: [基础测验")
    assert _errors(syntax)[0][1].startswith("YAML 语法错误")


def test_sync_reports_path_line_and_keeps_going(app):
    write_quiz(app, "good")
    write_quiz(app, "broken", QUIZ_YAML.replace("    answer: C\n", "    answer: D\n"))
    write_quiz(app, "badlesson", QUIZ_YAML.replace("basics/status#代表的任期", "basics/status#没有这节"))
    report = run_sync(app)
    text = [str(p) for p in report.errors]
    assert any(t.endswith("quizzes/broken.yaml:15: 答案 D 不在选项 ABC 之中") for t in text), text
    assert any("badlesson.yaml:18" in t and "没有小节" in t for t in text), text
    with app.app_context():
        assert db.session.scalar(select(Quiz.slug).where(Quiz.is_active.is_(True))) == "good"
    again = run_sync(app)
    assert again.unchanged.get("quiz") == 1 and len(again.errors) == 2  # reported on every run


def test_stable_ids_survive_edits_and_removed_questions_retire(app):
    write_quiz(app)
    run_sync(app)
    with app.app_context():
        quiz = db.session.scalar(select(Quiz))
        ids = {q.qid: q.id for q in quiz.questions}
    edited = QUIZ_YAML.replace("乡镇人大每届任期几年？", "乡镇人大每届任期是几年？")
    edited = edited[:edited.index("  - id: q-fill")]
    write_quiz(app, text=edited)
    report = run_sync(app)
    assert report.updated.get("quiz") == 1
    with app.app_context():
        quiz = db.session.scalar(select(Quiz))
        now = {q.qid: q for q in quiz.questions}
        assert now["q-single"].id == ids["q-single"] and now["q-single"].stem.endswith("是几年？")
        assert now["q-fill"].retired and len(quiz.live_questions()) == 3
    (app.config["QUIZZES_DIR"] and __import__("pathlib").Path(app.config["QUIZZES_DIR"], "basics-quiz.yaml").unlink())
    assert run_sync(app).removed.get("quiz") == 1


def test_shipped_quizzes_pass_strict_sync(tmp_path):
    from pathlib import Path

    from kb import create_app, dbmigrate

    from .conftest import make_config

    repo = Path(__file__).resolve().parent.parent
    app = create_app(make_config(tmp_path, COURSES_DIR=str(repo / "courses"),
                                 QUIZZES_DIR=str(repo / "quizzes")))
    with app.app_context():
        dbmigrate.upgrade(app)
    report = run_sync(app, strict=True)
    mine = [str(p) for p in report.errors if p.path.startswith("quizzes")]
    assert not mine, mine
    with app.app_context():
        quizzes = db.session.scalars(select(Quiz)).all()
        assert {"township-congress-basics", "deputy-duties"} <= {q.slug for q in quizzes}
        for quiz in quizzes:
            qs = quiz.live_questions()
            assert len(qs) >= 10 and {q.type for q in qs} == {"single", "multiple", "truefalse", "fill"}
            assert all(q.explanation and (q.source or q.lesson) for q in qs)
        db.engine.dispose()


# -- the attempt flow ---------------------------------------------------------------------------

@pytest.fixture
def quiz_app(db_app):
    write_quiz(db_app)
    run_sync(db_app)
    with db_app.app_context():
        ids = small_world()
        ids["quiz"] = db.session.scalar(select(Quiz.id))
        ids["questions"] = {q.qid: q.id for q in db.session.scalars(select(Question))}
    db_app.config["IDS"] = ids
    return db_app


def _clock(monkeypatch, offset):
    real = service.utcnow
    monkeypatch.setattr(service, "utcnow", lambda: real() + offset)


def test_take_quiz_one_per_screen_and_answers_never_in_the_page(quiz_app):
    ids = quiz_app.config["IDS"]
    client = login(quiz_app, "d1")
    r = client.post("/quizzes/basics-quiz/start")
    assert r.status_code == 302
    take_url = r.headers["Location"]
    page = client.get(take_url).get_data(as_text=True)
    assert "乡镇人大每届任期几年？" in page and "每届任期五年。" not in page
    assert "answer" not in page.lower().replace("quizzes.answer", "").replace("/answer", "")
    attempt_id = int(take_url.rstrip("/").split("/")[-1])
    q = ids["questions"]
    # a normal form post per question (no JS): save and go to the next one
    r = client.post(f"/quizzes/attempt/{attempt_id}/answer",
                    data={"question_id": q["q-single"], "r": "C", "q": "0", "go": "next"})
    assert r.status_code == 302 and r.headers["Location"].endswith("?q=1")
    # the JSON save the script uses
    r = client.post(f"/quizzes/attempt/{attempt_id}/answer",
                    json={"question_id": q["q-multi"], "response": ["A"]},
                    headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.get_json()["ok"] is True
    # a closed tab: opening the attempt again resumes at the first unanswered question
    page = client.get(f"/quizzes/attempt/{attempt_id}").get_data(as_text=True)
    assert "乡镇人大设常委会。" in page
    r = client.post(f"/quizzes/attempt/{attempt_id}/submit",
                    data={"question_id": q["q-tf"], "r": "×"})
    assert r.status_code == 302
    result = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "50.0" in result and "未通过" in result and "预算调整由人代会批准。" in result
    assert 'href="/courses/basics/status#' in result
    with quiz_app.app_context():
        attempt = db.session.get(Attempt, attempt_id)
        assert attempt.score == 50.0 and attempt.passed is False
        # wrong answers (q-multi partly, q-fill unanswered) became review cards
        cards = db.session.scalars(select(ReviewCard).where(ReviewCard.user_id == ids["d1"])).all()
        assert {c.question_id for c in cards} == {q["q-multi"], q["q-fill"]}
    review = client.get("/quizzes/review").get_data(as_text=True)
    assert "主席团闭会期间做什么？" in review and "预算调整由人代会批准。" in review


def test_passing_through_the_web_credits_study_hours_once(quiz_app):
    """The QuizPassed ledger entry is committed with the grade (it was lost before: emitted
    after the commit, and nothing committed it)."""
    from kb.plugins.progress.models import LedgerEntry

    q = quiz_app.config["IDS"]["questions"]
    client = login(quiz_app, "d1")
    for _ in range(2):  # a second attempt passing again adds nothing
        attempt_id = int(client.post("/quizzes/basics-quiz/start").headers["Location"].split("/")[-1])
        for qid, response in ((q["q-single"], ["C"]), (q["q-multi"], ["A", "B"]),
                              (q["q-tf"], ["错"]), (q["q-fill"], ["三"])):
            client.post(f"/quizzes/attempt/{attempt_id}/answer",
                        json={"question_id": qid, "response": response},
                        headers={"Accept": "application/json"})
        client.post(f"/quizzes/attempt/{attempt_id}/submit")
    with quiz_app.app_context():
        entries = db.session.execute(select(LedgerEntry.source, LedgerEntry.event_key).where(
            LedgerEntry.user_id == quiz_app.config["IDS"]["d1"])).all()
    assert [tuple(e) for e in entries] == [("quiz", f"quiz:basics-quiz:{quiz_app.config['IDS']['d1']}")]


def test_server_owns_the_clock(quiz_app, monkeypatch):
    ids = quiz_app.config["IDS"]
    q = ids["questions"]
    client = login(quiz_app, "d1")
    client.post("/quizzes/basics-quiz/start")
    with quiz_app.app_context():
        attempt = db.session.scalar(select(Attempt))
        assert attempt.deadline - attempt.started_at == timedelta(minutes=10)
        attempt_id = attempt.id
    client.post(f"/quizzes/attempt/{attempt_id}/answer", data={"question_id": q["q-single"], "r": "C"})
    # a client cannot move the deadline: there is nothing to send; the server's time rules
    _clock(monkeypatch, timedelta(minutes=11))
    r = client.post(f"/quizzes/attempt/{attempt_id}/answer",
                    json={"question_id": q["q-multi"], "response": ["A", "B"]},
                    headers={"Accept": "application/json"})
    assert r.status_code == 409 and r.get_json()["ok"] is False
    with quiz_app.app_context():
        attempt = db.session.get(Attempt, attempt_id)
        assert attempt.status == "submitted" and attempt.expired
        assert attempt.score == 25.0  # graded on what was saved: one of four
        saved = db.session.scalar(select(Answer).where(Answer.attempt_id == attempt_id,
                                                       Answer.question_id == q["q-multi"]))
        assert saved.response == [] and saved.credit == 0.0
    # a late submit changes nothing
    client.post(f"/quizzes/attempt/{attempt_id}/submit", data={"question_id": q["q-tf"], "r": "错"})
    with quiz_app.app_context():
        assert db.session.get(Attempt, attempt_id).score == 25.0


def test_expired_attempt_is_graded_when_the_person_comes_back(quiz_app, monkeypatch):
    ids = quiz_app.config["IDS"]
    client = login(quiz_app, "d2")
    client.post("/quizzes/basics-quiz/start")
    with quiz_app.app_context():
        attempt_id = db.session.scalar(select(Attempt.id))
    client.post(f"/quizzes/attempt/{attempt_id}/answer",
                data={"question_id": ids["questions"]["q-tf"], "r": "错"})
    _clock(monkeypatch, timedelta(hours=2))
    r = client.get(f"/quizzes/attempt/{attempt_id}")
    assert r.status_code == 302 and r.headers["Location"].endswith("/result")
    with quiz_app.app_context():
        attempt = db.session.get(Attempt, attempt_id)
        assert attempt.status == "submitted" and attempt.score == 25.0


class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def kb_track_event(self, event):
        self.events.append(event)


def test_double_submit_from_two_tabs_grades_once(tmp_path, db_url):
    from kb import create_app, dbmigrate

    from .conftest import make_config

    recorder = Recorder()
    app = create_app(make_config(tmp_path, DATABASE_URL=db_url, TEST_PLUGINS=[("rec", recorder)]))
    with app.app_context():
        dbmigrate.upgrade(app)
    write_quiz(app)
    run_sync(app)
    with app.app_context():
        small_world()
        quiz = db.session.scalar(select(Quiz))
        user = db.session.scalar(select(User).where(User.username == "d1"))
        attempt = service.start_attempt(quiz, user)
        for q in quiz.live_questions():
            service.save_answer(attempt, q.id, q.answer if q.type != "truefalse" else ["错"])
        attempt_id = attempt.id
        # two tabs starting at once share the open attempt
        assert service.start_attempt(quiz, user).id == attempt_id
    tabs = [login(app, "d1"), login(app, "d1")]
    barrier = threading.Barrier(2)
    codes = []

    def submit(client):
        barrier.wait()
        codes.append(client.post(f"/quizzes/attempt/{attempt_id}/submit").status_code)

    threads = [threading.Thread(target=submit, args=(c,)) for c in tabs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [302, 302]
    tabs[0].post(f"/quizzes/attempt/{attempt_id}/submit")
    with app.app_context():
        attempt = db.session.get(Attempt, attempt_id)
        assert attempt.status == "submitted" and attempt.score == 100.0
        assert db.session.scalar(select(func.count()).select_from(Answer)) == 4
        assert db.session.scalar(select(func.count()).select_from(Attempt)) == 1
        db.session.remove()
        db.engine.dispose()
    passed = [e for e in recorder.events if e.name == "QuizPassed"]
    assert len(passed) == 1 and passed[0].key == f"quiz:basics-quiz:{user.id}"
    assert passed[0].course_slug == "basics" and passed[0].score == 100.0


def test_attempts_allowed_and_best_or_last(quiz_app):
    with quiz_app.app_context():
        quiz = db.session.scalar(select(Quiz))
        user = db.session.scalar(select(User).where(User.username == "d1"))
        scores = []
        for right in (True, False, False):
            attempt = service.start_attempt(quiz, user)
            q = quiz.live_questions()[0]
            service.save_answer(attempt, q.id, ["C"] if right else ["A"])
            service.finalize(attempt)
            scores.append(attempt.score)
        with pytest.raises(service.QuizError):
            service.start_attempt(quiz, user)
        attempts = service.attempts_of(user.id, quiz.id)
        assert service.quiz_result(quiz, attempts).score == 25.0
        quiz.grading = "last"
        assert service.quiz_result(quiz, attempts).number == 3


def test_draw_without_repeats_unseen_first(quiz_app):
    import random

    with quiz_app.app_context():
        quiz = db.session.scalar(select(Quiz))
        quiz.draw, quiz.attempts_allowed = 2, None
        quiz.shuffle_options = True
        db.session.commit()
        user = db.session.scalar(select(User).where(User.username == "d1"))
        rng = random.Random(3)
        seen = []
        for _ in range(2):
            attempt = service.start_attempt(quiz, user, rng)
            assert len(attempt.question_ids) == len(set(attempt.question_ids)) == 2
            seen.extend(attempt.question_ids)
            service.finalize(attempt)
        assert sorted(seen) == sorted(q.id for q in quiz.live_questions())  # no repeats
        third = service.start_attempt(quiz, user, rng)
        assert len(set(third.question_ids)) == 2
        multi = next(q for q in quiz.questions if q.qid == "q-multi")
        if multi.id in third.question_ids:
            assert sorted(third.option_orders[str(multi.id)]) == ["A", "B", "C"]


# -- FSRS, 错题本, 每日一练 ------------------------------------------------------------------------

def test_fsrs_schedules_wrong_answers_and_flags_repeat_failures(quiz_app):
    with quiz_app.app_context():
        quiz = db.session.scalar(select(Quiz))
        user = db.session.scalar(select(User).where(User.username == "d1"))
        q = next(x for x in quiz.questions if x.qid == "q-single")
        now = utcnow()
        card = service.review(user.id, q, ["A"], False, now, create=True)
        db.session.commit()
        assert card.lapses == 1 and not card.flagged
        assert timedelta(hours=23) < card.due - now <= timedelta(days=1, minutes=1)
        assert service.review(user.id, q, ["C"], True, now, create=False) is not None
        for n in (1, 2):
            card = service.review(user.id, q, ["A"], False, now + timedelta(days=n * 2), create=True)
        db.session.commit()
        assert card.lapses == 3 and card.flagged
        assert db.session.scalar(select(func.count()).select_from(ReviewCard)) == 1
        good = service.review(user.id, q, ["C"], True, now + timedelta(days=10), create=True)
        assert good.due > now + timedelta(days=10)
        other = next(x for x in quiz.questions if x.qid == "q-fill")
        assert service.review(user.id, other, ["3"], True, now, create=True) is None  # right: no card


class RequiredCourses:
    @hookimpl
    def kb_required_courses(self, user, year):
        return ["basics"]


def test_daily_practice_mixes_due_cards_and_new_required_questions(tmp_path):
    from kb import create_app, dbmigrate

    from .conftest import make_config

    plugin = RequiredCourses()
    app = create_app(make_config(tmp_path, TEST_PLUGINS=[("req", plugin)], QUIZZES_DAILY_COUNT=3))
    with app.app_context():
        dbmigrate.upgrade(app)
    write_quiz(app)
    write_quiz(app, "other", QUIZ_YAML.replace("course: basics", "course: duties")
               .replace("q-", "o-"))
    run_sync(app)
    with app.app_context():
        small_world()
        user = db.session.scalar(select(User).where(User.username == "d1"))
        q = db.session.scalar(select(Question).where(Question.qid == "o-single"))
        service.review(user.id, q, ["A"], False, utcnow() - timedelta(days=2), create=True)
        db.session.commit()
        q_id = q.id
    client = login(app, "d1")
    page = client.get("/quizzes/daily").get_data(as_text=True)
    assert "每日一练" in page
    with app.app_context():
        from kb.plugins.quizzes.models import Daily

        daily = db.session.scalar(select(Daily))
        assert len(daily.question_ids) == 3 and daily.question_ids[0] == q_id  # due card first
        fresh = db.session.scalars(select(Question).where(Question.id.in_(daily.question_ids[1:]))).all()
        assert all(x.qid.startswith("q-") for x in fresh)  # new questions from the required course
    r = client.post("/quizzes/daily/answer", data={"question_id": q_id, "r": "C"})
    assert r.status_code == 302
    page = client.get("/quizzes/daily").get_data(as_text=True)
    assert "每届任期五年。" in page  # explanation shown after answering
    with app.app_context():
        card = db.session.scalar(select(ReviewCard).where(ReviewCard.question_id == q_id))
        assert card.reviews == 2 and card.due > utcnow() + timedelta(days=1)
        db.engine.dispose()


def test_lesson_panel_and_nav(quiz_app):
    client = login(quiz_app, "d1")
    page = client.get("/courses/basics/status").get_data(as_text=True)
    assert "本课程测验" in page and 'href="/quizzes/basics-quiz"' in page
    assert 'href="/quizzes/review"' in page and "错题本" in page
    other = client.get("/courses/duties/suggestions").get_data(as_text=True)
    assert "本课程测验" not in other


def test_demo_data_is_idempotent(app):
    from kb.demo import load_demo

    with app.app_context():
        load_demo(app, "pw")
        first = db.session.scalar(select(func.count()).select_from(Attempt))
        load_demo(app, "pw")
        assert db.session.scalar(select(func.count()).select_from(Attempt)) == first > 0
        bank = db.session.scalar(select(Quiz).where(Quiz.slug == "demo-county-basics"))
        assert bank.origin == "import" and bank.org_unit_id is not None


def test_all_questions_on_one_page_without_javascript(quiz_app):
    ids = quiz_app.config["IDS"]
    q = ids["questions"]
    with quiz_app.app_context():
        quiz = db.session.scalar(select(Quiz))
        quiz.one_per_screen = False
        db.session.commit()
    client = login(quiz_app, "d3")
    take_url = client.post("/quizzes/basics-quiz/start").headers["Location"]
    page = client.get(take_url).get_data(as_text=True)
    assert all(f'name="r-{i}"' in page for i in q.values())
    attempt_id = int(take_url.rstrip("/").split("/")[-1])
    r = client.post(f"/quizzes/attempt/{attempt_id}/answer",
                    data={f"r-{q['q-single']}": "C", f"r-{q['q-fill']}": "３"})
    assert r.status_code == 302
    page = client.get(take_url).get_data(as_text=True)
    assert 'value="３"' in page
    client.post(f"/quizzes/attempt/{attempt_id}/submit",
                data={f"r-{q['q-single']}": "C", f"r-{q['q-fill']}": "３",
                      f"r-{q['q-multi']}": ["A", "B"], f"r-{q['q-tf']}": "错"})
    with quiz_app.app_context():
        assert db.session.get(Attempt, attempt_id).score == 100.0
