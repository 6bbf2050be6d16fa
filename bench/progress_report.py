"""Progress reports and heartbeats at province scale.

Run: ``.venv/bin/python -m bench.progress_report [--db postgresql|sqlite] [--counties 60]
[--townships 2000] [--people 50] [--lessons-per-person 50] [--ledger-per-person 20]
[--requests 40] [--heartbeat-seconds 10] [--workers 4]``.

Defaults on PostgreSQL: the province of the issue: 60 counties, 2,000 townships, 50 people per
township (100,000 learners), 300 lessons, 50 progress rows per person (5,000,000) and 20 ledger
entries per person (2,000,000). ``--db sqlite`` defaults to one county (33 townships).

The generator writes the rows with ``INSERT … SELECT`` over a number series (no Python loop per
row) into a fresh schema (PostgreSQL) or file (SQLite), migrated by ``kb``. Then, in-process
through the Flask test client with sessions of real accounts:

* the county report (``/progress/report/<county>``, township rows) for random counties as that
  county's staff, and a township report (people rows): p50/p95 and SQL statements per page;
* the province summary (``/progress/report/<province>``, county rows) as admin;
* the heartbeat endpoint under gunicorn (sync workers) with ``wrk`` on loopback, rotating over
  200 signed-in people and their lessons (CSRF on, as in production).

Prints a JSON object; figures go to docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from .common import (
    REPO,
    children_cpu_seconds,
    config_env,
    free_port,
    gunicorn_cmd,
    log,
    machine,
    ms,
    percentile,
    pg_available,
    pg_schema,
    stop_process,
)

PW = "bench-pw"


def _series(dialect: str, name: str, n: int) -> tuple[str, str]:
    """(WITH clause, FROM item) for the numbers 0..n-1 as column ``<name>.n``."""
    if dialect == "postgresql":
        return "", f"generate_series(0, {n - 1}) AS {name}(n)"
    return (f"{name}(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM {name} WHERE n < {n - 1})",
            name)


def _insert(conn, dialect, table_cols: str, select: str, series: dict[str, int], params=None):
    from sqlalchemy import text

    withs, froms = [], []
    for name, n in series.items():
        w, f = _series(dialect, name, n)
        if w:
            withs.append(w)
        froms.append(f)
    sql = (f"WITH RECURSIVE {', '.join(withs)} " if withs else "") + \
        f"INSERT INTO {table_cols} {select.replace('{FROM}', ', '.join(froms))}"
    conn.execute(text(sql), params or {})


def generate(app, args) -> dict:
    """Fill the database; return the counts and the time it took."""
    from datetime import date, timedelta

    from sqlalchemy import func, select, text
    from werkzeug.security import generate_password_hash

    from kb.extensions import db
    from kb.models import User, utcnow
    from kb.plugins.progress.models import LedgerEntry, LessonProgress

    started = time.perf_counter()
    n_c, n_t, per = args.counties, args.townships, args.people
    n_learners = n_t * per
    pw = generate_password_hash(PW, method="pbkdf2:sha256:1")
    now = utcnow() - timedelta(days=1)
    year = now.year
    with app.app_context():
        dialect = db.engine.dialect.name
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO org_unit (id, parent_id, kind, name, code, path, is_active) "
                              "VALUES (1, NULL, 'province', '基准省', 'bp', '/1/', :t)"), {"t": True})
            _insert(conn, dialect, "org_unit (id, parent_id, kind, name, code, path, is_active)",
                    "SELECT 2 + c.n, 1, 'county', '县' || CAST(c.n AS VARCHAR(8)), 'bc' || CAST(c.n AS VARCHAR(8)), "
                    "'/1/' || CAST(2 + c.n AS VARCHAR(8)) || '/', :t FROM {FROM}", {"c": n_c}, {"t": True})
            base_t = 2 + n_c
            _insert(conn, dialect, "org_unit (id, parent_id, kind, name, code, path, is_active)",
                    f"SELECT {base_t} + t.n, 2 + t.n % {n_c}, 'township', '镇' || CAST(t.n AS VARCHAR(8)), "
                    "'bt' || CAST(t.n AS VARCHAR(8)), "
                    f"'/1/' || CAST(2 + t.n % {n_c} AS VARCHAR(8)) || '/' || CAST({base_t} + t.n AS VARCHAR(8)) || '/', :t "
                    "FROM {FROM}", {"t": n_t}, {"t": True})
            role = (f"CASE WHEN u.n % {per} = 0 THEN 'chair' WHEN u.n % {per} = 1 THEN 'secretary' "
                    f"WHEN u.n % {per} < 5 THEN 'presidium' ELSE 'deputy' END")
            user_cols = ("\"user\" (id, username, name, role, org_unit_id, gender, ethnicity, password_hash, "
                         "must_change_password, active, created_at)")
            _insert(conn, dialect, user_cols,
                    "SELECT 1 + u.n, 'u' || CAST(1 + u.n AS VARCHAR(10)), '学员' || CAST(1 + u.n AS VARCHAR(10)), "
                    f"{role}, {base_t} + u.n / {per}, '', '', :pw, :f, :t, :now FROM {{FROM}}",
                    {"u": n_learners}, {"pw": pw, "f": False, "t": True, "now": now})
            staff0 = n_learners + 1
            _insert(conn, dialect, user_cols,
                    f"SELECT {staff0} + c.n, 'staff' || CAST(c.n AS VARCHAR(8)), '县干部' || CAST(c.n AS VARCHAR(8)), "
                    "'county_staff', 2 + c.n, '', '', :pw, :f, :t, :now FROM {FROM}",
                    {"c": n_c}, {"pw": pw, "f": False, "t": True, "now": now})
            admin_id = staff0 + n_c
            conn.execute(text(f"INSERT INTO \"user\" (id, username, name, role, org_unit_id, gender, ethnicity, "
                              f"password_hash, must_change_password, active, created_at) VALUES ({admin_id}, "
                              "'benchadmin', '管理员', 'admin', 1, '', '', :pw, :f, :t, :now)"),
                         {"pw": pw, "f": False, "t": True, "now": now})
            n_courses, per_course = 30, 10
            n_lessons = n_courses * per_course
            _insert(conn, dialect, "course (id, slug, title, summary, \"order\", required_for, intro_html, "
                    "source_path, content_hash, is_active, synced_at)",
                    "SELECT 1 + c.n, 'c' || CAST(1 + c.n AS VARCHAR(8)), '课程' || CAST(1 + c.n AS VARCHAR(8)), "
                    "'', c.n, '[]', '', '', '', :t, :now FROM {FROM}", {"c": n_courses},
                    {"t": True, "now": now})
            _insert(conn, dialect, "lesson (id, course_id, slug, position, title, summary, minutes, tags, "
                    "audience, sources, html, toc, sections, links, source_path, content_hash, is_active, synced_at)",
                    f"SELECT 1 + l.n, 1 + l.n / {per_course}, 'l' || CAST(1 + l.n AS VARCHAR(8)), l.n % {per_course}, "
                    "'课' || CAST(1 + l.n AS VARCHAR(8)), '', 5 + l.n % 40, '[]', '[]', '[]', '<p>x</p>', "
                    "'[]', '[]', '[]', '', '', :t, :now FROM {FROM}", {"l": n_lessons},
                    {"t": True, "now": now})
            conn.execute(text("INSERT INTO kb_meta (key, value) VALUES ('catalog_version', 'bench')"))
            k = args.lessons_per_person
            step = max(1, n_lessons // k)
            done = "(u.n + k.n) % 10 < 7"
            _insert(conn, dialect, "progress_lesson (user_id, lesson_id, course_slug, lesson_slug, seconds, "
                    "max_scroll, last_scroll, started_at, last_beat_at, updated_at, completed_at)",
                    f"SELECT 1 + u.n, 1 + (u.n * 7 + k.n * {step}) % {n_lessons}, "
                    f"'c' || CAST(1 + ((u.n * 7 + k.n * {step}) % {n_lessons}) / {per_course} AS VARCHAR(8)), "
                    f"'l' || CAST(1 + (u.n * 7 + k.n * {step}) % {n_lessons} AS VARCHAR(8)), "
                    f"CASE WHEN {done} THEN 600 ELSE 120 END, CASE WHEN {done} THEN 1.0 ELSE 0.4 END, "
                    f"0.5, :now, :now, :now, CASE WHEN {done} THEN :now ELSE NULL END FROM {{FROM}}",
                    {"u": n_learners, "k": k}, {"now": now})
            e = args.ledger_per_person
            _insert(conn, dialect, "progress_ledger (user_id, year, hours, source, title, event_key, note, "
                    "occurred_at, created_at)",
                    f"SELECT 1 + u.n, CASE WHEN e.n % 4 = 3 THEN {year - 1} ELSE {year} END, "
                    "CASE e.n % 3 WHEN 0 THEN 0.25 WHEN 1 THEN 0.5 ELSE 1.0 END, 'lesson', '课', "
                    "'g:' || CAST(u.n AS VARCHAR(10)) || ':' || CAST(e.n AS VARCHAR(8)), '', :now, :now FROM {FROM}",
                    {"u": n_learners, "e": e}, {"now": now})
            for slug, due in (("c1", date(year, 1, 31)), ("c2", date(year, 12, 31))):
                for r in ("deputy", "presidium", "chair", "secretary"):
                    _insert(conn, dialect, "progress_required (county_id, year, course_slug, role, due_on, created_at)",
                            f"SELECT 2 + c.n, {year}, '{slug}', '{r}', :due, :now FROM {{FROM}}", {"c": n_c},
                            {"due": due, "now": now})
            seqs = [("org_unit_id_seq", "org_unit"), ("user_id_seq", "user"),
                    ("course_id_seq", "course"), ("lesson_id_seq", "lesson")]
            if "quizzes" in args.plugins:
                seqs += _generate_quizzes(conn, dialect, args, n_learners, now)
            if "attendance" in args.plugins:
                seqs += _generate_attendance(conn, dialect, args, n_learners, now)
            if dialect == "postgresql":
                for seq, table in seqs:
                    conn.execute(text(f"SELECT setval('{seq}', (SELECT max(id) FROM \"{table}\"))"))
                conn.execute(text("ANALYZE"))
            else:
                conn.execute(text("ANALYZE"))
        from kb.plugins.progress import service

        service.rebuild_totals()  # the report totals, as the app keeps them
        db.session.commit()
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        counts = {
            "users": db.session.scalar(select(func.count()).select_from(User)),
            "progress_rows": db.session.scalar(select(func.count()).select_from(LessonProgress)),
            "ledger_rows": db.session.scalar(select(func.count()).select_from(LedgerEntry)),
        }
        for table in ("quiz_attempt", "attendance_enrolment", "attendance_record"):
            if table in db.metadata.tables:
                counts[f"{table}_rows"] = db.session.scalar(
                    select(func.count()).select_from(db.metadata.tables[table]))
    counts["generate_s"] = round(time.perf_counter() - started, 1)  # includes the totals
    counts.update(counties=n_c, townships=n_t, lessons=300, admin_id=admin_id, staff0=staff0)
    return counts


QUIZZES = 5
ATTEMPTS_PER_PERSON = 3
SESSIONS_PER_CLASS = 4  # one county class each; the first two are over, with records


def _generate_quizzes(conn, dialect, args, n_learners, now) -> list[tuple[str, str]]:
    """Quizzes and submitted attempts (3 per learner, 3 in 4 passed), for the report's columns."""
    _insert(conn, dialect, "quiz_quiz (id, slug, title, course_slug, pass_score, grading, "
            "shuffle_options, show_after, one_per_screen, origin, source_path, content_hash, is_active, "
            "synced_at)",
            "SELECT 1 + q.n, 'bq' || CAST(1 + q.n AS VARCHAR(8)), '测验' || CAST(1 + q.n AS VARCHAR(8)), "
            "'c' || CAST(1 + q.n AS VARCHAR(8)), 60, 'best', :f, 'answers', :t, 'file', '', '', :t, :now "
            "FROM {FROM}", {"q": QUIZZES}, {"t": True, "f": False, "now": now})
    passed = "(u.n + a.n) % 4 <> 0"
    _insert(conn, dialect, "quiz_attempt (quiz_id, user_id, number, status, started_at, submitted_at, "
            "score, passed, expired, question_ids, option_orders)",
            f"SELECT 1 + (u.n * {ATTEMPTS_PER_PERSON} + a.n) % {QUIZZES}, 1 + u.n, 1, 'submitted', :now, "
            f":now, CASE WHEN {passed} THEN 80 ELSE 40 END, CASE WHEN {passed} THEN :t ELSE :f END, :f, "
            "'[]', '{}' FROM {FROM}", {"u": n_learners, "a": ATTEMPTS_PER_PERSON},
            {"t": True, "f": False, "now": now})
    return [("quiz_quiz_id_seq", "quiz_quiz")]


def _generate_attendance(conn, dialect, args, n_learners, now) -> list[tuple[str, str]]:
    """One class per county for all its learners, 4 sessions this year, records for the 2 past."""
    from datetime import timedelta

    n_c, per, n_s = args.counties, args.people, SESSIONS_PER_CLASS
    _insert(conn, dialect, "attendance_class (id, title, description, org_unit_id, created_at)",
            "SELECT 1 + c.n, '县培训班' || CAST(c.n AS VARCHAR(8)), '', 2 + c.n, :now FROM {FROM}",
            {"c": n_c}, {"now": now})
    first = now.replace(month=1, day=10, hour=9, minute=0, second=0, microsecond=0)
    for k in range(n_s):
        # Two sessions before "now", two after it (still in the year, so they count as expected).
        starts = first + timedelta(days=k) if k < 2 else now + timedelta(hours=k)
        if starts.year != now.year:
            starts = now - timedelta(hours=k)
        _insert(conn, dialect, "attendance_session (id, class_id, title, starts_at, ends_at, place, hours)",
                f"SELECT 1 + c.n * {n_s} + {k}, 1 + c.n, '', :s, :e, '', 2.0 FROM {{FROM}}",
                {"c": n_c}, {"s": starts, "e": starts + timedelta(hours=2)})
    county_of = f"((u.n / {per}) % {n_c})"  # the county index of learner u's township
    _insert(conn, dialect, "attendance_enrolment (class_id, user_id, created_at)",
            f"SELECT 1 + {county_of}, 1 + u.n, :now FROM {{FROM}}", {"u": n_learners}, {"now": now})
    status = "CASE WHEN (u.n + k.n) % 10 < 7 THEN 'present' WHEN (u.n + k.n) % 10 < 8 THEN 'late' " \
        "WHEN (u.n + k.n) % 10 < 9 THEN 'leave' ELSE 'absent' END"
    _insert(conn, dialect, "attendance_record (session_id, user_id, status, source, checked_in_at, "
            "updated_at)",
            f"SELECT 1 + {county_of} * {n_s} + k.n, 1 + u.n, {status}, 'manual', :now, :now FROM {{FROM}}",
            {"u": n_learners, "k": 2}, {"now": now})
    return [("attendance_class_id_seq", "attendance_class"),
            ("attendance_session_id_seq", "attendance_session")]


class Counter:
    def __init__(self, engine):
        from sqlalchemy import event

        self.n = 0
        self.engine = engine
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *args, **kw):
        self.n += 1


def measure_reports(app, args, info) -> dict:
    from kb.extensions import db

    rng = random.Random(7)
    with app.app_context():
        counter = Counter(db.engine)

    def login(username):
        client = app.test_client()
        r = client.post("/login", data={"login": username, "password": PW})
        assert r.status_code == 302, (username, r.status_code)
        return client

    def timed(client, url, times):
        client.get(url)  # warm: catalog, templates
        samples, queries = [], []
        for _ in range(times):
            before = counter.n
            t = time.perf_counter()
            r = client.get(url)
            samples.append(time.perf_counter() - t)
            queries.append(counter.n - before)
            assert r.status_code == 200, (url, r.status_code)
        return samples, queries

    out = {}
    county_samples, county_queries = [], []
    town_samples, town_queries = [], []
    for _ in range(args.requests):
        c = rng.randrange(args.counties)
        client = login(f"staff{c}")
        s, q = timed(client, f"/progress/report/{2 + c}", 1)
        county_samples += s
        county_queries += q
        t = c + args.counties * rng.randrange(max(1, args.townships // args.counties))
        s, q = timed(client, f"/progress/report/{2 + args.counties + t}", 1)
        town_samples += s
        town_queries += q
    out["county_report"] = {"n": len(county_samples), "p50_ms": ms(percentile(county_samples, 50)),
                            "p95_ms": ms(percentile(county_samples, 95)),
                            "queries_per_page": sorted(set(county_queries))}
    out["township_report"] = {"n": len(town_samples), "p50_ms": ms(percentile(town_samples, 50)),
                              "p95_ms": ms(percentile(town_samples, 95)),
                              "queries_per_page": sorted(set(town_queries))}
    admin = login("benchadmin")
    s, q = timed(admin, "/progress/report/1", args.province_requests)
    out["province_summary"] = {"n": len(s), "p50_ms": ms(percentile(s, 50)), "max_ms": ms(max(s)),
                               "queries_per_page": sorted(set(q))}
    client = login("staff0")
    s, q = timed(client, "/progress/report/2/export.xlsx", 3)
    out["county_export_xlsx"] = {"n": len(s), "p50_ms": ms(percentile(s, 50)), "queries_per_page": sorted(set(q))}
    return out


WRK_LUA = r"""
local sessions = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    local cookie, token, lesson = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)")
    sessions[#sessions + 1] = {cookie, token, lesson}
  end
  i = math.random(#sessions)
end
function request()
  i = i % #sessions + 1
  local s = sessions[i]
  return wrk.format("POST", "/progress/beat", {["Content-Type"] = "application/json",
    ["Cookie"] = s[1], ["X-CSRFToken"] = s[2]},
    '{"lesson_id": ' .. s[3] .. ', "scroll": 0.5}')
end
response = function(status, headers, body)
  if status ~= 200 then errors = (errors or 0) + 1 end
end
"""


def measure_heartbeats(config, args, work: Path) -> dict:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk not installed"}
    port = free_port()
    env = config_env(config)
    env["KB_PLUGINS"] = "progress"
    env.pop("KB_BENCH_PLUGINS", None)
    # The server's output goes to a file: a pipe nobody reads would block the workers once full.
    server_log = (work / "gunicorn.log").open("wb")
    proc = subprocess.Popen(gunicorn_cmd("kb.wsgi:app", port, workers=args.workers), env=env,
                            cwd=str(REPO), stdout=server_log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except Exception:
                time.sleep(0.2)
        lines = []
        rng = random.Random(3)
        for u in rng.sample(range(1, args.townships * args.people + 1), 200):
            import http.cookiejar

            jar = http.cookiejar.CookieJar()
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            page = opener.open(base + "/login").read().decode()
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
            opener.open(base + "/login", urllib.parse.urlencode(
                {"login": f"u{u}", "password": PW, "csrf_token": token}).encode())
            lesson = 1 + (u * 13) % 300
            page = opener.open(base + f"/courses/c{1 + (lesson - 1) // 10}/l{lesson}").read().decode()
            token = re.search(r'data-csrf="([^"]+)"', page).group(1)
            cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
            lines.append(f"{cookie}\t{token}\t{lesson}")
        sessions = work / "sessions.tsv"
        sessions.write_text("\n".join(lines) + "\n")
        script = work / "beat.lua"
        script.write_text(WRK_LUA)
        cpu0 = children_cpu_seconds(proc.pid)
        out = subprocess.run(["wrk", "-t2", "-c32", f"-d{args.heartbeat_seconds}s", "-s", str(script),
                              base, "--", str(sessions)], capture_output=True, text=True, timeout=300)
        cpu = children_cpu_seconds(proc.pid) - cpu0
        text_out = out.stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text_out).group(1))
        total = int(re.search(r"(\d+) requests in", text_out).group(1))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text_out)
        lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", text_out)
        # CPU of the gunicorn workers per request: less sensitive to the machine's load than req/s.
        return {"requests_per_s": rps, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
                "worker_cpu_ms_per_request": round(cpu * 1000 / total, 2) if total else None,
                "latency_avg": lat.group(1) if lat else None, "workers": args.workers,
                "wrk": f"-t2 -c32 -d{args.heartbeat_seconds}s, 200 sessions"}
    finally:
        stop_process(proc)
        server_log.close()


def keep_schema(name: str) -> str:
    import psycopg

    from .common import PG_URL

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", name):
        raise SystemExit("--schema: lower-case letters, digits and _ only")
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"')
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{name}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--counties", type=int)
    parser.add_argument("--townships", type=int)
    parser.add_argument("--people", type=int, default=50)
    parser.add_argument("--lessons-per-person", type=int, default=50)
    parser.add_argument("--ledger-per-person", type=int, default=20)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--province-requests", type=int, default=5)
    parser.add_argument("--heartbeat-seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--plugins", default="quizzes,attendance,progress",
                        help="plugins loaded for the reports (progress is always loaded); the "
                        "quizzes and attendance plugins also get data: 3 quiz attempts per "
                        "learner, one county class of 4 sessions with records for 2")
    parser.add_argument("--no-heartbeat", action="store_true")
    parser.add_argument("--no-reports", action="store_true")
    parser.add_argument("--schema", help="PostgreSQL: keep the data in this schema (generated once, "
                        "reused by later runs, never dropped)")
    args = parser.parse_args(argv)
    args.plugins = sorted({p.strip() for p in args.plugins.split(",") if p.strip()} | {"progress"})
    if args.counties is None:
        args.counties = 60 if args.db == "postgresql" else 1
    if args.townships is None:
        args.townships = 2000 if args.db == "postgresql" else 33
    from kb import create_app, dbmigrate
    from kb.extensions import db

    result = {"machine": machine(), "db": args.db}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kb-progress-bench-")))
        if args.db == "postgresql":
            if not pg_available():
                print(json.dumps({"skipped": "PostgreSQL not reachable"}))
                return 1
            if args.schema:
                url = keep_schema(args.schema)
            else:
                url = stack.enter_context(pg_schema())
        else:
            url = f"sqlite:///{work / 'bench.sqlite3'}"
        (work / "courses").mkdir()
        (work / "quizzes").mkdir()
        config = {"PLUGINS": args.plugins, "SECRET_KEY": "bench", "INSTANCE_DIR": str(work / "instance"),
                  "DATABASE_URL": url, "COURSES_DIR": str(work / "courses"),
                  "QUIZZES_DIR": str(work / "quizzes"), "INDEX_DIR": str(work / "index"),
                  "CATALOG_TTL": 60.0}
        # In-process pages are measured without CSRF (the test client posts the login form);
        # the heartbeat server below runs with CSRF on.
        app = create_app({**config, "WTF_CSRF_ENABLED": False})
        with app.app_context():
            dbmigrate.upgrade(app)
        log(f"generating ({args.db}): {args.counties} counties, {args.townships} townships, "
            f"{args.townships * args.people} learners")
        with app.app_context():
            from sqlalchemy import func, select

            from kb.models import User

            existing = db.session.scalar(select(func.count()).select_from(User))
        if existing:
            result["data"] = {"reused_schema": args.schema, "users": existing}
            with app.app_context(), db.engine.begin() as conn:
                from sqlalchemy import text

                conn.execute(text("ANALYZE"))
        else:
            result["data"] = generate(app, args)
            log(f"generated in {result['data']['generate_s']} s: {result['data']}")
        if not args.no_reports:
            result["loadavg_before_reports"] = os.getloadavg()
            result["reports"] = measure_reports(app, args, result["data"])
            log(f"reports: {result['reports']}")
        with app.app_context():
            db.engine.dispose()
        if not args.no_heartbeat:
            result["loadavg_before_heartbeat"] = os.getloadavg()
            result["heartbeat"] = measure_heartbeats(config, args, work)
            log(f"heartbeat: {result['heartbeat']}")
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
