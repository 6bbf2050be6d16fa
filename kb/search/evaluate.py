"""Top-N search for kb's query trees, term-at-a-time: Whoosh's ranking with far less Python work.

Whoosh scores a query document-at-a-time: for every matching document its collector walks the
whole matcher tree (``is_active``, ``id``, ``next``, ``score`` on every union node and leaf),
and a phrase matcher decodes positions for every document that has all its terms. A natural
question has ~50 leaves (each unit in title, heading and body, as a word and as a bigram
phrase, plus synonyms) and its common units match most of the index, so that walk is almost
all of a search's time. :func:`top_docs` computes the same scores another way:

1. **The required part, term-at-a-time.** A term's postings are read at most once per search,
   straight from Whoosh's posting blocks (docnums, term frequencies, encoded positions). A
   ``Term`` leaf turns all of them into a ``{docnum: score}`` map with Whoosh's BM25F formula
   and the field lengths Whoosh scores with; unions add maps, intersections keep common keys,
   kb's ``Bonus`` adds its constant. A bigram phrase (``GramPhrase``) starts from its rarest
   term, looks up only those documents in the other terms' blocks (skipping the blocks that
   hold none of them) and decodes positions only where all terms are present. Query types this
   module does not know run their own Whoosh matcher (exact, only slower).
2. **The optional part only where it can matter.** kb's proximity clauses (``GramNear``, the
   optional side of ``AndMaybe``) never add a document and add at most their bound, so they
   are computed only for the documents whose required score plus that bound reaches the N-th
   best required score.

Scores are Whoosh's own terms added in a different order, so they can differ from an
exhaustive Whoosh search in the last bits; the top N and their order are the same (ties by
document number, like Whoosh's ``TopCollector``), and so is the number of matching documents.
``tests/test_search.py`` and ``bench/search_bench.py`` compare the two.

Reading posting blocks uses attributes of ``whoosh.codec.whoosh3.W3LeafMatcher`` and field
lengths those of ``W3PerDocReader`` (Whoosh-Reloaded 2.7.5, pinned in pyproject.toml); any other
matcher or reader is read through Whoosh's public methods instead.
"""

from __future__ import annotations

import heapq
import math
import pickle
import threading
from collections.abc import Iterable
from itertools import accumulate

from whoosh import query as Q
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, W3LeafMatcher, _lenfield
from whoosh.columns import NumericColumn
from whoosh.formats import Positions
from whoosh.matching import NullMatcherClass
from whoosh.matching.wrappers import FilterMatcher
from whoosh.scoring import BM25FScorer
from whoosh.system import _INT_SIZE
from whoosh.util.numeric import byte_to_length

# How far (relative) a document's required score may fall below the N-th best and still have
# its optional part computed: the sums here and in Whoosh add the same terms in another order.
_MARGIN = 1e-9

Scores = dict[int, float]
Postings = dict[int, tuple[float, object]]  # docnum → (weight, encoded value)


class FieldLengths:
    """Per-segment field lengths (the byte-encoded lengths Whoosh scores with), by docnum.

    One per process: a segment's lengths never change (deletions do not touch them), so after
    an update only the new segment's are read.
    """

    def __init__(self, max_entries: int = 64):
        self._lock = threading.Lock()
        self._cache: dict[tuple, list] = {}
        self._max = max_entries

    def norms(self, reader, fieldname: str, avgfl: float, b: float, k1: float) -> list:
        """BM25's length part ``k1 * ((1 - b) + b * length / avgfl)`` by docnum (the same
        operations as ``whoosh.scoring.bm25``, so the same floats)."""
        try:
            key = (reader.segment().segment_id(), fieldname, avgfl, b, k1)
        except Exception:
            key = None
        found = self._cache.get(key) if key is not None else None
        if found is not None:
            return found
        one_b = 1 - b
        norms = [k1 * (one_b + b * fl / avgfl) for fl in self.get(reader, fieldname)]
        if key is not None:
            with self._lock:
                self._cache[key] = norms
        return norms

    def get(self, reader, fieldname: str) -> list:
        try:
            key = (reader.segment().segment_id(), fieldname)
        except Exception:  # not a segment reader: nothing to key a cache on
            key = None
        found = self._cache.get(key) if key is not None else None
        if found is not None:
            return found
        lengths = _read_lengths(reader, fieldname)
        if key is not None:
            with self._lock:
                if len(self._cache) >= self._max:
                    self._cache.clear()
                self._cache[key] = lengths
        return lengths


def _read_lengths(reader, fieldname: str) -> list:
    count = reader.doc_count_all()
    column = None
    try:
        column = reader._perdoc._cached_reader(_lenfield(fieldname), LENGTHS_COLUMN)
    except AttributeError:
        pass
    if type(column) is NumericColumn.Reader and column._fixedlen == 1:
        # one length byte per document, in one read (what doc_field_length reads one by one)
        raw = column._dbfile.get(column._basepos, min(column._count, count))
        lengths = [byte_to_length(b) if b else 0 for b in raw]
        return lengths + [0] * (count - len(lengths))
    length = reader.doc_field_length
    return [length(d, fieldname, 0) or 0 for d in range(count)]


class TermPostings:
    """One term's postings in one segment (without the segment's deleted documents): read all
    at once (:meth:`load`) or looked up for some documents (:meth:`lookup`)."""

    def __init__(self, seg: Segment, field: str, text, btext: bytes):
        self.seg, self.field, self.text, self.btext = seg, field, text, btext
        self.df = seg.reader.doc_frequency(field, btext)
        self._fresh = self._new_matcher()
        self.scorer = getattr(self._fresh[0], "scorer", None)
        self.ids: list[int] | None = None  # with weights and values, once loaded
        self.weights: list[float] = []
        self.values: list = []
        self._where: dict[int, int] | None = None
        fmt = seg.searcher.schema[field].format
        self.positional = fmt.supports("positions")  # else its values are never needed
        self._decode = (_decode_positions if type(fmt) is Positions
                        else fmt.decoder("positions") if self.positional else None)

    def _matcher(self):
        """A leaf matcher at the first posting and the set of deleted documents to skip."""
        if self._fresh is not None:
            fresh, self._fresh = self._fresh, None
            return fresh
        return self._new_matcher()

    def _new_matcher(self):
        m = self.seg.searcher.postings(self.field, self.btext,
                                       weighting=self.seg.context.weighting)
        if isinstance(m, FilterMatcher) and m._exclude:
            return m.child, m._ids
        return m, None

    def load(self) -> TermPostings:
        if self.ids is not None:
            return self
        m, excluded = self._matcher()
        ids: list[int] = []
        weights: list[float] = []
        values: list = []
        positional = self.positional
        if type(m) is W3LeafMatcher:
            while m.is_active():
                _read_block(m, positional)
                ids.extend(m._ids)
                weights.extend(m._weights)
                if positional:
                    values.extend(m._values)
                m._next_block()
        else:  # inlined postings (a ListMatcher) or another codec
            while m.is_active():
                ids.append(m.id())
                weights.append(m.weight())
                if positional:
                    values.append(m.value())
                m.next()
        if not positional:
            values = [None] * len(ids)
        if excluded:
            keep = [i for i, d in enumerate(ids) if d not in excluded]
            ids = [ids[i] for i in keep]
            weights = [weights[i] for i in keep]
            values = [values[i] for i in keep]
        self.ids, self.weights, self.values = ids, weights, values
        return self

    def where(self) -> dict[int, int]:
        """docnum → index into ids/weights/values (loads the postings)."""
        if self._where is None:
            self.load()
            self._where = dict(zip(self.ids, range(len(self.ids)), strict=True))
        return self._where

    def all(self) -> Postings:
        self.load()
        return dict(zip(self.ids, zip(self.weights, self.values, strict=True), strict=True))

    def lookup(self, docs: Iterable[int]) -> Postings:
        """(weight, value) of the term in those of ``docs`` that contain it."""
        docs = sorted(docs)
        if self.ids is None and len(docs) * 4 >= self.df:
            self.load()  # most blocks would be read anyway; loaded postings serve later leaves
        if self.ids is not None:
            where = self._where or self.where()
            w, v = self.weights, self.values
            return {d: (w[i], v[i]) for d in docs if (i := where.get(d)) is not None}
        m, excluded = self._matcher()
        out: Postings = {}
        if type(m) is W3LeafMatcher:
            block = None
            for d in docs:
                if d > m._maxid:  # skip the blocks before d without reading them
                    while m.is_active() and d > m._maxid:
                        m._next_block()
                    block = None
                if not m.is_active():
                    break
                if block is None:
                    _read_block(m, self.positional)
                    block = dict(zip(m._ids, range(len(m._ids)), strict=True))
                i = block.get(d)
                if i is not None:
                    out[d] = (m._weights[i], m._values[i] if self.positional else None)
        else:
            for d in _seek(m, docs):
                out[d] = (m.weight(), m.value() if self.positional else None)
        if excluded:
            for d in excluded.intersection(out):
                del out[d]
        return out

    def positions(self, value) -> list[int]:
        return self._decode(value)

    def bound(self, boost: float = 1.0) -> float:
        """Upper bound of the term's score × boost in any document."""
        if self.scorer is None:
            return math.inf
        return self.scorer.max_quality() * boost


def _seek(m, docs: Iterable[int]):
    """Yield those of ``docs`` (ascending) that the matcher ``m`` matches, with ``m`` on each
    when it is yielded (read its weight, value or score then)."""
    for d in docs:
        if not m.is_active():
            return
        if m.id() < d:
            m.skip_to(d)
            if not m.is_active():
                return
        if m.id() == d:
            yield d


def _read_block(m: W3LeafMatcher, values: bool = True) -> None:
    """Decode the current posting block into ``m._ids``, ``_weights`` and (if ``values``)
    ``_values``, as ``W3LeafMatcher._read_ids``/``_read_weights``/``_read_values`` do, with
    C-speed loops (itertools.accumulate for the id deltas, list repetition for constant
    weights)."""
    if m._data is None:
        m._read_data()
    ids, weights = m._data[0], m._data[1]
    n = m._blocklength
    if m._ids is None:
        m._ids = ids if m._byteids else tuple(accumulate(ids))
    if m._weights is None:
        if weights is None:
            m._weights = [1.0] * n
        elif isinstance(weights, float):
            m._weights = [weights] * n
        else:
            m._weights = weights
    if values and m._values is None:
        size = m._fixedsize
        if size is None or size < 0:
            m._values = m._data[2]
        elif size == 0:
            m._values = (None,) * n
        else:
            m._read_values()


def _decode_positions(value: bytes) -> list[int]:
    """``whoosh.formats.Positions.decode_positions`` (a 4-byte count, then a pickled list of
    deltas, its final STOP byte sometimes left off), with the running sum in C."""
    body = value[_INT_SIZE:] if value[-1:] == b"." else value[_INT_SIZE:] + b"."
    return list(accumulate(pickle.loads(body)))


class Segment:
    """Evaluation of a query on one leaf searcher (segment), with its postings kept."""

    def __init__(self, searcher, context, lengths: FieldLengths):
        self.searcher = searcher
        self.reader = searcher.reader()
        self.context = context
        self.lengths = lengths
        self._postings: dict[tuple[str, bytes], TermPostings | None] = {}

    def postings(self, field: str, text) -> TermPostings | None:
        """The term's postings in this segment (read at most once per search), or None."""
        schema = self.searcher.schema
        if field not in schema:
            return None
        try:
            btext = schema[field].to_bytes(text)
        except ValueError:
            return None
        key = (field, btext)
        if key not in self._postings:
            self._postings[key] = (TermPostings(self, field, text, btext)
                                   if key in self.reader else None)
        return self._postings[key]

    def bm25(self, tp: TermPostings, postings: Iterable[tuple[int, float]],
             boost: float = 1.0) -> Scores:
        """Score × boost of the term in the given (docnum, weight) postings."""
        sc = tp.scorer
        if type(sc) is not BM25FScorer:  # another weighting: ask Whoosh, a posting at a time
            docs = {d for d, _ in postings}
            return self.matcher_scores(Q.Term(tp.field, tp.text, boost=boost), docs)
        idf, k1p = sc.idf, sc.K1 + 1
        norms = self.lengths.norms(self.reader, tp.field, sc.avgfl, sc.B, sc.K1)
        # Whoosh: bm25(idf, tf, fl, avgfl, B, K1) * boost, the same operations in the same order
        if boost == 1.0:
            return {d: idf * ((tf * k1p) / (tf + norms[d])) for d, tf in postings}
        return {d: idf * ((tf * k1p) / (tf + norms[d])) * boost for d, tf in postings}

    def term_scores(self, tp: TermPostings, boost: float = 1.0,
                    only: set[int] | None = None) -> Scores:
        if only is None:
            tp.load()
            return self.bm25(tp, zip(tp.ids, tp.weights, strict=True), boost)
        return self.bm25(tp, ((d, w) for d, (w, _) in tp.lookup(only).items()), boost)

    # -- the tree ----------------------------------------------------------------------------

    def scores(self, q, only: set[int] | None = None) -> Scores:
        """{docnum: score} of the documents matching ``q`` (among ``only``, if given)."""
        own = getattr(q, "kb_scores", None)
        if own is not None:  # kb's query classes evaluate themselves (index.py)
            return own(self, only)
        if type(q) is Q.Term:
            tp = self.postings(q.fieldname, q.text)
            return {} if tp is None else self.term_scores(tp, q.boost, only)
        if type(q) is Q.Or and not q.minmatch and not q.scale:
            return self._compound(q, True, only)
        if type(q) is Q.And:
            return self._compound(q, False, only)
        return self.matcher_scores(q, only)

    def _compound(self, q, union: bool, only) -> Scores:
        subs = q.subqueries
        if not subs:
            return {}
        if len(subs) == 1:  # Whoosh uses the only child's matcher as is (its boost is lost)
            return self.scores(subs[0], only)
        parts = [self.scores(s, only) for s in subs]
        if union:
            parts.sort(key=len, reverse=True)
            out = parts[0]
            for p in parts[1:]:
                for d, s in p.items():
                    out[d] = out.get(d, 0.0) + s
        else:
            parts.sort(key=len)
            common = set(parts[0])
            for p in parts[1:]:
                common.intersection_update(p)
                if not common:
                    return {}
            out = {d: sum(p[d] for p in parts) for d in common}
        if q.boost != 1.0:
            boost = q.boost
            for d in out:
                out[d] *= boost
        return out

    def matcher_scores(self, q, only: set[int] | None = None) -> Scores:
        """Exact scores from the query's own Whoosh matcher, stepping through it."""
        m = q.matcher(self.searcher, self.context)
        out: Scores = {}
        if isinstance(m, NullMatcherClass):
            return out
        if only is None:
            while m.is_active():
                out[m.id()] = m.score()
                m.next()
            return out
        for d in _seek(m, sorted(only)):
            out[d] = m.score()
        return out

    def bound(self, q) -> float:
        """Upper bound of what ``q`` adds to any document's score."""
        own = getattr(q, "kb_bound", None)
        if own is not None:
            return own(self)
        if type(q) is Q.Term:
            tp = self.postings(q.fieldname, q.text)
            return 0.0 if tp is None else tp.bound(q.boost)
        if type(q) in (Q.Or, Q.And) and not getattr(q, "minmatch", 0) \
                and not getattr(q, "scale", None):
            total = sum(self.bound(s) for s in q.subqueries)
            return total * (q.boost if len(q.subqueries) > 1 else 1.0)
        return math.inf

    # -- kb's positional queries -------------------------------------------------------------

    def phrase_scores(self, field: str, pairs: list[tuple[str, int]], boost: float,
                      only: set[int] | None, implied_by: tuple[str, str] | None = None) -> Scores:
        """Documents with the terms at the given relative positions: (sum of the terms'
        scores) × boost, as ``kb.search.index.GramPhrase``'s matcher scores them.
        ``implied_by``: a (field, term) whose documents are known to have the phrase."""
        found = []
        for text, offset in pairs:
            tp = self.postings(field, text)
            if tp is None:
                return {}
            found.append((tp, offset))
        if not found:
            return {}
        if len(found) == 1:  # a single term: no positions to check
            return self.term_scores(found[0][0], boost, only)
        implied: dict | tuple = ()
        if implied_by is not None:
            tp = self.postings(*implied_by)
            implied = () if tp is None else tp.where()
        # Start from the rarest term; narrow first by the terms already read (free), then by
        # the others, rarest first, each looked up only in the documents still in the running
        # (a long phrase of common terms reads few of their blocks).
        found.sort(key=lambda x: x[0].df)
        first, first_offset = found[0]
        postings = first.all() if only is None else first.lookup(only)
        rest = sorted(found[1:], key=lambda x: (x[0].ids is None, x[0].df))
        docs = set(postings)
        for tp, _ in rest:
            if tp.ids is None:
                break
            docs.intersection_update(tp.where())
        # the possible phrase starts in each document (None: known to match, see implied_by)
        starts: dict[int, set[int] | None] = {
            d: None if d in implied
            else {p - first_offset for p in first.positions(postings[d][1])}
            for d in docs
        }
        have = [(first, postings)]
        for tp, offset in rest:
            if not starts:
                return {}
            here = tp.lookup(starts)
            narrowed: dict[int, set[int] | None] = {}
            for d, at in starts.items():
                p = here.get(d)
                if p is None:
                    continue
                if at is not None:
                    at = at.intersection([x - offset for x in tp.positions(p[1])])
                    if not at:
                        continue
                narrowed[d] = at
            starts = narrowed
            have.append((tp, here))
        total: Scores = {}
        for tp, here in have:
            for d, sc in self.bm25(tp, ((d, here[d][0]) for d in starts)).items():
                total[d] = total.get(d, 0.0) + sc
        if boost != 1.0:
            return {d: sc * boost for d, sc in total.items()}
        return total

    def phrase_bound(self, field: str, pairs: list[tuple[str, int]], boost: float) -> float:
        tps = [self.postings(field, text) for text, _ in pairs]
        if any(tp is None for tp in tps):
            return 0.0
        return sum(tp.bound() for tp in tps) * boost

    def near_scores(self, field: str, a: str, b: str, slop: int, boost: float,
                    only: set[int] | None) -> Scores:
        """Documents with term ``a`` within ``slop`` positions of term ``b``: (score of a +
        score of b) × boost, as ``kb.search.index.GramNear``'s matcher scores them."""
        ta, tb = self.postings(field, a), self.postings(field, b)
        if ta is None or tb is None:
            return {}
        pa = ta.all() if only is None else ta.lookup(only)
        pb = tb.lookup(pa.keys())
        near = [d for d in pb
                if _within(ta.positions(pa[d][1]), tb.positions(pb[d][1]), slop)]
        sa = self.bm25(ta, ((d, pa[d][0]) for d in near))
        sb = self.bm25(tb, ((d, pb[d][0]) for d in near))
        return {d: (sa[d] + sb[d]) * boost for d in near}

    def near_bound(self, field: str, a: str, b: str, boost: float) -> float:
        ta, tb = self.postings(field, a), self.postings(field, b)
        if ta is None or tb is None:
            return 0.0
        return (ta.bound() + tb.bound()) * boost


def _within(pa: list[int], pb: list[int], slop: int) -> bool:
    """True if a position in ``pa`` is within ``slop`` of one in ``pb`` (both sorted)."""
    i = j = 0
    while i < len(pa) and j < len(pb):
        x, y = pa[i], pb[j]
        if abs(x - y) <= slop:
            return True
        if x < y:
            i += 1
        else:
            j += 1
    return False


def top_docs(searcher, q, limit: int, allow: set[int] | None = None,
             lengths: FieldLengths | None = None):
    """The top ``limit`` (score, docnum) of ``q`` (best first, ties by docnum) and the number of
    matching documents, as an exhaustive Whoosh search gives them.

    ``allow`` (global docnums) keeps only those documents, like ``FilterCollector(allow=…)``.
    ``q`` is a required query, or ``AndMaybe(required, optional)``. Pass one ``lengths`` per
    index so the field lengths are read once per process.
    """
    if lengths is None:
        lengths = FieldLengths()
    required, optional = (q.a, q.b) if type(q) is Q.AndMaybe else (q, None)
    context = searcher.context()
    found: list[tuple[float, int]] = []
    total = 0
    for sub, offset in searcher.leaf_searchers():
        seg = Segment(sub, context, lengths)
        scores = seg.scores(required)
        if allow is not None:
            scores = {d: s for d, s in scores.items() if d + offset in allow}
        total += len(scores)
        if not scores:
            continue
        if optional is not None:
            bound = seg.bound(optional)
            if len(scores) > limit and bound < math.inf:
                nth = heapq.nlargest(limit, scores.values())[-1]
                floor = nth - bound - _MARGIN * max(1.0, abs(nth))
                near = {d for d, s in scores.items() if s >= floor}
            else:
                near = set(scores)
            for d, s in seg.scores(optional, near).items():
                scores[d] += s
        best = heapq.nsmallest(limit, ((-s, d) for d, s in scores.items()))
        found.extend((-neg, d + offset) for neg, d in best)
    found.sort(key=lambda x: (-x[0], x[1]))
    return found[:limit], total
