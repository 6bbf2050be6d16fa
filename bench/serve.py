"""Lesson page throughput under gunicorn (2 sync workers) against a bare route, with wrk.

The app is ``bench.wsgi_app:app`` on SQLite (courses synced into a fresh database, ``kb demo``
run into it). After start, the lesson pages are fetched once and their bytes and content type
stored for ``/_bench/raw/<name>``, the bare route that answers those bytes from memory through
the same app. Routes are measured in alternating rounds (``wrk -t2 -c20 -d10s`` each, the
starting route rotating per round); figures are medians over rounds.
"""

from __future__ import annotations

import http.cookiejar
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from .common import (
    REPO,
    children_cpu_seconds,
    children_rss_mb,
    config_env,
    free_port,
    gunicorn_cmd,
    kb_command,
    log,
    median,
    stop_process,
)

DEPUTY = "t1-d01"
# Every request of the benchmark (login, checks, wrk) carries this User-Agent, as one browser
# would. Flask-Login's session protection fingerprints the address and User-Agent at login: a
# client that logged in with one User-Agent and then sends another (wrk sends none) has
# "_fresh" cleared and the session cookie re-signed and set on every response, since wrk
# never takes the new cookie. A reader's browser pays that at most once.
USER_AGENT = "kb-bench/1 (wrk)"


QUIZ = """\
title: 本课程测验（基准）
course: {course}
pass_score: 60
questions:
  - id: q1
    type: truefalse
    stem: 这门课程收录了《{law}》。
    answer: 对
    explanation: 基准测试生成的课程，每部法律一课。
    lesson: {course}/{slug}
"""


def write_quizzes(config: dict, picked: dict) -> None:
    """One quiz for each measured lesson's course, so the deputy's page shows the quizzes
    panel as well as the progress panel ("all plugin panels shown")."""
    folder = Path(config["QUIZZES_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for name, lesson in picked.items():
        (folder / f"bench-{name}.yaml").write_text(
            QUIZ.format(course=lesson.course, slug=lesson.slug, law=lesson.title.replace('"', "")), encoding="utf-8")


def sync_sqlite(config: dict) -> dict:
    """Load the courses and quizzes into a fresh SQLite database (no search index: pages
    don't need it)."""
    from kb import create_app
    from kb.cli import ensure_database
    from kb.content.sync import CourseSyncer
    from kb.records import SyncReport, SyncSettings

    app = create_app(config)
    t = time.perf_counter()
    with app.app_context():
        ensure_database(app)
        report = SyncReport()
        CourseSyncer(Path(config["COURSES_DIR"]), report).run()
        app.extensions["kb.pm"].hook.kb_content_sync(app=app, report=report, settings=SyncSettings(
            courses_dir=Path(config["COURSES_DIR"]), quizzes_dir=Path(config["QUIZZES_DIR"])))
        if report.errors:
            raise RuntimeError(f"sync errors: {report.errors[:3]}")
        from kb.extensions import db

        db.engine.dispose()
    took = time.perf_counter() - t
    log(f"serve: courses synced into SQLite in {took:.1f} s")
    return {"content_sync_sqlite_s": round(took, 2), "lessons": report.added.get("lesson", 0)}


def run_demo(config: dict) -> None:
    out = subprocess.run([*kb_command(config), "demo"], env=config_env(config), capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"kb demo failed: {out.stderr[-2000:]}")


def pick_lessons(lessons) -> dict[str, object]:
    """The median-sized lesson of the largest course, and the lesson closest to its size in
    the smallest other course with at least 5 lessons (if any)."""
    by_course: dict[str, list] = {}
    for lesson in lessons:
        by_course.setdefault(lesson.course, []).append(lesson)
    ranked = sorted(by_course, key=lambda c: (-len(by_course[c]), c))
    big_course = by_course[ranked[0]]
    big = sorted(big_course, key=lambda x: (x.chars, x.slug))[len(big_course) // 2]
    picked = {"big": big}
    small_courses = [c for c in ranked[1:] if len(by_course[c]) >= 5]
    if small_courses:
        small_course = by_course[small_courses[-1]]
        picked["small"] = min(small_course, key=lambda x: (abs(x.chars - big.chars), x.slug))
    return picked


def _opener():
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", USER_AGENT)]
    return jar, opener


def login(base: str, password: str) -> str:
    """Log in as the demo deputy through the form (CSRF token included); return the cookie."""
    jar, opener = _opener()
    html = opener.open(base + "/login", timeout=30).read().decode("utf-8")
    m = re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'<input[^>]*value="([^"]+)"[^>]*name="csrf_token"', html)
    if not m:
        raise RuntimeError("no csrf_token on /login")
    data = urllib.parse.urlencode({"csrf_token": m.group(1), "login": DEPUTY,
                                   "password": password}).encode()
    opener.open(base + "/login", data, timeout=30).read()
    cookies = {c.name: c.value for c in jar}
    if "session" not in cookies:
        raise RuntimeError("login gave no session cookie")
    return f"session={cookies['session']}"


def fetch(url: str, cookie: str | None = None, with_headers: bool = False):
    """(status, body, content type), and the response headers when ``with_headers``."""
    headers = {"User-Agent": USER_AGENT}
    if cookie:
        headers["Cookie"] = cookie
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        out = (r.status, r.read(), r.headers.get("Content-Type", ""))
        return (*out, r.headers) if with_headers else out


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_LAT = re.compile(r"Latency\s+([\d.]+)(us|ms|s)\s")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS = re.compile(r"Socket errors:(.*)")


def wrk(url: str, duration: int, cookie: str | None = None, threads: int = 2,
        connections: int = 20) -> dict:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-H", f"User-Agent: {USER_AGENT}"]
    if cookie:
        args += ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=duration + 60)
    text = out.stdout
    m = _RPS.search(text)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    lat = _LAT.search(text)
    lat_ms = None
    if lat:
        lat_ms = float(lat.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[lat.group(2)]
    non2xx = _NON2XX.search(text)
    errors = _ERRORS.search(text)
    return {"rps": float(m.group(1)), "latency_avg_ms": lat_ms,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1).strip() if errors else ""}


def run(config: dict, lessons, out_dir: Path, rounds: int = 3, duration: int = 10,
        password: str = "lvzhi2026") -> dict:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed")
    picked = pick_lessons(lessons)
    write_quizzes(config, picked)
    figures = sync_sqlite(config)
    run_demo(config)
    raw_dir = out_dir / "raw-pages"
    raw_dir.mkdir(parents=True, exist_ok=True)
    env = config_env(config)
    env["KB_BENCH_RAW_DIR"] = str(raw_dir)
    env["KB_DEMO_PASSWORD"] = password
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logf = open(out_dir / "gunicorn-serve.log", "ab")
    proc = subprocess.Popen(
        gunicorn_cmd("bench.wsgi_app:app", port),
        env=env, cwd=str(REPO), stdout=logf, stderr=logf, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if fetch(base + "/healthz")[0] == 200:
                    break
            except Exception:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {out_dir}/gunicorn-serve.log")
            time.sleep(0.1)
        cookie = login(base, password)
        routes: list[tuple[str, str, str | None]] = []
        pages = {}
        for name, lesson in picked.items():
            url = f"{base}/courses/{lesson.course}/{lesson.slug}"
            status, body, ctype = fetch(url)
            if status != 200:
                raise RuntimeError(f"{url}: {status}")
            st2, body_user, _, headers = fetch(url, cookie, with_headers=True)
            if st2 != 200 or b'action="/logout"' not in body_user:
                raise RuntimeError(f"{url}: not logged in with the deputy's cookie")
            if headers.get("Set-Cookie"):
                raise RuntimeError(f"{url}: the deputy's page view sets a cookie "
                                   f"({headers['Set-Cookie'][:60]}...): wrk would measure the "
                                   "session being re-signed on every request")
            if (b'/progress/' not in body_user or f'/quizzes/bench-{name}'.encode() not in body_user
                    or b'/quizzes/' in body):
                raise RuntimeError(f"{url}: the deputy's page lacks the progress or quizzes "
                                   "panel, or the anonymous page shows one")
            pages[name] = {"url": url.replace(base, ""), "course": lesson.course,
                           "law": lesson.title, "bytes_anonymous": len(body),
                           "bytes_deputy": len(body_user),
                           "course_lessons": sum(1 for x in lessons if x.course == lesson.course)}
            routes.append((f"{name}-lesson-anon", url, None))
            routes.append((f"{name}-lesson-deputy", url, cookie))
            if name == "big":
                (raw_dir / "big.body").write_bytes(body)
                (raw_dir / "big.type").write_text(ctype, encoding="utf-8")
                routes.insert(1, ("bare-raw", f"{base}/_bench/raw/big", None))
        st, raw_body, raw_type = fetch(f"{base}/_bench/raw/big")
        if st != 200 or raw_body != (raw_dir / "big.body").read_bytes():
            raise RuntimeError("the bare route does not return the captured bytes")
        # warm every route on both workers
        for _, url, ck in routes:
            wrk(url, 2, ck)
        samples: dict[str, list[dict]] = {name: [] for name, _, _ in routes}
        for r in range(rounds):
            k = r % len(routes)
            for name, url, ck in routes[k:] + routes[:k]:
                cpu0 = children_cpu_seconds(proc.pid)
                res = wrk(url, duration, ck)
                cpu = children_cpu_seconds(proc.pid) - cpu0
                requests = res["rps"] * duration
                res["worker_cpu_ms_per_request"] = round(cpu / requests * 1000, 3) if requests else None
                samples[name].append(res)
            log(f"serve: round {r + 1}/{rounds}: " + ", ".join(
                f"{n} {samples[n][-1]['rps']:.0f}" for n, _, _ in routes))
        worker_rss = children_rss_mb(proc.pid)
    finally:
        stop_process(proc)
        logf.close()
    med = {name: median(s["rps"] for s in v) for name, v in samples.items()}
    bare = med["bare-raw"]
    ratios = {name: round(v / bare, 3) for name, v in med.items() if name != "bare-raw"}
    per_round_ratio = {
        name: [round(s["rps"] / b["rps"], 3) for s, b in zip(v, samples["bare-raw"], strict=True)]
        for name, v in samples.items() if name != "bare-raw"
    }
    out = {
        **figures,
        "server": "gunicorn 2 sync workers (bench.wsgi_app:app), no access log",
        "note": "worker CPU ms per request = CPU time of the 2 workers during a wrk run / "
                "requests; its ratio (bare / page) is less sensitive to other load on the machine",
        "wrk": f"-t2 -c20 -d{duration}s, {rounds} rounds",
        "pages": pages,
        "rps_median": {k: round(v, 1) for k, v in med.items()},
        "ratio_to_bare": ratios,
        "ratio_per_round": per_round_ratio,
        "non2xx": {name: sum(s["non2xx"] for s in v) for name, v in samples.items()},
        "worker_cpu_ms_per_request_median": {
            name: round(median(s["worker_cpu_ms_per_request"] for s in v), 3)
            for name, v in samples.items()},
        "cpu_ratio_to_bare": {
            name: round(median(s["worker_cpu_ms_per_request"] for s in samples["bare-raw"])
                        / median(s["worker_cpu_ms_per_request"] for s in v), 3)
            for name, v in samples.items() if name != "bare-raw"},
        "latency_avg_ms_median": {name: round(median(s["latency_avg_ms"] for s in v), 2)
                                  for name, v in samples.items()},
        "samples": samples,
        "bare_content_type": raw_type,
        "worker_rss_mb_after": worker_rss,
    }
    log("serve: " + ", ".join(f"{k} {v:.0f} req/s" for k, v in med.items()))
    return out


def profile_lesson(config: dict, url: str, out_dir: Path, requests: int = 300,
                   deputy_password: str | None = None) -> dict:
    """cProfile the lesson page in-process (Flask test client, anonymous, or signed in as the
    demo deputy when ``deputy_password`` is given): the kb functions with the most cumulative
    time per request."""
    import cProfile
    import pstats

    from kb import create_app

    app = create_app(config)
    client = app.test_client()
    if deputy_password is not None:
        html = client.get("/login").get_data(as_text=True)
        m = re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', html)
        data = {"login": DEPUTY, "password": deputy_password}
        if m:
            data["csrf_token"] = m.group(1)
        if client.post("/login", data=data).status_code != 302:
            raise RuntimeError("the deputy cannot log in in-process")
    first = client.get(url)
    assert first.status_code == 200
    if deputy_password is not None and b'action="/logout"' not in first.data:
        raise RuntimeError("not signed in as the deputy")
    for _ in range(20):
        client.get(url)
    t = time.perf_counter()
    for _ in range(requests):
        client.get(url)
    plain = (time.perf_counter() - t) / requests
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(requests):
        client.get(url)
    prof.disable()
    path = out_dir / ("profile-lesson-deputy.prof" if deputy_password is not None
                      else "profile-lesson.prof")
    prof.dump_stats(str(path))
    stats = pstats.Stats(prof)
    total = sum(v[3] for k, v in stats.stats.items() if k[2] == "get" and "werkzeug" in k[0])
    rows = []
    for (file, line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():
        if "/kb/" in file or "pluggy" in file or func in ("render_template",):
            rows.append((ct, f"{Path(file).name}:{line}({func})", nc))
    rows.sort(reverse=True)
    return {
        "url": url, "requests": requests, "signed_in": deputy_password is not None,
        "test_client_ms_per_request": round(plain * 1000, 3),
        "top_kb_cumulative": [
            {"function": name, "calls_per_request": round(nc / requests, 1),
             "share_of_request": round(ct / total, 3) if total else None}
            for ct, name, nc in rows[:10]
        ],
        "file": str(path),
    }
