"""Search latency: ``SearchIndex.search`` against a plain Whoosh + rjieba baseline, interleaved.

Both run in this process on the same index generation, each with one long-lived searcher:

* **kb**: ``SearchIndex.search(query)`` (page 1, 10 per page, no filter): query parsing, the
  Whoosh search, stored fields and snippets of the 10 hits. kb keeps the last 256 results in
  memory; the cache is emptied before every timed call so each call does the full work.
* **baseline**: rjieba ``cut`` of the query, each word (with a letter or digit) a ``Term`` on the
  ``body_w`` field (the same rjieba words kb indexes), OR'ed, ``searcher.search(q, limit=10)``,
  then the stored fields of the 10 hits.

Rounds go over the queries in a shuffled order (fixed seed); within each query the two systems
alternate which runs first.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

from .common import log, median, ms, percentile
from .queries import EXPECTED_TOP3, QUERIES

_WORDISH = re.compile(r"[^\W_]")


def _clear_cache(kb_index) -> None:
    cache = getattr(kb_index, "_cache", None)
    if cache is not None:
        cache.clear()


class Baseline:
    def __init__(self, index_dir: Path):
        import rjieba
        from whoosh import index as windex

        from kb.search import analysis

        analysis.warm_up()  # same rjieba dictionary as kb (its user words are process-wide)
        gen = (Path(index_dir) / "CURRENT").read_text(encoding="utf-8").strip()
        self.ix = windex.open_dir(str(Path(index_dir) / gen))
        self.searcher = self.ix.searcher()
        self.cut = rjieba.cut

    def words(self, text: str) -> list[str]:
        return list(dict.fromkeys(w.lower() for w in self.cut(text) if _WORDISH.search(w)))

    def search(self, text: str):
        from whoosh import query as Q

        words = self.words(text)
        if not words:
            return 0, []
        q = Q.Or([Q.Term("body_w", w) for w in words])
        results = self.searcher.search(q, limit=10)
        hits = [(hit.get("url", ""), hit.get("title", "")) for hit in results]
        return results.estimated_length(), hits

    def close(self):
        self.searcher.close()
        self.ix.close()


def run(index_dir: Path, rounds: int = 3, seed: int = 2026) -> dict:
    from kb.search import SearchIndex, analysis

    analysis.warm_up()
    kb_index = SearchIndex(index_dir)
    base = Baseline(index_dir)
    # open both searchers and touch the main posting lists once (not timed)
    kb_index.search("人民代表大会")
    base.search("人民代表大会")

    samples_kb: dict[str, list[float]] = {q: [] for _, q in QUERIES}
    samples_base: dict[str, list[float]] = {q: [] for _, q in QUERIES}
    info: dict[str, dict] = {}
    rng = random.Random(seed)
    order = list(QUERIES)
    started = time.perf_counter()
    for r in range(rounds):
        rng.shuffle(order)
        for i, (_kind, q) in enumerate(order):
            kb_first = (i + r) % 2 == 0
            for which in (("kb", "base") if kb_first else ("base", "kb")):
                if which == "kb":
                    _clear_cache(kb_index)  # measure the search, not kb's result cache
                    t = time.perf_counter()
                    res = kb_index.search(q)
                    samples_kb[q].append(time.perf_counter() - t)
                    if r == 0:
                        info.setdefault(q, {})["kb"] = {
                            "total": res.total,
                            "top": [f"{h.title} › {h.heading}".strip(" ›") for h in res.hits[:3]],
                        }
                else:
                    t = time.perf_counter()
                    n, hits = base.search(q)
                    samples_base[q].append(time.perf_counter() - t)
                    if r == 0:
                        info.setdefault(q, {})["base"] = {
                            "estimated": n, "words": base.words(q),
                            "top": [title for _, title in hits[:3]],
                        }
        log(f"search: round {r + 1}/{rounds} done ({time.perf_counter() - started:.0f} s)")
    base.close()
    kb_index.close()

    all_kb = [x for v in samples_kb.values() for x in v]
    all_base = [x for v in samples_base.values() for x in v]
    per_query = []
    for kind, q in QUERIES:
        per_query.append({
            "kind": kind, "query": q,
            "kb_median_ms": ms(median(samples_kb[q])),
            "base_median_ms": ms(median(samples_base[q])),
            "kb_total": info[q]["kb"]["total"],
            "kb_top": info[q]["kb"]["top"],
            "base_estimated": info[q]["base"]["estimated"],
            "base_words": info[q]["base"]["words"],
            "base_top": info[q]["base"]["top"],
        })
    by_kind = {}
    for kind in dict.fromkeys(k for k, _ in QUERIES):
        rows = [p for p in per_query if p["kind"] == kind]
        by_kind[kind] = {
            "queries": len(rows),
            "kb_median_ms": round(median(p["kb_median_ms"] for p in rows), 2),
            "base_median_ms": round(median(p["base_median_ms"] for p in rows), 2),
        }
    kb_p95, base_p95 = percentile(all_kb, 95), percentile(all_base, 95)
    out = {
        "queries": len(QUERIES),
        "rounds": rounds,
        "samples_each": len(all_kb),
        "kb_p50_ms": ms(percentile(all_kb, 50)),
        "kb_p95_ms": ms(kb_p95),
        "kb_max_ms": ms(max(all_kb)),
        "base_p50_ms": ms(percentile(all_base, 50)),
        "base_p95_ms": ms(base_p95),
        "base_max_ms": ms(max(all_base)),
        "p50_ratio": round(percentile(all_kb, 50) / percentile(all_base, 50), 2),
        "p95_ratio": round(kb_p95 / base_p95, 2),
        "kb_queries_over_1s": sum(1 for p in per_query if p["kb_median_ms"] > 1000),
        "by_kind": by_kind,
        "per_query": per_query,
    }
    out["top10"] = check_top10(index_dir, [q for _, q in QUERIES])
    missed = {q: info[q]["kb"]["top"] for q, want in EXPECTED_TOP3.items()
              if not any(want in t for t in info[q]["kb"]["top"])}
    out["expected_top3"] = {"queries": len(EXPECTED_TOP3),
                            "found": len(EXPECTED_TOP3) - len(missed), "missed": missed}
    log(f"search: kb p50 {out['kb_p50_ms']} ms p95 {out['kb_p95_ms']} ms; baseline p50 "
        f"{out['base_p50_ms']} ms p95 {out['base_p95_ms']} ms; p95 ratio {out['p95_ratio']}; "
        f"top 10 as an exhaustive search for {out['top10']['same']} of {out['top10']['queries']}")
    return out


def check_top10(index_dir: Path, queries: list[str]) -> dict:
    """Whether ``SearchIndex.search`` (page 1, 10 per page) returns the same 10 documents in
    the same order, and the same total, as an exhaustive Whoosh search of kb's own query
    (``searcher.search(build_query(...), limit=None)``: every match scored, no pruning).
    Not timed."""
    from kb.search import SearchIndex
    from kb.search.index import build_query, parse_query

    kb_index = SearchIndex(index_dir)
    differ = {}
    for q in queries:
        _clear_cache(kb_index)
        res = kb_index.search(q)
        with kb_index._lock:
            searcher = kb_index._get_searcher()
            wq = build_query(parse_query(q))
            full = searcher.search(wq, limit=None) if wq is not None else []
            expected = [hit.get("url", "") for hit in full[:10]]
            total = len(full)
        got = [h.url for h in res.hits]
        if got != expected or res.total != total:
            differ[q] = {"kb": got, "exhaustive": expected, "kb_total": res.total,
                         "exhaustive_total": total}
    kb_index.close()
    return {"queries": len(queries), "same": len(queries) - len(differ), "differ": differ}


def diagnose(index_dir: Path, slow: list[str]) -> dict:
    """Where the slow queries spend their time: for each, its units and phrases, the
    documents it matches, how many distinct terms and postings it reads, and the time of
    ``SearchIndex.search`` against an exhaustive Whoosh search of the same query (the ranking
    kb computes term-at-a-time). Not part of the timed figures; fails soft."""
    try:
        from kb.search import SearchIndex, analysis, evaluate
        from kb.search.index import build_query, parse_query
    except ImportError as exc:  # pragma: no cover
        return {"error": repr(exc)}
    analysis.warm_up()
    kb_index = SearchIndex(index_dir)
    kb_index.search("人民代表大会")
    out: dict = {}
    read: list = []
    original = evaluate.TermPostings.__init__

    def counting(self, *args, **kwargs):
        original(self, *args, **kwargs)
        read.append(self)

    evaluate.TermPostings.__init__ = counting
    try:
        for q in slow:
            read.clear()
            _clear_cache(kb_index)
            t = time.perf_counter()
            res = kb_index.search(q)
            kb_s = time.perf_counter() - t
            terms = list(read)
            with kb_index._lock:
                searcher = kb_index._get_searcher()
                pq = parse_query(q)
                t = time.perf_counter()
                full = searcher.search(build_query(pq), limit=None)
                whoosh_s = time.perf_counter() - t
            out[q] = {
                "units": [u for u, _ in pq.units],
                "phrases": pq.phrases,
                "documents": searcher.doc_count(),
                "matched": res.total,
                "terms_read": len(terms),
                "postings_loaded": sum(len(tp.ids) for tp in terms if tp.ids is not None),
                "kb_search_ms": ms(kb_s),
                "whoosh_exhaustive_ms": ms(whoosh_s),
                "whoosh_matched": len(full),
            }
    finally:
        evaluate.TermPostings.__init__ = original
        kb_index.close()
    return out


def profile_query(index_dir: Path, query: str, out_dir: Path) -> dict:
    """cProfile one ``SearchIndex.search`` call (cache emptied); the top functions by own time."""
    import cProfile
    import io
    import pstats

    from kb.search import SearchIndex, analysis

    analysis.warm_up()
    kb_index = SearchIndex(index_dir)
    kb_index.search("人民代表大会")
    prof = cProfile.Profile()
    _clear_cache(kb_index)
    t = time.perf_counter()
    prof.enable()
    kb_index.search(query)
    prof.disable()
    took = time.perf_counter() - t
    kb_index.close()
    path = out_dir / "profile-search-slowest.prof"
    prof.dump_stats(str(path))
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(8)
    lines = [x for x in s.getvalue().splitlines() if x.strip()]
    return {"query": query, "profiled_ms": ms(took), "file": str(path), "top_tottime": lines[-9:]}
