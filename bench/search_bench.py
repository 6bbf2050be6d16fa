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
from .queries import QUERIES

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
        "per_query": per_query,
    }
    log(f"search: kb p50 {out['kb_p50_ms']} ms p95 {out['kb_p95_ms']} ms; baseline p50 "
        f"{out['base_p50_ms']} ms p95 {out['base_p95_ms']} ms; p95 ratio {out['p95_ratio']}")
    return out


def _strip_prefix(node):
    """The query without its Prefix forms (for the diagnosis only)."""
    from whoosh import query as Q

    if isinstance(node, Q.Prefix):
        return Q.NullQuery
    if hasattr(node, "subqueries"):
        node.subqueries = [_strip_prefix(x) for x in node.subqueries]
    if hasattr(node, "child"):
        node.child = _strip_prefix(node.child)
    return node


def diagnose(index_dir: Path, slow: list[str], check_top: list[str] | None = None) -> dict:
    """Where the slow queries spend their time, measured on kb's own Whoosh query.

    For each slow query: its units, the number of index terms each one-character unit's
    ``Prefix`` expands to, the documents matched, and the time of the Whoosh search as kb runs
    it (``limit=10``, ``optimize=False``; the collector still calls ``matcher.replace()`` every
    10 hits) against the same query with a collector that never replaces (``replace=0``), and
    that plus the ``Prefix`` forms removed. For ``check_top``: whether kb's top 10 equals the
    top 10 of an exhaustive search of the same query (``limit=None``).
    Fails soft: kb internals may change.
    """
    try:
        from whoosh import collectors

        from kb.search import SearchIndex, analysis
        from kb.search.index import FIELD_BOOSTS, build_query, parse_query
    except ImportError as exc:  # pragma: no cover
        return {"error": repr(exc)}
    analysis.warm_up()
    kb_index = SearchIndex(index_dir)
    kb_index.search("人民代表大会")
    out: dict = {"slow": {}, "top10_check": {}}
    with kb_index._lock:
        s = kb_index._get_searcher()
        reader = s.reader()

        def timed(q, collector=None, limit=10):
            t = time.perf_counter()
            if collector is None:
                res = s.search(q, limit=limit, optimize=False, terms=False)
            else:
                s.search_with_collector(q, collector)
                res = collector.results()
            n = len(res)
            return time.perf_counter() - t, n, [h.docnum for h in res[:10]]

        for q in slow:
            pq = parse_query(q)
            single = [u for u, han in pq.units if han and len(u) == 1]
            expansions = {
                u: sum(sum(1 for _ in reader.expand_prefix(f"{name}_g", u)) for name, _ in FIELD_BOOSTS)
                for u in single
            }
            t_all, n_all, top_all = timed(build_query(pq), limit=None)
            t_norep, n_norep, top_norep = timed(
                build_query(pq), collectors.TopCollector(limit=10, usequality=False, replace=0))
            t_nopre, n_nopre, _ = timed(
                _strip_prefix(build_query(pq)),
                collectors.TopCollector(limit=10, usequality=False, replace=0))
            out["slow"][q] = {
                "units": [u for u, _ in pq.units],
                "single_char_units_prefix_terms": expansions,
                "documents": s.doc_count(),
                "matched": n_all,
                "exhaustive_ms": ms(t_all),
                "collector_replace0_ms": ms(t_norep),
                "replace0_top10_equals_exhaustive": top_norep == top_all,
                "replace0_without_prefix_ms": ms(t_nopre),
                "matched_without_prefix": n_nopre,
            }
        for q in check_top or []:
            pq = parse_query(q)
            t10, n10, top10 = timed(build_query(pq))
            t_all, n_all, top_all = timed(build_query(pq), limit=None)
            out["top10_check"][q] = {"same_top10": top10 == top_all, "kb_total": n10,
                                     "matched": n_all}
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
