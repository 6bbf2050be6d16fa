"""Shared helpers: statistics, timing, machine facts, databases, ports, processes."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_URL = os.environ.get("KB_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def percentile(values, p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), p in 0..100."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def dir_size(path: Path) -> int:
    total = 0
    for p in Path(path).rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def machine() -> dict:
    info = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": "",
        "mem_total_mb": None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_mb"] = int(line.split()[1]) // 1024
                break
    except OSError:
        pass
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    versions = {}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("Whoosh-Reloaded", "rjieba", "Flask", "SQLAlchemy", "gunicorn", "Markdown", "psycopg"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            pass
    info["packages"] = versions
    for tool, args in (("wrk", ["wrk", "-v"]), ("hyperfine", ["hyperfine", "--version"])):
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=10)
            info[tool] = (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            info[tool] = None
    try:
        info["git_commit"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "kb"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["kb_uncommitted_changes"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def pg_available(url: str = PG_URL) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:
        return False


@contextlib.contextmanager
def pg_schema(url: str = PG_URL):
    """A fresh PostgreSQL schema for the run (dropped afterwards); yields a kb database URL."""
    import psycopg

    schema = "kb_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def app_config(work: Path, db_url: str, courses: Path, index: Path, name: str,
               plugins: list[str] | None = None) -> dict:
    """create_app() overrides for one benchmark app (everything inside ``work``); ``plugins``
    None keeps kb's default (every plugin), a list is the allowlist ([] = none)."""
    (work / "quizzes").mkdir(parents=True, exist_ok=True)
    extra = {} if plugins is None else {"PLUGINS": list(plugins)}
    return {
        **extra,
        "SECRET_KEY": "kb-bench-" + name,
        "INSTANCE_DIR": str(work / f"instance-{name}"),
        "DATABASE_URL": db_url,
        "COURSES_DIR": str(courses),
        "QUIZZES_DIR": str(work / "quizzes"),
        "INDEX_DIR": str(index),
    }


def config_env(config: dict) -> dict:
    """The same settings as ``KB_*`` environment variables, for child processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env.update({
        "KB_SECRET_KEY": config["SECRET_KEY"],
        "KB_INSTANCE_DIR": config["INSTANCE_DIR"],
        "KB_DATABASE_URL": config["DATABASE_URL"],
        "KB_COURSES_DIR": config["COURSES_DIR"],
        "KB_QUIZZES_DIR": config["QUIZZES_DIR"],
        "KB_INDEX_DIR": config["INDEX_DIR"],
        "PYTHONSAFEPATH": "1",
        "PYTHONPATH": str(REPO),
    })
    if "PLUGINS" in config:
        env["KB_BENCH_PLUGINS"] = ",".join(config["PLUGINS"]) or "none"
    return env


def kb_command(config: dict) -> list[str]:
    """The ``kb`` command for child processes: the installed script, or ``bench.kb_entry``
    when the benchmark overrides the plugin list."""
    kb = VENV_BIN / "kb"
    if "PLUGINS" in config or not kb.exists():
        return [sys.executable, "-m", "bench.kb_entry"]
    return [str(kb)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a child we started (its own process group: gunicorn and its workers)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 15)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=timeout)


_GUNICORN_HAS_NO_CONTROL_SOCKET: bool | None = None


def gunicorn_cmd(app_module: str, port: int, workers: int = 2) -> list[str]:
    """gunicorn on 127.0.0.1 (sync workers, no access log; no control socket where gunicorn
    has one, so parallel servers do not share ~/.gunicorn/gunicorn.ctl)."""
    global _GUNICORN_HAS_NO_CONTROL_SOCKET
    if _GUNICORN_HAS_NO_CONTROL_SOCKET is None:
        out = subprocess.run([sys.executable, "-m", "gunicorn", "--help"], capture_output=True,
                             text=True, timeout=60)
        _GUNICORN_HAS_NO_CONTROL_SOCKET = "--no-control-socket" in out.stdout
    cmd = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind",
           f"127.0.0.1:{port}"]
    if _GUNICORN_HAS_NO_CONTROL_SOCKET:
        cmd.append("--no-control-socket")
    return cmd + [app_module]


def children_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the direct children of ``pid`` (gunicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # ppid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def children_rss_mb(pid: int) -> list[float]:
    """Resident memory (MB) of each direct child of ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != pid:
                continue
            for line in (stat.parent / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append(round(int(line.split()[1]) / 1024, 1))
        except (OSError, ValueError):
            continue
    return sorted(out)
