"""Mixed load on the province data set: one or two app servers, many signed-in people.

Run (needs the ``bench`` extra: ``.venv/bin/pip install -e '.[bench]'`` for locust):

    .venv/bin/python -m bench.mixed_load [--scale 1] [--configs 1x2,2x2,1x4] [--users 32]
        [--seconds 60] [--warmup 10] [--rounds 2] [--schema NAME] [--laws PATH | --no-laws]

Data: the province of ``bench.progress_report`` (its generator, on PostgreSQL, in a fresh schema
dropped afterwards, or kept in ``--schema``): at ``--scale 1`` 60 counties, 2,000 townships,
100,000 learners, 5,000,000 progress rows and 2,000,000 ledger entries; ``--scale 0.05`` is a
quick run (3 counties, 100 townships, 5,000 learners). Its 300 lessons get real text (the shipped
curriculum's lessons, repeated) so pages and search are realistic, a 10-question quiz with no
attempt limit is added, and the law corpus at ``--laws`` (default ../shared/corpora/cn-law/core
when present) is imported. Each app server has its own folder, copy of the content and search
index (``kb sync`` on each), the same secret key and database: the province layout of
docs/deploy.md, production mode, CSRF on, rate limits in the database.

Load: locust (bench/mixed_locust.py) on loopback, ``--users`` people in a closed loop without
think time, each signed in with their own session (fresh people for every run), spread over the
servers round robin. Task weights: heartbeat 50, lesson page 25, search 10, course page 5, home
5, quiz 5 (start, save 10 answers, submit: 12 requests). Reported per
configuration (``AxW`` = A servers of W gunicorn workers each), median over ``--rounds``
interleaved rounds: requests/s, p50/p95 per endpoint, failures, and app-server CPU seconds per
request (from /proc), with the load average. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import csv
import http.cookiejar
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

from . import common
from .common import REPO, log

CORPUS = REPO.parent / "shared" / "corpora" / "cn-law" / "core"
QUERIES = ["代表", "主席团", "闭会期间", "选举", "代表建议", "预算", "监督", "人代会", "视察",
           "罢免", "质询", "议案", "选民", "代表小组", "表决", "乡镇人民代表大会", "履职", "审议"]
QUIZ_SLUG = "mixed-load"
SECRET = "mixed-load-benchmark-secret-" + "0" * 40
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


# -- content ---------------------------------------------------------------------------------------

def write_content(folder: Path, lessons: int = 300, per_course: int = 10) -> None:
    """Lesson files for the generator's courses c1..c30 and lessons l1..l300, with the shipped
    curriculum's text (links dropped: they point at the shipped file names)."""
    import yaml

    shipped = []
    for path in sorted((REPO / "courses").glob("*/[0-9]*.md")):
        raw = path.read_text(encoding="utf-8")
        _, front, body = raw.split("---", 2)
        meta = yaml.safe_load(front)
        shipped.append((meta["title"], meta.get("summary", ""), _LINK.sub(r"\1", body)))
    courses = folder / "courses"
    for c in range(lessons // per_course):
        course = courses / f"c{c + 1}"
        course.mkdir(parents=True)
        (course / "_course.md").write_text(f"---\ntitle: 课程{c + 1}\nsummary: 基准课程\norder: {c}\n---\n基准课程。\n",
                                           encoding="utf-8")
        for i in range(per_course):
            n = c * per_course + i  # the generator's lesson l(n+1): minutes 5 + n % 40
            title, summary, body = shipped[n % len(shipped)]
            front = yaml.safe_dump({"title": f"{title}（{n + 1}）", "summary": summary,
                                    "minutes": 5 + n % 40}, allow_unicode=True)
            (course / f"{i + 1:02d}-l{n + 1}.md").write_text(f"---\n{front}---\n{body}", encoding="utf-8")
    quiz = ["title: 混合负载测验", "course: c1", "pass_score: 60", "questions:"]
    for i in range(10):
        quiz += [f"  - id: m{i}", "    type: single", f"    stem: 第{i + 1}题：乡镇人大每届任期几年？",
                 "    options: [三年, 四年, 五年]", "    answer: C", "    explanation: 每届任期五年。",
                 "    lesson: c1/l1"]
    (folder / "quizzes").mkdir(parents=True, exist_ok=True)
    (folder / "quizzes" / f"{QUIZ_SLUG}.yaml").write_text("\n".join(quiz) + "\n", encoding="utf-8")


# -- servers ---------------------------------------------------------------------------------------

class Server:
    def __init__(self, name: str, folder: Path, env: dict):
        self.name, self.folder, self.env = name, folder, env
        self.proc = None
        self.port = 0

    def kb(self, *args) -> str:
        done = subprocess.run([str(common.VENV_BIN / "kb"), *args], env=self.env, cwd=self.folder,
                              capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"kb {' '.join(args)} on {self.name}: {done.stderr[-2000:]}")
        return done.stderr + done.stdout

    def start(self, workers: int) -> None:
        self.port = common.free_port()
        self.proc = subprocess.Popen(
            [str(common.VENV_BIN / "kb"), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers)], env=self.env, cwd=self.folder,
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "server.log", "ab"),  # noqa: SIM115
            start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_up(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.folder / 'server.log'}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not answer in {timeout} s")

    def cpu_seconds(self) -> float:
        return common.children_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            common.stop_process(self.proc)
            self.proc = None


def make_servers(work: Path, db_url: str, names=("a", "b")) -> list[Server]:
    servers = []
    for name in names:
        folder = work / name
        folder.mkdir()
        shutil.copytree(work / "content" / "courses", folder / "courses")
        shutil.copytree(work / "content" / "quizzes", folder / "quizzes")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
        env.update({"KB_ENV": "production", "KB_COOKIE_SECURE": "0", "KB_SECRET_KEY": SECRET,
                    "KB_DATABASE_URL": db_url, "KB_COURSES_DIR": str(folder / "courses"),
                    "KB_QUIZZES_DIR": str(folder / "quizzes"), "KB_INDEX_DIR": str(folder / "index"),
                    "KB_INSTANCE_DIR": str(folder / "instance"), "PYTHONPATH": str(REPO)})
        servers.append(Server(name, folder, env))
    return servers


# -- people ----------------------------------------------------------------------------------------

def sign_in(base: str, usernames: list[str], password: str) -> list[dict]:
    """A session cookie and CSRF token per person (signed in through ``base``; sessions are
    signed cookies, valid on every server with the same secret key)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(username):
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(base + "/login", timeout=60).read().decode()
        token = _CSRF.search(page).group(1)
        opener.open(base + "/login", urllib.parse.urlencode(
            {"login": username, "password": password, "csrf_token": token}).encode(), timeout=60)
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        assert "session=" in cookie, username
        return {"cookie": cookie, "csrf": token}

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, usernames))


def load_data(app) -> dict:
    from sqlalchemy import select

    from kb.extensions import db
    from kb.models import Course, Lesson
    from kb.plugins.quizzes.models import Question, Quiz

    with app.app_context():
        lessons = [{"id": lid, "url": f"/courses/{c}/{slug}", "course_url": f"/courses/{c}"}
                   for lid, c, slug in db.session.execute(
                       select(Lesson.id, Course.slug, Lesson.slug).join(Course)
                       .where(Lesson.is_active.is_(True)).order_by(Lesson.id))]
        questions = [[qid, list(answer)] for qid, answer in db.session.execute(
            select(Question.id, Question.answer).join(Quiz).where(Quiz.slug == QUIZ_SLUG)
            .order_by(Question.position))]
        db.session.remove()
    assert lessons and questions, "the content did not sync"
    return {"lessons": lessons, "queries": [urllib.parse.quote(q) for q in QUERIES],
            "quiz": {"slug": QUIZ_SLUG, "questions": questions}}


# -- one locust run --------------------------------------------------------------------------------

def run_locust(targets: list[str], data: dict, users: int, seconds: int, out: Path) -> dict:
    data_file = out.with_suffix(".json")
    data_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    env = dict(os.environ, KB_MIXED_DATA=str(data_file), KB_MIXED_TARGETS=",".join(targets))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [str(common.VENV_BIN / "locust"), "-f", str(REPO / "bench" / "mixed_locust.py"), "--headless",
         "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--csv", str(out), "--only-summary",
         "--loglevel", "WARNING", "--host", targets[0]],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=seconds + 300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = {}
    with open(f"{out}_stats.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            stats[row["Name"]] = {
                "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                "rps": float(row["Requests/s"]), "p50_ms": float(row["50%"] or 0),
                "p95_ms": float(row["95%"] or 0), "p99_ms": float(row["99%"] or 0)}
    failures = []
    failures_file = Path(f"{out}_failures.csv")
    if failures_file.exists():
        with open(failures_file, newline="", encoding="utf-8") as fh:
            failures = [f"{r['Name']}: {r['Error']} x{r['Occurrences']}" for r in csv.DictReader(fh)]
    return {"stats": stats, "failures": failures, "exit_code": done.returncode,
            "locust_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            "stderr": done.stderr[-1500:] if done.returncode not in (0, 1) else ""}


def parse_config(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not m or not 1 <= int(m.group(1)) <= 2:
        raise SystemExit(f"--configs: {text!r} is not SERVERSxWORKERS with 1 or 2 servers")
    return int(m.group(1)), int(m.group(2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--configs", default="1x2,2x2,1x4")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--schema", help="keep the generated data in this PostgreSQL schema and "
                        "reuse it in later runs (never dropped)")
    parser.add_argument("--laws", type=Path, default=CORPUS if CORPUS.is_dir() else None)
    parser.add_argument("--no-laws", action="store_true")
    parser.add_argument("--out", type=Path, help="keep results and logs here")
    args = parser.parse_args(argv)
    configs = [parse_config(c) for c in args.configs.split(",")]
    if shutil.which("locust", path=str(common.VENV_BIN)) is None:
        print("locust is not installed: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
        return 2
    if not common.pg_available():
        print("PostgreSQL is not reachable at " + common.PG_URL, file=sys.stderr)
        return 2
    from kb import create_app, dbmigrate

    from . import progress_report

    result = {"machine": common.machine(), "scale": args.scale, "users": args.users,
              "seconds": args.seconds, "warmup": args.warmup, "rounds": args.rounds,
              "mix": "heartbeat 50, lesson 25, search 10, course 5, home 5, quiz 5 (12 requests)"}
    with ExitStack() as stack:
        work = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kb-mixed-")))
        work.mkdir(parents=True, exist_ok=True)
        for leftover in ("content", "a", "b", "setup"):  # from an earlier run with the same --out
            shutil.rmtree(work / leftover, ignore_errors=True)
        url = progress_report.keep_schema(args.schema) if args.schema else stack.enter_context(common.pg_schema())
        write_content(work / "content")
        servers = make_servers(work, url)
        stack.callback(lambda: [s.stop() for s in servers])
        app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET, "ENV": "production",
                          "INSTANCE_DIR": str(work / "setup"), "INDEX_DIR": str(work / "setup" / "index"),
                          "COURSES_DIR": str(work / "content" / "courses"),
                          "QUIZZES_DIR": str(work / "content" / "quizzes")})
        with app.app_context():
            dbmigrate.upgrade(app)
            from sqlalchemy import func, select

            from kb.extensions import db
            from kb.models import User

            existing = db.session.scalar(select(func.count()).select_from(User))
            db.session.remove()
        counties = max(1, round(60 * args.scale))
        gen = SimpleNamespace(counties=counties, townships=max(counties, round(2000 * args.scale)),
                              people=50, lessons_per_person=50, ledger_per_person=20)
        if existing:
            result["data"] = {"reused_schema": args.schema, "users": existing}
            gen.townships = None
        else:
            log(f"generating the province at scale {args.scale}: {gen.counties} counties, "
                f"{gen.townships} townships, {gen.townships * gen.people} learners")
            result["data"] = progress_report.generate(app, gen)
            log(f"generated in {result['data']['generate_s']} s")
            with app.app_context(), db.engine.begin() as conn:  # kb sync counts versions up
                from sqlalchemy import text

                conn.execute(text("UPDATE kb_meta SET value = '1' WHERE key = 'catalog_version'"))
        if args.laws and not args.no_laws:
            started = time.perf_counter()
            log(servers[0].kb("laws", "import", str(args.laws)).strip().splitlines()[-1])
            result["laws_import_s"] = round(time.perf_counter() - started, 1)
        for server in servers:  # each server's deploy step: its own index from the same content
            started = time.perf_counter()
            note = server.kb("sync", "--rebuild").strip().splitlines()[-1]
            result[f"sync_{server.name}_s"] = round(time.perf_counter() - started, 1)
            log(f"{server.name}: {note}")
        data = load_data(app)
        with app.app_context():
            from kb.extensions import db
            from kb.models import User

            learners = list(db.session.scalars(select(User.username).where(User.role == "deputy")))
            db.session.remove()
        rng = random.Random(11)
        runs_needed = len(configs) * args.rounds * 2  # a warm-up and a measured run each
        people = rng.sample(learners, min(len(learners), args.users * runs_needed))
        if len(people) < args.users * runs_needed:
            log(f"only {len(learners)} learners: people are reused between runs")
        cursor = 0

        def fresh_people() -> list[dict]:
            nonlocal cursor
            names = [people[(cursor + i) % len(people)] for i in range(args.users)]
            cursor += args.users
            return sign_in(servers[0].url, names, progress_report.PW)

        runs = []
        for round_no in range(args.rounds):
            for n_servers, workers in configs:
                name = f"{n_servers}x{workers}"
                active = servers[:n_servers]
                for server in active:
                    server.start(workers)
                try:
                    for server in active:
                        server.wait_up()
                    targets = [s.url for s in active]
                    warm = run_locust(targets, {**data, "sessions": fresh_people()}, args.users,
                                      args.warmup, work / f"warm-{name}-{round_no}")
                    sessions = fresh_people()
                    load_before = os.getloadavg()
                    cpu_before = sum(s.cpu_seconds() for s in active)
                    run = run_locust(targets, {**data, "sessions": sessions}, args.users,
                                     args.seconds, work / f"run-{name}-{round_no}")
                    cpu = sum(s.cpu_seconds() for s in active) - cpu_before
                    total = run["stats"].get("Aggregated", {})
                    run.update(config=name, round=round_no, load_before=[round(x, 2) for x in load_before],
                               load_after=[round(x, 2) for x in os.getloadavg()],
                               app_cpu_s=round(cpu, 1),
                               app_cpu_ms_per_request=round(1000 * cpu / max(1, total.get("requests", 0)), 2),
                               warmup_failures=warm["failures"])
                    log(f"{name} round {round_no}: {total.get('rps')} req/s, "
                        f"{total.get('failures')} failures, p95 {total.get('p95_ms')} ms, "
                        f"{run['app_cpu_ms_per_request']} ms CPU/request, load {run['load_after'][0]}")
                    runs.append(run)
                finally:
                    for server in active:
                        server.stop()
        result["runs"] = runs
        result["summary"] = summarise(runs)
        with app.app_context():
            result["check"] = check_database(app)
            from kb.extensions import db

            db.engine.dispose()
    print(json.dumps(result, ensure_ascii=False, indent=2))
    print(table(result["summary"]), file=sys.stderr)
    failed = sum(r["stats"].get("Aggregated", {}).get("failures", 0) for r in runs)
    return 0 if failed == 0 and result["check"]["ok"] else 1


def summarise(runs: list[dict]) -> dict:
    """Per configuration: medians over rounds of each endpoint's figures."""
    out: dict = {}
    for name in dict.fromkeys(r["config"] for r in runs):
        mine = [r for r in runs if r["config"] == name]
        endpoints = {}
        for endpoint in mine[0]["stats"]:
            rows = [r["stats"][endpoint] for r in mine if endpoint in r["stats"]]
            endpoints[endpoint] = {k: common.median(row[k] for row in rows)
                                   for k in ("rps", "p50_ms", "p95_ms")}
            endpoints[endpoint]["failures"] = sum(row["failures"] for row in rows)
            endpoints[endpoint]["requests"] = sum(row["requests"] for row in rows)
        out[name] = {"endpoints": endpoints,
                     "rps_each_round": [r["stats"].get("Aggregated", {}).get("rps") for r in mine],
                     "app_cpu_ms_per_request": common.median(r["app_cpu_ms_per_request"] for r in mine),
                     "locust_cpu_s": common.median(r["locust_cpu_s"] for r in mine),
                     "load": [r["load_after"][0] for r in mine]}
    return out


def table(summary: dict) -> str:
    names = list(summary)
    endpoints = list(next(iter(summary.values()))["endpoints"]) if summary else []
    lines = ["| endpoint | " + " | ".join(f"{n}: req/s, p50 / p95 ms" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for endpoint in endpoints:
        cells = []
        for n in names:
            e = summary[n]["endpoints"].get(endpoint)
            cells.append(f"{e['rps']:.1f}, {e['p50_ms']:.0f} / {e['p95_ms']:.0f}" if e else "")
        lines.append(f"| {endpoint} | " + " | ".join(cells) + " |")
    lines.append("| failures | " + " | ".join(
        str(summary[n]["endpoints"].get("Aggregated", {}).get("failures")) for n in names) + " |")
    lines.append("| app CPU ms / request | " + " | ".join(
        f"{summary[n]['app_cpu_ms_per_request']:.2f}" for n in names) + " |")
    return "\n".join(lines)


def check_database(app) -> dict:
    """Every submitted attempt graded once; one progress row per person and lesson."""
    from sqlalchemy import func, select

    from kb.extensions import db
    from kb.plugins.progress.models import LessonProgress
    from kb.plugins.quizzes.models import Answer, Attempt

    submitted = db.session.scalar(select(func.count()).select_from(Attempt).where(Attempt.status == "submitted"))
    ungraded = db.session.scalar(select(func.count()).select_from(Answer).join(Attempt).where(
        Attempt.status == "submitted", Answer.credit.is_(None)))
    duplicate_rows = db.session.scalar(select(func.count()).select_from(
        select(LessonProgress.user_id).group_by(LessonProgress.user_id, LessonProgress.lesson_id)
        .having(func.count() > 1).subquery()))
    db.session.remove()
    return {"submitted_attempts": submitted, "ungraded_answers_of_submitted": ungraded,
            "duplicate_progress_rows": duplicate_rows, "ok": ungraded == 0 and duplicate_rows == 0}


if __name__ == "__main__":
    sys.exit(main())
