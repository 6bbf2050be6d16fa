"""Full index (``kb sync`` into an empty database and index) and one-lesson incremental update."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from .common import dir_size, log, median, ms


@contextlib.contextmanager
def phase_timers():
    """Time the phases of ``run_sync`` by wrapping the functions it calls (restored after)."""
    from kb import catalog, searching
    from kb.content import sync as content_sync

    times: dict[str, float] = {}
    patched = [
        (content_sync.CourseSyncer, "run", "content_sync"),
        (catalog.CatalogCache, "get", "catalog_load"),
        (searching, "rebuild", "index_rebuild"),
        (searching, "update_lessons", "index_update"),
    ]
    originals = []
    for owner, name, key in patched:
        orig = getattr(owner, name)
        originals.append((owner, name, orig))

        def wrapper(*args, __orig=orig, __key=key, **kwargs):
            t = time.perf_counter()
            try:
                return __orig(*args, **kwargs)
            finally:
                times[__key] = times.get(__key, 0.0) + time.perf_counter() - t

        setattr(owner, name, wrapper)
    try:
        yield times
    finally:
        for owner, name, orig in originals:
            setattr(owner, name, orig)


def timed_sync(app, **kwargs) -> tuple[float, dict, object]:
    from kb.cli import run_sync

    with phase_timers() as phases:
        t = time.perf_counter()
        report = run_sync(app, quiet=True, **kwargs)
        total = time.perf_counter() - t
    return total, dict(phases), report


def full_sync(app, index_dir: Path) -> dict:
    """Sync every lesson into the empty database and build the index; return the figures."""
    from kb import search_index

    log("full sync: kb sync into an empty database and index ...")
    total, phases, report = timed_sync(app)
    errors = [str(p) for p in report.problems if p.severity == "error"]
    status = search_index(app).status()
    gen = Path(status.get("path", ""))
    out = {
        "total_s": round(total, 2),
        "content_sync_s": round(phases.get("content_sync", 0.0), 2),
        "catalog_load_s": round(phases.get("catalog_load", 0.0), 2),
        "index_build_s": round(phases.get("index_rebuild", 0.0), 2),
        "other_s": round(total - sum(phases.values()), 2),
        "lessons_added": report.added.get("lesson", 0),
        "courses_added": report.added.get("course", 0),
        "errors": len(errors),
        "error_examples": errors[:5],
        "warnings": sum(1 for p in report.problems if p.severity != "error"),
        "documents": status.get("documents", 0),
        "index_bytes": dir_size(gen) if gen.is_dir() else dir_size(index_dir),
    }
    log(f"full sync: {out['total_s']} s (content {out['content_sync_s']} s, index "
        f"{out['index_build_s']} s), {out['documents']} documents, "
        f"{out['index_bytes'] / 1e6:.0f} MB index")
    return out


def incremental(app, lesson_path: Path, key: tuple[str, str], repeats: int = 5) -> dict:
    """Edit one lesson file and run the sync path again; then the index update alone."""
    from kb import get_catalog, search_index, searching

    original = lesson_path.read_bytes()
    runs, index_only, unchanged = [], [], []
    checks = []
    try:
        # the fixed cost: a sync with nothing changed
        for _ in range(2):
            total, phases, report = timed_sync(app)
            assert not report.changed_lessons, report.changed_lessons
            unchanged.append(total)
        for i in range(repeats):
            marker = f"benchedit{i}x{time.time_ns() % 10**8}"
            lesson_path.write_bytes(
                original + f"\n\n## 基准测试修改\n\n第{i + 1}次修改：{marker} 代表建议的答复期限。\n".encode()
            )
            total, phases, report = timed_sync(app)
            if report.changed_lessons != {key}:
                raise RuntimeError(f"expected only {key} to change, got {report.changed_lessons}")
            runs.append({"total_s": total, **{k + "_s": v for k, v in phases.items()}})
            with app.app_context():
                hits = search_index(app).search(marker).hits
            checks.append(bool(hits) and hits[0].lesson == key[1])
        # the index update alone: the same lesson's documents, straight into SearchIndex
        with app.app_context():
            lesson = get_catalog(app).lesson(*key)
            docs = searching.lesson_documents(lesson)
            index = search_index(app)
            for _ in range(repeats):
                t = time.perf_counter()
                index.update_lessons([key], docs)
                index_only.append(time.perf_counter() - t)
    finally:
        lesson_path.write_bytes(original)
        timed_sync(app)  # leave database and index as the full sync made them
    totals = [r["total_s"] for r in runs]

    def phase(name):
        return ms(median(r.get(name + "_s", 0.0) for r in runs))

    out = {
        "lesson": "/".join(key),
        "lesson_bytes": len(original),
        "repeats": repeats,
        "run_sync_median_ms": ms(median(totals)),
        "run_sync_max_ms": ms(max(totals)),
        "run_sync_phases_median_ms": {
            "content_sync": phase("content_sync"),
            "catalog_load": phase("catalog_load"),
            "index_update": phase("index_update"),
        },
        "run_sync_unchanged_median_ms": ms(median(unchanged)),
        "index_update_median_ms": ms(median(index_only)),
        "index_update_max_ms": ms(max(index_only)),
        "edit_found_by_search": all(checks),
        "samples_run_sync_ms": [ms(x) for x in totals],
        "samples_index_update_ms": [ms(x) for x in index_only],
    }
    log(f"incremental: run_sync median {out['run_sync_median_ms']} ms, index update alone "
        f"median {out['index_update_median_ms']} ms")
    return out
