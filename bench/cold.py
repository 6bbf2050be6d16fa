"""Cold start: a fresh process to its first answer.

* ``kb search QUERY --json`` as a new process, timed with hyperfine (``-N``: no shell), next to
  two floors measured in the same hyperfine run: the bare interpreter (``python -c pass``) and
  ``kb --help`` (imports and ``create_app`` without a search).
* a fresh gunicorn (``bench.wsgi_app:app``: ``kb.wsgi`` plus the bench plugin and plugin
  selection; 2 workers) from ``exec`` to the first 200 answer of
  ``GET /search?q=...``, polled every 20 ms; repeated, median.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .common import (
    REPO,
    config_env,
    free_port,
    gunicorn_cmd,
    kb_command,
    log,
    median,
    ms,
    stop_process,
)

QUERY = "代表建议多久答复"


def cli_search(config: dict, out_dir: Path, runs: int = 10) -> dict:
    env = config_env(config)
    kb = kb_command(config)
    check = subprocess.run([*kb, "search", QUERY, "--json"], env=env, capture_output=True,
                           text=True, timeout=120, cwd=str(out_dir))
    if check.returncode != 0:
        raise RuntimeError(f"kb search failed: {check.stderr[-2000:]}")
    hits = len(json.loads(check.stdout))
    commands = {
        "python -c pass": [sys.executable, "-P", "-c", "pass"],
        "kb --help": [*kb, "--help"],
        "kb search --json": [*kb, "search", QUERY, "--json"],
    }
    results: dict[str, dict] = {}
    if shutil.which("hyperfine"):
        export = out_dir / "hyperfine-cold.json"
        args = ["hyperfine", "-N", "--warmup", "2", "--runs", str(runs), "--style", "none",
                "--export-json", str(export)]
        for name, cmd in commands.items():
            args += ["-n", name, " ".join(cmd)]
        subprocess.run(args, env=env, check=True, capture_output=True, timeout=900,
                       cwd=str(out_dir))
        data = json.loads(export.read_text(encoding="utf-8"))
        for r in data["results"]:
            results[r["command"]] = {
                "median_ms": ms(r["median"]), "mean_ms": ms(r["mean"]),
                "min_ms": ms(r["min"]), "max_ms": ms(r["max"]), "runs": len(r["times"]),
            }
        tool = "hyperfine " + subprocess.run(["hyperfine", "--version"], capture_output=True,
                                             text=True).stdout.strip().split()[-1]
    else:  # repeated subprocess
        tool = "subprocess"
        for name, cmd in commands.items():
            times = []
            for i in range(runs + 2):
                t = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
                if i >= 2:
                    times.append(time.perf_counter() - t)
            results[name] = {"median_ms": ms(median(times)), "min_ms": ms(min(times)),
                             "max_ms": ms(max(times)), "runs": len(times)}
    out = {"tool": tool, "query": QUERY, "hits": hits, "commands": results,
           "kb_search_median_ms": results["kb search --json"]["median_ms"]}
    log(f"cold: kb search --json median {out['kb_search_median_ms']} ms ({tool})")
    return out


def _get(url: str, timeout: float = 30.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError, OSError):
        return 0


def gunicorn_first_search(config: dict, out_dir: Path, repeats: int = 5,
                          app_module: str = "bench.wsgi_app:app") -> dict:
    env = config_env(config)
    times, statuses = [], []
    q = urllib.parse.quote(QUERY)
    for _ in range(repeats):
        port = free_port()
        url = f"http://127.0.0.1:{port}/search?q={q}"
        logf = open(out_dir / "gunicorn-cold.log", "ab")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            gunicorn_cmd(app_module, port),
            env=env, cwd=str(REPO), stdout=logf, stderr=logf, start_new_session=True)
        status = 0
        try:
            deadline = t0 + 60
            while time.perf_counter() < deadline and proc.poll() is None:
                status = _get(url)
                if status:
                    break
                time.sleep(0.02)
            elapsed = time.perf_counter() - t0
        finally:
            stop_process(proc)
            logf.close()
        statuses.append(status)
        if status != 200:
            raise RuntimeError(f"gunicorn cold start: status {status}, see {out_dir}/gunicorn-cold.log")
        times.append(elapsed)
    out = {"app": app_module, "workers": 2, "repeats": repeats,
           "median_ms": ms(median(times)), "min_ms": ms(min(times)), "max_ms": ms(max(times)),
           "samples_ms": [ms(t) for t in times]}
    log(f"cold: gunicorn to first /search median {out['median_ms']} ms")
    return out
