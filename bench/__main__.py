"""``python -m bench``: the kb performance benchmarks (docs/PERFORMANCE.md).

Parts (``--only``, comma-separated; default all, in this order):

* ``index``  ``kb sync`` of ~2,000 real laws (one lesson each) into an empty database and index;
  then one edited lesson through the sync path again, and the index update alone;
* ``search`` kb search latency against a plain Whoosh + rjieba baseline, interleaved;
* ``cold``   ``kb search --json`` as a fresh process; gunicorn start to the first /search answer;
* ``serve``  lesson page requests/s under gunicorn against a bare route of the same app (wrk).

Everything is generated in ``--out`` (a new temporary folder by default); results go to
``<out>/bench-results.json`` and a summary table is printed. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import common
from .common import log

PARTS = ("index", "search", "cold", "serve")

TARGETS = {
    "incremental_s": 2.0,
    "search_p95_ratio": 3.0,
    "cold_s": 3.0,
    "serve_anon_ratio": 0.60,
    "serve_deputy_ratio": 0.30,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(PARTS),
                   help=f"parts to run, comma-separated (default: {','.join(PARTS)})")
    p.add_argument("--laws", type=int, default=None,
                   help="use only the first N laws (default: all 2,000)")
    p.add_argument("--out", default=None, help="folder for results and generated data "
                   "(default: a new temporary folder)")
    p.add_argument("--db", choices=("postgresql", "sqlite", "auto"), default="auto",
                   help="database for the index/search/cold parts (default: PostgreSQL at "
                   "KB_BENCH_PG_URL or 127.0.0.1:5432 when reachable, else SQLite); "
                   "the serve part always uses SQLite")
    p.add_argument("--search-rounds", type=int, default=3)
    p.add_argument("--serve-rounds", type=int, default=3)
    p.add_argument("--wrk-duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--repeats", type=int, default=5, help="incremental-update repetitions")
    p.add_argument("--cold-runs", type=int, default=10)
    p.add_argument("--profile", action="store_true",
                   help="also cProfile the slowest search query when its target is missed "
                   "(can take a minute), and the big lesson page in-process, anonymous and "
                   "signed in as the demo deputy (always profiled when its target is missed)")
    p.add_argument("--plugins", default="default",
                   help="plugins to load: 'default' (kb's default: every plugin), 'none', or "
                   "a comma-separated allowlist")
    p.add_argument("--keep", action="store_true",
                   help="keep the generated courses, databases and index in <out>/work")
    p.add_argument("--reuse", metavar="DIR", default=None,
                   help="keep the generated courses, SQLite database and index in DIR and reuse "
                   "them on the next run with the same --laws and --plugins when the code that "
                   "builds the index has not changed (search and cold parts only)")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in args.parts if x not in PARTS]
    if bad:
        p.error(f"unknown part(s): {', '.join(bad)} (parts: {', '.join(PARTS)})")
    bounds = {"search_rounds": (1, 20), "serve_rounds": (1, 10), "wrk_duration": (1, 60),
              "repeats": (1, 50), "cold_runs": (2, 50)}
    for name, (lo, hi) in bounds.items():
        if not lo <= getattr(args, name) <= hi:
            p.error(f"--{name.replace('_', '-')} must be from {lo} to {hi}")
    if args.plugins == "default":
        args.plugin_list = None
    elif args.plugins == "none":
        args.plugin_list = []
    else:
        args.plugin_list = [x.strip() for x in args.plugins.split(",") if x.strip()]
    if args.laws is not None and not 1 <= args.laws <= 5000:
        p.error("--laws must be from 1 to 5000")
    if args.reuse:
        if not set(args.parts) <= {"search", "cold"}:
            p.error("--reuse works with --only search,cold (the other parts build their own data)")
        if args.db == "postgresql":
            p.error("--reuse needs the SQLite database (--db sqlite): a PostgreSQL schema is "
                    "dropped after each run")
        args.db = "sqlite"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve() if args.out else Path(tempfile.mkdtemp(prefix="kb-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    reuse = None
    if args.reuse:
        from . import reuse as reuse_mod

        work = Path(args.reuse).resolve()
        reuse = reuse_mod.check(work, args)
        if not reuse["valid"]:
            log(f"--reuse: building fresh data in {work} ({reuse['reason']})")
            if work.exists():
                shutil.rmtree(work)
        else:
            log(f"--reuse: reusing the index built {reuse['built']} in {work}")
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = out / "work"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
    started = time.perf_counter()
    results: dict = {"machine": common.machine(), "args": {
        k: v for k, v in vars(args).items() if k not in ("parts", "plugin_list")}, "parts": args.parts,
        "targets": TARGETS}
    log(f"results and data in {out}")

    from .corpus import build_courses

    t = time.perf_counter()
    lessons = build_courses(work / "courses", args.laws)
    results["corpus"] = {
        "laws": len(lessons),
        "courses": len({x.course for x in lessons}),
        "largest_course_lessons": max(
            sum(1 for y in lessons if y.course == c) for c in {x.course for x in lessons}),
        "characters": sum(x.chars for x in lessons),
        "chapters": sum(x.chapters for x in lessons),
        "laws_without_chapters": sum(1 for x in lessons if x.chapters == 0),
        "generate_s": round(time.perf_counter() - t, 2),
    }
    log(f"corpus: {len(lessons)} laws in {results['corpus']['courses']} courses")

    try:
        needs_index = any(p in args.parts for p in ("index", "search", "cold"))
        with contextlib.ExitStack() as stack:
            if needs_index:
                use_pg = args.db == "postgresql" or (args.db == "auto" and common.pg_available())
                if args.db == "postgresql" and not common.pg_available():
                    raise SystemExit(f"PostgreSQL is not reachable at {common.PG_URL}")
                db_url = (stack.enter_context(common.pg_schema()) if use_pg
                          else f"sqlite:///{work / 'kb.sqlite3'}")
                results["database"] = "postgresql" if use_pg else "sqlite"
                config = common.app_config(work, db_url, work / "courses", work / "index", "main",
                                           args.plugin_list)
                _index_parts(args, config, lessons, work, out, results, reuse)
            if "serve" in args.parts:
                from . import serve

                sconfig = common.app_config(work, f"sqlite:///{work / 'serve.sqlite3'}",
                                            work / "courses", work / "index", "serve",
                                            args.plugin_list)
                results["serve"] = serve.run(sconfig, lessons, out, rounds=args.serve_rounds,
                                             duration=args.wrk_duration)
                ratio = results["serve"]["ratio_to_bare"].get("big-lesson-anon", 1.0)
                big_url = results["serve"]["pages"]["big"]["url"]
                if ratio < TARGETS["serve_anon_ratio"] or args.profile:
                    results["serve"]["profile"] = _soft(serve.profile_lesson, sconfig, big_url, out)
                deputy = results["serve"]["ratio_to_bare"].get("big-lesson-deputy", 1.0)
                if deputy < TARGETS["serve_deputy_ratio"] or args.profile:
                    results["serve"]["profile_deputy"] = _soft(
                        serve.profile_lesson, sconfig, big_url, out, deputy_password="lvzhi2026")
    finally:
        results["elapsed_s"] = round(time.perf_counter() - started, 1)
        with contextlib.suppress(OSError):
            import os

            results["machine"]["loadavg_end"] = os.getloadavg()
        path = out / "bench-results.json"
        path.write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str),
                        encoding="utf-8")
        if not args.keep and not args.reuse:
            shutil.rmtree(work, ignore_errors=True)
    text = summary(results)
    (out / "summary.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\nJSON: {path}")
    return 0


def _soft(fn, *args, **kwargs):
    """Run an optional diagnosis; a failure is recorded, not raised (it uses kb internals)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        log(f"{fn.__name__} failed: {exc!r}")
        return {"error": repr(exc)}


def _index_parts(args, config, lessons, work, out, results, reuse=None) -> None:
    from kb import create_app

    from . import index_bench, search_bench, serve

    app = create_app(config)
    if reuse is not None and reuse["valid"]:
        results["reused_index"] = {k: reuse[k] for k in ("dir", "built", "fingerprint")}
        full = None
    else:
        full = index_bench.full_sync(app, work / "index")
        if reuse is not None:
            from . import reuse as reuse_mod

            results["reused_index"] = None
            reuse_mod.record(work, reuse)
    if "index" in args.parts:
        results["index"] = full
        big = serve.pick_lessons(lessons)["big"]
        results["incremental"] = index_bench.incremental(
            app, big.path, (big.course, big.slug), repeats=args.repeats)
    if "search" in args.parts:
        results["search"] = search_bench.run(work / "index", rounds=args.search_rounds)
        s = results["search"]
        if s["p95_ratio"] > TARGETS["search_p95_ratio"]:
            slowest = sorted(s["per_query"], key=lambda q: -q["kb_median_ms"])[:3]
            results["search"]["diagnosis"] = _soft(
                search_bench.diagnose, work / "index", [q["query"] for q in slowest])
            if args.profile:
                results["search"]["profile"] = _soft(
                    search_bench.profile_query, work / "index", slowest[0]["query"], out)
    if "cold" in args.parts:
        from . import cold

        results["cold"] = {
            "cli": cold.cli_search(config, out, runs=args.cold_runs),
            "gunicorn": cold.gunicorn_first_search(config, out),
        }
    from kb.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# ----------------------------------------------------------------------------- summary


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT MET")


def summary_rows(r: dict) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    if "index" in r:
        x = r["index"]
        rows.append(("full sync (empty DB + index), total", f"{x['total_s']} s", "", "",
                     "", ""))
        rows.append(("  content sync (parse, render, DB)", f"{x['content_sync_s']} s", "", "",
                     "", ""))
        rows.append(("  index build", f"{x['index_build_s']} s", "", "", "", ""))
        rows.append(("  index size / documents", f"{x['index_bytes'] / 1e6:.0f} MB",
                     f"{x['documents']} docs", "", "", ""))
    if "incremental" in r:
        x = r["incremental"]
        t = TARGETS["incremental_s"] * 1000
        rows.append(("one lesson edited: run_sync (median)", f"{x['run_sync_median_ms']:.0f} ms",
                     f"unchanged sync {x['run_sync_unchanged_median_ms']:.0f} ms", "",
                     "< 2 s", _met(x["run_sync_median_ms"] < t)))
        rows.append(("one lesson: index update alone (median)",
                     f"{x['index_update_median_ms']:.0f} ms", "", "", "< 2 s",
                     _met(x["index_update_median_ms"] < t)))
    if "search" in r:
        x = r["search"]
        rows.append((f"search p50 ({x['queries']} queries x {x['rounds']})",
                     f"{x['kb_p50_ms']:.1f} ms", f"{x['base_p50_ms']:.1f} ms",
                     f"{x['p50_ratio']}x", "", ""))
        rows.append(("search p95", f"{x['kb_p95_ms']:.1f} ms", f"{x['base_p95_ms']:.1f} ms",
                     f"{x['p95_ratio']}x", "<= 3x", _met(x["p95_ratio"] <= TARGETS["search_p95_ratio"])))
        for kind, k in x.get("by_kind", {}).items():
            ratio = k["kb_median_ms"] / k["base_median_ms"] if k["base_median_ms"] else 0
            rows.append((f"  median, {kind} ({k['queries']})", f"{k['kb_median_ms']:.1f} ms",
                         f"{k['base_median_ms']:.1f} ms", f"{ratio:.2f}x", "", ""))
        if "expected_top3" in x:
            t = x["expected_top3"]
            rows.append(("search: expected answer in the top 3", f"{t['found']}/{t['queries']}",
                         "", "", "all", _met(t["found"] == t["queries"])))
        if "top10" in x:
            t = x["top10"]
            rows.append(("search top 10 = exhaustive Whoosh search", f"{t['same']}/{t['queries']}",
                         "", "", "all", _met(t["same"] == t["queries"])))
    if "cold" in r:
        c = r["cold"]["cli"]["commands"]
        rows.append(("cold: kb search --json (median)", f"{c['kb search --json']['median_ms']:.0f} ms",
                     f"kb --help {c['kb --help']['median_ms']:.0f} ms", "", "< 3 s",
                     _met(c["kb search --json"]["median_ms"] < TARGETS["cold_s"] * 1000)))
        g = r["cold"]["gunicorn"]
        rows.append(("cold: gunicorn start to first /search", f"{g['median_ms']:.0f} ms", "", "",
                     "< 3 s", _met(g["median_ms"] < TARGETS["cold_s"] * 1000)))
    if "serve" in r:
        x = r["serve"]
        bare = x["rps_median"]["bare-raw"]
        for name, target in (("big-lesson-anon", "serve_anon_ratio"),
                             ("big-lesson-deputy", "serve_deputy_ratio"),
                             ("small-lesson-anon", "serve_anon_ratio"),
                             ("small-lesson-deputy", "serve_deputy_ratio")):
            if name not in x["rps_median"]:
                continue
            page = x["pages"][name.split("-")[0]]
            label = (f"{name.replace('-', ' ')} ({page['course_lessons']}-lesson course) req/s")
            ratio = x["ratio_to_bare"][name]
            cpu = x.get("cpu_ratio_to_bare", {}).get(name)
            rows.append((label, f"{x['rps_median'][name]:.0f}", f"bare {bare:.0f}",
                         f"{ratio * 100:.0f}%" + (f" (CPU {cpu * 100:.0f}%)" if cpu else ""),
                         f">= {TARGETS[target] * 100:.0f}%", _met(ratio >= TARGETS[target])))
    return rows


def summary(r: dict) -> str:
    rows = [("figure", "kb", "baseline", "ratio", "target", "result"), *summary_rows(r)]
    widths = [max(_width(row[i]) for row in rows) for i in range(6)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(_pad(c, widths[j]) for j, c in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    m = r["machine"]
    head = (f"kb benchmarks, {m['date']}, {m['nproc']} CPUs, Python {m['python']}, "
            f"{r.get('corpus', {}).get('laws', '?')} laws, DB {r.get('database', 'sqlite')}, "
            f"{r.get('elapsed_s', '?')} s, load average at start/end "
            f"{m.get('loadavg_start', ['?'])[0]:.1f}/{m.get('loadavg_end', ['?'])[0]:.1f}")
    reused = r.get("reused_index")
    if reused:
        head += (f"\nindex, courses and database reused from {reused['dir']} (built "
                 f"{reused['built']}; see bench/reuse.py)")
    return head + "\n" + "\n".join(lines)


def _width(s: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _pad(s: str, w: int) -> str:
    return s + " " * (w - _width(s))


if __name__ == "__main__":
    sys.exit(main())
