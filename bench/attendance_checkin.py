"""A hall checking in: N signed-in people scan the projector's QR code within S seconds.

Run: ``.venv/bin/python -m bench.attendance_checkin [--db sqlite|postgresql|both]
[--people 300] [--seconds 60] [--workers 4] [--plugins attendance,progress]``.

For each database a fresh database gets one county, one township, N deputies (cheap password
hashes), a class with one session that started a minute ago, everyone enrolled. gunicorn
(``kb.wsgi:app``, sync workers, CSRF on) serves it on 127.0.0.1. Before the clock starts every
person logs in with their own cookie jar (so each is a separate phone). A "projector" thread
polls ``qr.json`` as the organiser, like the projector page. Then the N arrivals are spread at
random over S seconds; each does what a phone does: GET the scanned link (``/attendance/c/<id>?t=``)
and POST the one tap. Reported: latency of the tap (the POST that writes the record), of scan+tap,
errors, and the records in the database afterwards (must be exactly N, one per person).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("KB_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "bench-pw"


def log(msg: str) -> None:
    print(f"[attendance bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(values, p: float) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- database ---------------------------------------------------------------------------------

def pg_url_with_schema():
    import psycopg

    schema = "bench_att_" + uuid.uuid4().hex[:10]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}", schema


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def seed(config: dict, people: int) -> int:
    """Create the org, the people, the class and a running session; return the session id."""
    from werkzeug.security import generate_password_hash

    from kb import create_app, dbmigrate
    from kb.extensions import db
    from kb.models import OrgUnit, User, utcnow
    from kb.plugins.attendance.models import Enrolment, TrainingClass, TrainingSession

    app = create_app(config)
    with app.app_context():
        dbmigrate.upgrade(app)
        county = OrgUnit(kind="county", name="基准县", path="/")
        db.session.add(county)
        db.session.flush()
        county.path = f"/{county.id}/"
        town = OrgUnit(kind="township", name="基准镇", parent_id=county.id, path="/")
        db.session.add(town)
        db.session.flush()
        town.path = f"{county.path}{town.id}/"
        cheap = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
        staff = User(username="bench-staff", name="组织者", role="county_staff", org_unit_id=county.id,
                     password_hash=cheap)
        db.session.add(staff)
        users = [User(username=f"p{i:04d}", name=f"代表{i:04d}", role="deputy", org_unit_id=town.id,
                      password_hash=cheap) for i in range(people)]
        db.session.add_all(users)
        klass = TrainingClass(title="基准培训班", org_unit_id=county.id)
        db.session.add(klass)
        db.session.flush()
        start = utcnow() - timedelta(minutes=1)
        session = TrainingSession(class_id=klass.id, starts_at=start, ends_at=start + timedelta(hours=3),
                                  place="报告厅", hours=3)
        db.session.add(session)
        db.session.flush()
        db.session.add_all([Enrolment(class_id=klass.id, user_id=u.id) for u in users])
        db.session.commit()
        sid = session.id
        db.engine.dispose()
    return sid


def count_records(config: dict, session_id: int) -> dict:
    from sqlalchemy import func, select

    from kb import create_app
    from kb.extensions import db
    from kb.plugins.attendance.models import Record

    app = create_app(config)
    with app.app_context():
        total = db.session.scalar(select(func.count()).select_from(Record).where(Record.session_id == session_id))
        distinct = db.session.scalar(select(func.count(func.distinct(Record.user_id)))
                                     .where(Record.session_id == session_id))
        by_status = dict(db.session.execute(select(Record.status, func.count())
                                            .where(Record.session_id == session_id)
                                            .group_by(Record.status)).all())
        db.engine.dispose()
    return {"records": total, "distinct_people": distinct, "by_status": by_status}


# -- HTTP clients -------------------------------------------------------------------------------

class Phone:
    """One person's browser: a cookie jar (session and device cookie) and no redirects."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  self._NoRedirect())

    def request(self, path: str, data: dict | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body)
        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def login(self, username: str) -> None:
        status, page = self.request("/login")
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        status, _ = self.request("/login", {"csrf_token": token, "login": username, "password": PASSWORD})
        if status != 302:
            raise RuntimeError(f"login {username}: HTTP {status}")


def wait_up(base: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited")
        try:
            with urllib.request.urlopen(base + "/login", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("gunicorn did not start")


# -- one run ---------------------------------------------------------------------------------------

def run(kind: str, people: int, seconds: float, workers: int, plugins: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"kb-att-bench-{kind}-"))
    schema = None
    if kind == "postgresql":
        db_url, schema = pg_url_with_schema()
    else:
        db_url = f"sqlite:///{work / 'kb.sqlite3'}"
    secret = secrets.token_hex(16)
    config = {"SECRET_KEY": secret, "DATABASE_URL": db_url, "INSTANCE_DIR": str(work / "instance"),
              "INDEX_DIR": str(work / "index"), "PLUGINS": plugins.split(",")}
    proc = None
    try:
        t = time.perf_counter()
        session_id = seed(config, people)
        log(f"{kind}: seeded {people} people in {time.perf_counter() - t:.1f} s")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
        env.update({"KB_SECRET_KEY": secret, "KB_DATABASE_URL": db_url, "KB_INSTANCE_DIR": config["INSTANCE_DIR"],
                    "KB_INDEX_DIR": config["INDEX_DIR"], "KB_PLUGINS": plugins, "PYTHONPATH": str(REPO)})
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind",
                                 f"127.0.0.1:{port}", "kb.wsgi:app"], env=env, cwd=str(work),
                                stdout=subprocess.DEVNULL, stderr=open(work / "gunicorn.log", "w"),
                                start_new_session=True)
        wait_up(base, proc)
        log(f"{kind}: gunicorn up with {workers} workers")

        t = time.perf_counter()
        phones = [Phone(base) for _ in range(people)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda ip: ip[1].login(f"p{ip[0]:04d}"), enumerate(phones)))
        log(f"{kind}: {people} people logged in in {time.perf_counter() - t:.1f} s")

        projector = Phone(base)
        projector.login("bench-staff")
        current = {"url": None}
        stop = threading.Event()

        def project():
            while not stop.is_set():
                status, body = projector.request(f"/attendance/sessions/{session_id}/qr.json")
                if status == 200:
                    data = json.loads(body)
                    current["url"] = data["url"]
                    stop.wait(max(0.5, min(15, data["refresh_in"])) + 0.2)
                else:
                    stop.wait(1)

        threading.Thread(target=project, daemon=True).start()
        while current["url"] is None:
            time.sleep(0.05)

        load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews latency
        rng = random.Random(42)
        offsets = sorted(rng.uniform(0, seconds) for _ in range(people))
        results = []
        lock = threading.Lock()
        t0 = time.monotonic() + 0.5

        def arrive(i: int):
            delay = t0 + offsets[i] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            phone = phones[i]
            link = current["url"][len(base):]
            a = time.perf_counter()
            status1, page = phone.request(link)
            b = time.perf_counter()
            ok = False
            status2 = None
            if status1 == 200:
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
                p = re.search(r'name="p" value="([^"]+)"', page)
                if csrf and p:
                    status2, result = phone.request(f"/attendance/c/{session_id}",
                                                    {"csrf_token": csrf.group(1), "p": p.group(1)})
                    ok = status2 == 200 and "签到成功" in result
            c = time.perf_counter()
            with lock:
                results.append({"ok": ok, "scan": b - a, "tap": c - b, "total": c - a,
                                "status": (status1, status2)})

        with ThreadPoolExecutor(max(32, people // 4)) as pool:
            list(pool.map(arrive, range(people)))
        wall = time.monotonic() - t0
        stop.set()
        db_counts = count_records(config, session_id)
        taps = [r["tap"] for r in results if r["status"][1] is not None]
        totals = [r["total"] for r in results]
        errors = [r["status"] for r in results if not r["ok"]]
        summary = {
            "database": kind, "people": people, "window_s": seconds, "wall_s": round(wall, 1),
            "gunicorn_workers": workers, "plugins": plugins, "nproc": os.cpu_count(),
            "load_avg_1m_before": load_before, "load_avg_1m_after": round(os.getloadavg()[0], 2),
            "ok": sum(r["ok"] for r in results), "errors": len(errors), "error_statuses": errors[:10],
            "tap_ms": {"p50": round(percentile(taps, 50) * 1000, 1), "p95": round(percentile(taps, 95) * 1000, 1),
                       "max": round(max(taps) * 1000, 1) if taps else None},
            "scan_plus_tap_ms": {"p50": round(percentile(totals, 50) * 1000, 1),
                                 "p95": round(percentile(totals, 95) * 1000, 1),
                                 "max": round(max(totals) * 1000, 1) if totals else None},
            **db_counts,
        }
        summary["no_lost_or_duplicate"] = (db_counts["records"] == people == db_counts["distinct_people"])
        return summary
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if schema:
            drop_schema(schema)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--plugins", default="attendance,progress",
                        help="KB_PLUGINS for the server (progress turns check-ins into 学时)")
    args = parser.parse_args(argv)
    kinds = ("postgresql", "sqlite") if args.db == "both" else (args.db,)
    out = []
    for kind in kinds:
        summary = run(kind, args.people, args.seconds, args.workers, args.plugins)
        log(f"{kind}: {summary['ok']}/{args.people} ok, tap p95 {summary['tap_ms']['p95']} ms, "
            f"records {summary['records']}")
        out.append(summary)
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0 if all(s["no_lost_or_duplicate"] and not s["errors"] for s in out) else 1


if __name__ == "__main__":
    sys.exit(main())
