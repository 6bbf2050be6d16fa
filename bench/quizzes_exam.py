"""Exam-window benchmark: N people in one county take a 20-question quiz and submit in a minute.

    .venv/bin/python -m bench.quizzes_exam [--people 500] [--window 60] [--backend postgresql|sqlite|both]

For each backend: a fresh database (a throw-away PostgreSQL schema, or a SQLite file), one county
with 10 townships and N deputies, a 20-question timed quiz; gunicorn (``kb.wsgi:app``, 4 sync
workers) on 127.0.0.1. Everyone signs in (not timed), then each person starts the quiz and saves
20 answers through the same JSON endpoint the page's script uses (timed: "save" latencies), then
the N submits are spread evenly over the window (timed: "submit" latencies); one person in ten
double-submits from a second connection at the same moment. Afterwards the database must hold
exactly N submitted attempts, 20 answers each, none graded twice. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import common
from .common import log, percentile

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-pw"
QUESTIONS = 20
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def quiz_yaml() -> str:
    lines = ["title: 考试窗口基准", "pass_score: 60", "time_limit_minutes: 30", "attempts: 3",
             "shuffle_options: true", "one_per_screen: true", "questions:"]
    for i in range(QUESTIONS):
        kind = ("single", "multiple", "truefalse", "fill")[i % 4]
        lines += [f"  - id: b{i:02d}", f"    type: {kind}", f"    stem: 第{i + 1}题：测试题干"]
        if kind in ("single", "multiple"):
            lines += ["    options: [甲, 乙, 丙, 丁]",
                      "    answer: " + ("B" if kind == "single" else "AC")]
        elif kind == "truefalse":
            lines.append("    answer: 对")
        else:
            lines.append("    answer: [三, '3']")
        lines += ["    explanation: 解析。", "    source: 代表法(2025) 第五十一条"]
    return "\n".join(lines) + "\n"


def setup(config: dict, people: int) -> list[str]:
    """Create the schema, the quiz and the people (cheap password hashes); return usernames."""
    from kb import create_app, dbmigrate
    from kb.cli import run_sync
    from kb.extensions import db
    from kb.models import OrgUnit, User

    Path(config["QUIZZES_DIR"], "exam.yaml").write_text(quiz_yaml(), encoding="utf-8")
    app = create_app({**config, "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"})
    with app.app_context():
        dbmigrate.upgrade(app)
    report = run_sync(app)
    assert not [p for p in report.errors if "quizzes" in p.path], report.errors
    names = []
    with app.app_context():
        def unit(kind, name, parent):
            u = OrgUnit(kind=kind, name=name, parent=parent, path="/")
            db.session.add(u)
            db.session.flush()
            u.path = (parent.path if parent else "/") + f"{u.id}/"
            return u

        county = unit("county", "基准县", None)
        towns = [unit("township", f"基准{t}镇", county) for t in range(10)]
        from werkzeug.security import generate_password_hash

        digest = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
        for i in range(people):
            name = f"bench{i:04d}"
            db.session.add(User(username=name, name=name, role="deputy", password_hash=digest,
                                org_unit=towns[i % 10]))
            names.append(name)
        db.session.commit()
        db.engine.dispose()
    return names


class Person:
    def __init__(self, base: str, username: str):
        self.base, self.username = base, username
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  _NoRedirect())
        self.csrf = ""
        self.attempt_url = ""
        self.question_ids: list[int] = []

    def request(self, path, data=None, headers=None):
        body = None
        if isinstance(data, dict):
            body = urllib.parse.urlencode(data).encode()
        elif isinstance(data, (bytes, str)):
            body = data.encode() if isinstance(data, str) else data
        req = urllib.request.Request(self.base + path, body, headers or {})
        try:
            with self.opener.open(req, timeout=60) as r:
                return r.status, r.headers, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode("utf-8", "replace")

    def login(self):
        _, _, html = self.request("/login")
        self.csrf = _CSRF.search(html).group(1)
        status, _, _ = self.request("/login", {"csrf_token": self.csrf, "login": self.username,
                                               "password": PASSWORD})
        assert status == 302, f"login failed for {self.username}: {status}"

    def start(self):
        _, _, html = self.request("/quizzes/exam")
        self.csrf = _CSRF.search(html).group(1)
        status, headers, _ = self.request("/quizzes/exam/start", {"csrf_token": self.csrf})
        assert status == 302, status
        self.attempt_url = urllib.parse.urlsplit(headers["Location"]).path
        status, _, html = self.request(self.attempt_url)
        assert status == 200, status
        self.csrf = _CSRF.search(html).group(1)
        # the dots list every question; the current one carries its id
        self.question_ids = [int(x) for x in re.findall(r'data-question="(\d+)"', html)]

    def answer_all(self, timings: list[float]):
        index = 0
        while True:
            status, _, html = self.request(f"{self.attempt_url}?q={index}")
            if status != 200:
                break
            qid = int(re.search(r'data-question="(\d+)"', html).group(1))
            values = re.findall(r'name="r" value="([^"]+)"', html)
            response = values[:1] if values else ["三"]
            t0 = time.perf_counter()
            status, _, body = self.request(
                self.attempt_url + "/answer", json.dumps({"question_id": qid, "response": response}),
                {"Content-Type": "application/json", "Accept": "application/json",
                 "X-CSRFToken": self.csrf})
            timings.append(time.perf_counter() - t0)
            assert status == 200, (status, body[:200])
            index += 1
            if index >= QUESTIONS:
                break

    def submit(self) -> tuple[int, float]:
        t0 = time.perf_counter()
        status, _, _ = self.request(self.attempt_url + "/submit", {"csrf_token": self.csrf})
        return status, time.perf_counter() - t0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def wait_up(base: str, proc, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited")
        try:
            urllib.request.urlopen(base + "/login", timeout=2).read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("gunicorn did not answer")


def check_database(config: dict, people: int) -> dict:
    from sqlalchemy import func, select, text

    from kb import create_app
    from kb.extensions import db
    from kb.plugins.quizzes.models import Answer, Attempt

    app = create_app(config)
    with app.app_context():
        attempts = db.session.scalar(select(func.count()).select_from(Attempt))
        submitted = db.session.scalar(select(func.count()).select_from(Attempt)
                                      .where(Attempt.status == "submitted"))
        per_person = db.session.scalar(select(func.max(text("n"))).select_from(
            select(Attempt.user_id, func.count().label("n")).group_by(Attempt.user_id).subquery()))
        answers = db.session.scalar(select(func.count()).select_from(Answer))
        graded = db.session.scalar(select(func.count()).select_from(Answer)
                                   .where(Answer.credit.is_not(None)))
        db.engine.dispose()
    ok = attempts == submitted == people and per_person == 1 and answers == graded == people * QUESTIONS
    return {"attempts": attempts, "submitted": submitted, "max_attempts_per_person": per_person,
            "answers": answers, "graded_answers": graded, "ok": ok}


def run_backend(backend: str, db_url: str, people: int, window: float, workers: int,
                work: Path) -> dict:
    log(f"[{backend}] setting up {people} people")
    config = common.app_config(work / backend, db_url, REPO / "tests" / "fixtures" / "courses",
                               work / backend / "index", backend)
    config["PLUGINS"] = ["quizzes"]
    names = setup(config, people)
    port = common.free_port()
    base = f"http://127.0.0.1:{port}"
    env = common.config_env(config)
    env["KB_PLUGINS"] = "quizzes"
    proc = subprocess.Popen(common.gunicorn_cmd("kb.wsgi:app", port, workers), env=env,
                            cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_up(base, proc)
        crowd = [Person(base, n) for n in names]
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda p: p.login(), crowd))
        log(f"[{backend}] signed in; starting and answering")
        saves: list[float] = []
        t0 = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda p: (p.start(), p.answer_all(saves)), crowd))
        answer_phase = time.perf_counter() - t0
        log(f"[{backend}] {len(saves)} answers saved in {answer_phase:.1f}s; submitting over {window:.0f}s")
        submits: list[float] = []
        statuses: list[int] = []
        lock = threading.Lock()
        rng = random.Random(7)
        doubles = set(rng.sample(range(people), people // 10))
        begin = time.perf_counter()

        def one(i):
            delay = begin + window * i / people - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            person = crowd[i]
            if i in doubles:
                twin = Person(base, person.username)
                twin.jar, twin.opener, twin.csrf = person.jar, person.opener, person.csrf
                twin.attempt_url = person.attempt_url
                with ThreadPoolExecutor(2) as two:
                    results = list(two.map(lambda p: p.submit(), (person, twin)))
            else:
                results = [person.submit()]
            with lock:
                for status, seconds in results:
                    statuses.append(status)
                    submits.append(seconds)

        with ThreadPoolExecutor(96) as pool:
            list(pool.map(one, range(people)))
        submit_phase = time.perf_counter() - begin
    finally:
        common.stop_process(proc)
    check = check_database(config, people)
    result = {
        "backend": backend, "people": people, "questions": QUESTIONS, "workers": workers,
        "answer_phase_s": round(answer_phase, 1), "answers_saved": len(saves),
        "save_p50_ms": round(common.ms(percentile(saves, 50)), 1),
        "save_p95_ms": round(common.ms(percentile(saves, 95)), 1),
        "submit_window_s": round(submit_phase, 1), "submits": len(submits),
        "double_submits": len(doubles),
        "submit_non_302": sum(1 for s in statuses if s != 302),
        "submit_p50_ms": round(common.ms(percentile(submits, 50)), 1),
        "submit_p95_ms": round(common.ms(percentile(submits, 95)), 1),
        "submit_max_ms": round(common.ms(max(submits)), 1),
        **check,
    }
    log(f"[{backend}] {json.dumps(result, ensure_ascii=False)}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=500)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--backend", choices=("postgresql", "sqlite", "both"), default="both")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="kb-quiz-bench-") as tmp:
        work = Path(tmp)
        if args.backend in ("postgresql", "both"):
            if common.pg_available():
                with common.pg_schema() as url:
                    results.append(run_backend("postgresql", url, args.people, args.window,
                                               args.workers, work))
            else:
                log("PostgreSQL not reachable: skipped")
        if args.backend in ("sqlite", "both"):
            results.append(run_backend("sqlite", f"sqlite:///{work / 'exam.sqlite3'}", args.people,
                                       args.window, args.workers, work))
    print(json.dumps(results, ensure_ascii=False, indent=2))
    return 0 if all(r["ok"] and r["submit_non_302"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
