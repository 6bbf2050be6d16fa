"""The search index: one Whoosh document per lesson section, Chinese-aware queries.

On disk (``index_dir``)::

    CURRENT             name of the live generation folder (replaced atomically, os.replace)
    gen-<time>-<rand>/  a complete Whoosh index; a rebuild writes a new one, then swaps CURRENT
    write.lock          OS file lock held by every writer (rebuild, update, delete)

Readers never see a half-built index: a rebuild writes its generation completely before CURRENT
names it. Old generations are removed after the swap; a process still reading one keeps its
open (mmapped) files on POSIX; on Windows the removal fails quietly and is retried after the
next rebuild.

Queries are built from tokens (never through Whoosh's query-language parser), so any user text
is safe. The query text (≤ 200 chars) is cut by rjieba into *units*; question words and
particles (什么, 怎么, 吗, 的 …) are dropped. Each unit matches as

* the word in the *words* fields (rjieba search mode), or
* the exact substring in the *grams* fields (a bigram phrase: 会期 finds 闭会期间), or
* a law-text synonym (人大 → 人民代表大会, 乡镇 → 乡、民族乡、镇; ``SYNONYMS``), or
* all of its dictionary sub-words (人大常委会 → 人大 + 常委会),

in title (×4), heading (×2.5) and body (×1), scored by BM25F. Ranking is in tiers: a document
gets ``UNIT_BONUS`` for each unit (of two or more characters) it matches and for each run of
query words it contains verbatim, so documents matching *more* of the query come first and BM25
orders documents within a tier; consecutive units close together in the body add a little
(``AndMaybe``: proximity reorders the matches, it never adds one).

The query is a Whoosh query, but it is not run through Whoosh's collectors: ``evaluate.py``
computes the same ranking term-at-a-time (every matching document scored, the same top hits and
total as an exhaustive Whoosh search of the query), several times faster.
"""

from __future__ import annotations

import errno
import functools
import html
import logging
import math
import os
import pickle
import re
import shutil
import struct
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from whoosh import index as windex
from whoosh import query as Q
from whoosh.fields import ID, KEYWORD, STORED, TEXT, Schema
from whoosh.matching import IntersectionMatcher, NullMatcher, NullMatcherClass, WrappingMatcher
from whoosh.query.spans import Span, SpanWrappingMatcher
from whoosh.query.wrappers import WrappingQuery
from whoosh.util import make_binary_tree
from whoosh.util.filelock import FileLock

from . import analysis, evaluate
from .analysis import GramAnalyzer, WordAnalyzer

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 200  # longer query text is cut before analysis
MAX_UNITS = 16  # query units beyond this are ignored
MAX_RUN_PHRASE = 60  # longest consecutive-units phrase tried as a bonus
MAX_PER_PAGE = 100
SNIPPET_CHARS = 160
CACHE_SIZE = 256  # recent results per process, dropped whenever the index changes
# Segments are written as separate files, not one compound file: Whoosh reads a compound
# segment by copying its sub-files into memory (~185 MB more per worker at 2,000 laws, and
# ~0.2 s more to open), separate files are read through the OS file cache.
WRITE_COMPOUND = False

FIELD_BOOSTS = (("title", 4.0), ("heading", 2.5), ("body", 1.0))
UNIT_BONUS = 1000.0  # per matched unit (≥ 2 chars): larger than any BM25 sum of a unit
RUN_PHRASE_BOOST = 2.0
PARTS_BOOST = 0.5
NEAR_BOOST = 1.5  # consecutive units within NEAR_SLOP characters of each other in the body
NEAR_SLOP = 16
MAX_NEAR_PAIRS = 4
SINGLE_CHAR_BOOST = 0.5

EVERYONE = "*"  # audience token for "empty audience list"
_KEY_SEP = "\x1f"

# Dropped from queries (kept when the query has nothing else): question words, particles.
STOP_WORDS = frozenset(
    """
    的 地 得 了 着 过 吗 呢 吧 啊 呀 嘛 么 哦 是 不是 有 没有 有没有 在 和 与 及 或 或者 跟 同
    什么 怎么 怎样 怎么样 如何 为什么 为何 哪些 哪个 哪里 哪儿 哪 谁 啥 干啥 干什么 做什么
    做 干 办 搞 请问 一下 能 能不能 可以 可不可以 能否 是否 需要 要 应该 应当 该 会不会
    多少 多久 几 几个 几次 多长 多长时间 什么样 哪种 怎么办 什么时候 要不要 需不需要
    我 我们 你 你们 他 他们 她 它 这 那 这个 那个 这些 那些 这样 那样 些 们 都 也 就 还 又
    被 把 对 从 给 向 以 之 其 于 等 时 时候
    a an the and or not of to in on for is are be by with what how why who which
    """.split()
)

# Query-side expansions: lesson and everyday wording → the wording of the law texts. Each
# alternative matches like the unit itself (a words term if rjieba keeps it whole, else the
# exact substring).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "人大": ("人民代表大会",),
    "人代会": ("人民代表大会会议", "人民代表大会"),
    "人大代表": ("人民代表大会代表",),
    "人大主席": ("人民代表大会主席",),
    "人大常委会": ("人民代表大会常务委员会",),
    "常委会": ("常务委员会",),
    "乡镇人大": ("乡、民族乡、镇的人民代表大会",),
    "乡镇": ("乡、民族乡、镇",),
    "建议批评和意见": ("建议、批评和意见",),
    "代表建议": ("建议、批评和意见",),
    "地方组织法": ("地方各级人民代表大会和地方各级人民政府组织法",),
    "代表法": ("全国人民代表大会和地方各级人民代表大会代表法",),
    "选举法": ("全国人民代表大会和地方各级人民代表大会选举法",),
    "监督法": ("各级人民代表大会常务委员会监督法",),
    "开会": ("举行会议", "召开会议"),
    "一年": ("每年",),
}

_WS = re.compile(r"\s+")


DAMAGED = "DAMAGED"  # in index_dir: "<generation>\n<what failed>", written by whoever found it
# Errors a reader raises on bytes that are not what was written (never raised by a bug in a
# query), and the disk failing to read them: a search that meets one marks the generation
# damaged for every process.
READ_ERRORS = (zlib.error, struct.error, EOFError, pickle.UnpicklingError, UnicodeDecodeError)


def _is_read_error(exc: BaseException) -> bool:
    if type(exc) is Exception and str(exc).startswith("Block tag error"):
        return True  # whoosh.codec.whoosh3 on a postings block that is not one (cut or overwritten)
    return isinstance(exc, READ_ERRORS) or (isinstance(exc, OSError) and exc.errno == errno.EIO)


class SearchIndexBusy(RuntimeError):
    """Another writer held the index lock for longer than ``writer_timeout``."""


class SearchIndexUnreadable(RuntimeError):
    """The live index is damaged; only a full rebuild (``kb sync``) repairs it."""


def _abandon(writer) -> None:
    """Give up a Whoosh writer whose work failed: close its files, delete its temporary files
    and release its lock, even when closing fails again (the disk is still full)."""
    try:
        writer.cancel()
        return
    except Exception:
        log.debug("writer.cancel() failed", exc_info=True)
    try:
        writer._tempstorage.destroy()
    except Exception:
        pass
    lock = getattr(writer, "writelock", None)
    if lock is not None:
        try:
            lock.release()
        except Exception:
            pass
    writer.is_closed = True


# ----------------------------------------------------------------------------- data classes


@dataclass
class SearchDoc:
    kind: str  # "lesson" (later also "law_article")
    course: str  # course slug
    lesson: str  # lesson slug
    anchor: str  # H2 heading id ("" for the lesson intro before the first H2)
    url: str
    title: str  # lesson title
    heading: str  # H2 heading text ("" for intro)
    body: str  # plain text of the section
    course_title: str = ""
    tags: list[str] = field(default_factory=list)
    audience: list[str] = field(default_factory=list)  # empty = everyone


@dataclass
class SearchHit:
    url: str
    kind: str
    course: str
    course_title: str
    lesson: str
    anchor: str
    title: str
    heading: str
    snippet: str  # safe HTML: escaped text with <mark> around hits
    score: float


@dataclass
class SearchResults:
    query: str
    hits: list[SearchHit]
    total: int
    page: int
    pages: int
    per_page: int
    suggestions: list[str]
    index_missing: bool = False


# ----------------------------------------------------------------------------- schema


def make_schema() -> Schema:
    text_fields = {}
    for name, _ in FIELD_BOOSTS:
        text_fields[f"{name}_w"] = TEXT(analyzer=WordAnalyzer(), phrase=False)
        text_fields[f"{name}_g"] = TEXT(analyzer=GramAnalyzer(), phrase=True)
    return Schema(
        lkey=ID(),
        kind=ID(stored=True),
        course=ID(stored=True),
        lesson=ID(stored=True),
        anchor=STORED(),
        url=STORED(),
        course_title=STORED(),
        title=STORED(),
        heading=STORED(),
        body=STORED(),
        tags=KEYWORD(commas=True, lowercase=True),
        audience=KEYWORD(commas=True),
        **text_fields,
    )


def _lkey(course: str, lesson: str) -> str:
    return f"{course}{_KEY_SEP}{lesson}"


def _clean_tag(tag: str) -> str:
    return str(tag).replace(",", " ").strip().lower()


def _doc_fields(doc: SearchDoc) -> dict:
    tags = [t for t in (_clean_tag(t) for t in doc.tags or []) if t]
    audience = [a for a in (_clean_tag(a) for a in doc.audience or []) if a]
    return {
        "lkey": _lkey(doc.course, doc.lesson),
        "kind": doc.kind,
        "course": doc.course,
        "lesson": doc.lesson,
        "anchor": doc.anchor,
        "url": doc.url,
        "course_title": doc.course_title,
        "title": doc.title,
        "heading": doc.heading,
        "body": doc.body,
        "tags": ",".join(tags),
        "audience": ",".join(audience) if audience else EVERYONE,
        "title_w": doc.title,
        "title_g": doc.title,
        "heading_w": doc.heading,
        "heading_g": doc.heading,
        "body_w": doc.body,
        "body_g": doc.body,
    }


# ----------------------------------------------------------------------------- query building


class _BonusMatcher(WrappingMatcher):
    """Adds a constant to the child's score."""

    def __init__(self, child, bonus=0.0):
        WrappingMatcher.__init__(self, child)
        self.bonus = bonus

    def copy(self):
        return _BonusMatcher(self.child.copy(), self.bonus)

    def _replacement(self, newchild):
        return _BonusMatcher(newchild, self.bonus)

    def replace(self, minquality=0):
        # The child's scores do not include the bonus: ask it for what it must reach itself.
        child = self.child.replace(max(0.0, minquality - self.bonus) if minquality else 0)
        return self if child is self.child else self._replacement(child)

    def supports_block_quality(self):
        return False

    def max_quality(self):
        return self.child.max_quality() + self.bonus

    def block_quality(self):
        return self.child.block_quality() + self.bonus

    def score(self):
        return self.child.score() + self.bonus


class Bonus(WrappingQuery):
    """Query wrapper: matching documents score child score + ``bonus``."""

    def __init__(self, child, bonus=0.0):
        WrappingQuery.__init__(self, child)
        self.bonus = bonus

    def __eq__(self, other):
        return (
            other.__class__ is self.__class__
            and self.child == other.child
            and self.bonus == other.bonus
        )

    def __hash__(self):
        return hash(self.child) ^ hash(self.bonus)

    def _rewrap(self, child):
        return Bonus(child, self.bonus)

    def matcher(self, searcher, context=None):
        m = self.child.matcher(searcher, context)
        if isinstance(m, NullMatcherClass) or not self.bonus:
            return m
        return _BonusMatcher(m, self.bonus)

    # term-at-a-time evaluation (kb/search/evaluate.py)
    def kb_scores(self, seg, only=None):
        scores = seg.scores(self.child, only)
        if self.bonus:
            bonus = self.bonus
            for d in scores:
                scores[d] += bonus
        return scores

    def kb_bound(self, seg):
        return seg.bound(self.child) + self.bonus


class GramPhrase(Q.Query):
    """Exact phrase in a grams field, given as (gram, relative position) pairs.

    ``analysis.gram_cover`` gives every other bigram (plus the last), which pins the text down
    exactly with about half the terms of a full phrase; the positions check is a set
    intersection rather than Whoosh's span machinery. Scores like ``whoosh.query.Phrase``
    (the sum of the terms' scores), matches the same documents, several times faster.
    """

    def __init__(self, fieldname, pairs, boost=1.0, implied_by=None):
        self.fieldname = fieldname
        self.pairs = [(str(w), int(o)) for w, o in pairs]
        self.boost = boost
        # (words field, word): a document with this word in that field has the phrase for sure
        # (a words token is a substring of a Han run of the same text, and the grams of a run
        # are consecutive), so the term-at-a-time evaluation skips its positions check. It
        # never changes which documents match.
        self.implied_by = tuple(implied_by) if implied_by else None

    def __eq__(self, other):
        return (
            other.__class__ is self.__class__
            and self.fieldname == other.fieldname
            and self.pairs == other.pairs
            and self.boost == other.boost
            and self.implied_by == other.implied_by
        )

    def __hash__(self):
        return hash((self.fieldname, tuple(self.pairs), self.boost, self.implied_by))

    def __repr__(self):
        return f"GramPhrase({self.fieldname!r}, {self.pairs!r}, boost={self.boost:g})"

    __str__ = __repr__

    def field(self):
        return self.fieldname

    def has_terms(self):
        return True

    def _terms(self, phrases=True):
        if phrases:
            for w, _ in self.pairs:
                yield (self.fieldname, w)

    def normalize(self):
        return self

    def _and(self):
        return Q.And([Q.Term(self.fieldname, w) for w, _ in self.pairs])

    def estimate_size(self, ixreader):
        return self._and().estimate_size(ixreader)

    def estimate_min_size(self, ixreader):
        return self._and().estimate_min_size(ixreader)

    def matcher(self, searcher, context=None):
        reader = searcher.reader()
        if self.fieldname not in searcher.schema:
            return NullMatcher()
        field = searcher.schema[self.fieldname]
        dfs = {}
        for w, _ in self.pairs:
            b = field.to_bytes(w)
            if (self.fieldname, b) not in reader:
                return NullMatcher()
            dfs[w] = reader.doc_frequency(self.fieldname, b)
        pairs = sorted(self.pairs, key=lambda p: dfs[p[0]])  # rarest first: cheaper skipping
        ms = [Q.Term(self.fieldname, w).matcher(searcher, context) for w, _ in pairs]
        if len(ms) == 1:
            m = ms[0]
        else:
            m = _PhraseMatcher(ms, [o for _, o in pairs])
        if self.boost != 1.0:
            m = WrappingMatcher(m, boost=self.boost)
        return m

    # term-at-a-time evaluation (kb/search/evaluate.py): the same documents and scores
    def kb_scores(self, seg, only=None):
        return seg.phrase_scores(self.fieldname, self.pairs, self.boost, only, self.implied_by)

    def kb_bound(self, seg):
        return seg.phrase_bound(self.fieldname, self.pairs, self.boost)


class _PhraseMatcher(SpanWrappingMatcher):
    def __init__(self, ms, offsets):
        self.ms = ms
        self.offsets = offsets
        self.length = max(offsets) + 1
        SpanWrappingMatcher.__init__(self, make_binary_tree(IntersectionMatcher, ms))

    def copy(self):
        return _PhraseMatcher([m.copy() for m in self.ms], self.offsets)

    def replace(self, minquality=0):
        return self if self.is_active() else NullMatcher()

    def _get_spans(self):
        common = None
        for m, off in zip(self.ms, self.offsets, strict=True):
            starts = {p - off for p in m.value_as("positions")}
            common = starts if common is None else common & starts
            if not common:
                return []
        return [Span(p, p + self.length - 1) for p in sorted(common)]


class GramNear(Q.Query):
    """Two texts within ``slop`` positions of each other (either order) in a grams field.

    Each text is represented by its rarest gram (a ranking signal, not an exact test);
    the positions check is a merge of two sorted lists, not Whoosh's span machinery.
    """

    def __init__(self, fieldname, a, b, slop=16, boost=1.0):
        self.fieldname, self.a, self.b, self.slop, self.boost = fieldname, a, b, slop, boost

    def __eq__(self, other):
        return other.__class__ is self.__class__ and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((self.fieldname, self.a, self.b, self.slop, self.boost))

    def __repr__(self):
        return f"GramNear({self.fieldname!r}, {self.a!r}, {self.b!r}, slop={self.slop})"

    __str__ = __repr__

    def field(self):
        return self.fieldname

    def normalize(self):
        return self

    def estimate_size(self, ixreader):
        return 0

    def _rarest(self, reader, field, text):
        best = None
        for w, _ in analysis.gram_cover(text):
            b = field.to_bytes(w)
            if (self.fieldname, b) not in reader:
                return None
            df = reader.doc_frequency(self.fieldname, b)
            if best is None or df < best[0]:
                best = (df, w)
        return best[1] if best else None

    def matcher(self, searcher, context=None):
        reader = searcher.reader()
        if self.fieldname not in searcher.schema:
            return NullMatcher()
        field = searcher.schema[self.fieldname]
        wa = self._rarest(reader, field, self.a)
        wb = self._rarest(reader, field, self.b)
        if wa is None or wb is None or wa == wb:
            return NullMatcher()
        ma = Q.Term(self.fieldname, wa).matcher(searcher, context)
        mb = Q.Term(self.fieldname, wb).matcher(searcher, context)
        m = _NearMatcher(ma, mb, self.slop)
        if self.boost != 1.0:
            m = WrappingMatcher(m, boost=self.boost)
        return m

    # term-at-a-time evaluation (kb/search/evaluate.py): the same documents and scores
    def _terms(self, seg):
        if self.fieldname not in seg.searcher.schema:
            return None
        field = seg.searcher.schema[self.fieldname]
        wa = self._rarest(seg.reader, field, self.a)
        wb = self._rarest(seg.reader, field, self.b)
        return None if wa is None or wb is None or wa == wb else (wa, wb)

    def kb_scores(self, seg, only=None):
        terms = self._terms(seg)
        if terms is None:
            return {}
        return seg.near_scores(self.fieldname, *terms, self.slop, self.boost, only)

    def kb_bound(self, seg):
        terms = self._terms(seg)
        return 0.0 if terms is None else seg.near_bound(self.fieldname, *terms, self.boost)


class _NearMatcher(SpanWrappingMatcher):
    def __init__(self, ma, mb, slop):
        self.ma, self.mb, self.slop = ma, mb, slop
        SpanWrappingMatcher.__init__(self, IntersectionMatcher(ma, mb))

    def copy(self):
        return _NearMatcher(self.ma.copy(), self.mb.copy(), self.slop)

    def replace(self, minquality=0):
        return self if self.is_active() else NullMatcher()

    def _get_spans(self):
        pa = self.ma.value_as("positions")
        pb = self.mb.value_as("positions")
        i = j = 0
        while i < len(pa) and j < len(pb):
            x, y = pa[i], pb[j]
            if abs(x - y) <= self.slop:
                return [Span(min(x, y), max(x, y))]
            if x < y:
                i += 1
            else:
                j += 1
        return []


def _grams_query(fieldname: str, text: str, boost: float, words_field: str | None = None):
    """``text`` as a substring of a grams field. ``words_field``: the words field of the same
    text, where ``text`` as a word implies the substring (see ``GramPhrase.implied_by``)."""
    pairs = analysis.gram_cover(text)
    if not pairs:
        return None
    if len(pairs) == 1:
        return Q.Term(fieldname, pairs[0][0], boost=boost)
    implied = (words_field, text) if words_field and analysis._IS_HAN.search(text) else None
    return GramPhrase(fieldname, pairs, boost=boost, implied_by=implied)


def _alt_query(name: str, alt: str, boost: float):
    """A synonym in field ``name``: a words term when rjieba keeps it whole (cheap), else
    the phrase of its bigrams (phrases of very common text such as 人民代表大会 are slow)."""
    if analysis.is_word(alt):
        return Q.Term(f"{name}_w", alt, boost=boost)
    return _grams_query(f"{name}_g", alt, boost, f"{name}_w")


def _part_query(part: str):
    forms = [Q.Term(f"{n}_w", part, boost=b * PARTS_BOOST) for n, b in FIELD_BOOSTS]
    for alt in SYNONYMS.get(part, ()):
        forms += [_alt_query(n, alt, b * PARTS_BOOST) for n, b in FIELD_BOOSTS]
    return Q.Or(forms)


@dataclass
class ParsedQuery:
    text: str
    units: list[tuple[str, bool]]  # (unit, is_han), stop words removed
    phrases: list[str]  # Han runs of ≥ 2 words, and runs of ≥ 2 words between stop words
    parts: dict[str, list[str]]  # unit → dictionary sub-words (stop words removed)

    def highlight_terms(self) -> list[str]:
        terms = [p for p in self.phrases]
        for u, _ in self.units:
            terms += [u, *SYNONYMS.get(u, ())]
        for parts in self.parts.values():
            for p in parts:
                if len(p) > 1:
                    terms += [p, *SYNONYMS.get(p, ())]
        seen: set[str] = set()
        return [t for t in terms if not (t in seen or seen.add(t))]


def parse_query(text: str) -> ParsedQuery:
    """Turn arbitrary user text into query units; never raises."""
    text = _WS.sub(" ", text or "").strip()[:MAX_QUERY_CHARS]
    all_units: list[tuple[str, bool]] = []
    phrases: list[str] = []
    for run, is_han in analysis.query_runs(text):
        if not is_han:
            all_units.append((run, False))
            continue
        words = analysis.cut_query(run)
        if len(words) > 1:
            phrases.append(run)  # the whole run verbatim
        segment: list[str] = []
        for w in words:
            all_units.append(w)
            if w[0] in STOP_WORDS:
                if len(segment) > 1:
                    phrases.append("".join(segment))
                segment = []
            else:
                segment.append(w[0])
        if len(segment) > 1:
            phrases.append("".join(segment))
    units = [u for u in all_units if u[0] not in STOP_WORDS] or all_units
    seen: set[str] = set()
    units = [u for u in units if not (u[0] in seen or seen.add(u[0]))][:MAX_UNITS]
    phrases = [p for p in dict.fromkeys(phrases) if len(p) <= MAX_RUN_PHRASE][:4]
    parts = {}
    for u, is_han in units:
        if is_han:
            # sub-words of two or more characters (主席团 → 主席 + 团 is no useful split)
            sub = [p for p in analysis.sub_words(u) if len(p) > 1 and p not in STOP_WORDS]
            if len(sub) > 1:
                parts[u] = sub
    return ParsedQuery(text=text, units=units, phrases=phrases, parts=parts)


def build_query(pq: ParsedQuery):
    """The Whoosh query for a parsed query (None when there is nothing to search)."""
    clauses = []
    # A lone character next to real words (人, 会, 法 in a sentence) matches most documents and
    # expands to hundreds of terms: search single characters only when nothing else is asked.
    has_words = any(len(u) > 1 or not is_han for u, is_han in pq.units)
    for unit, is_han in pq.units:
        if has_words and is_han and len(unit) == 1:
            continue
        forms = []
        for name, boost in FIELD_BOOSTS:
            if is_han and len(unit) == 1:
                forms.append(Q.Term(f"{name}_w", unit, boost=boost * SINGLE_CHAR_BOOST))
                forms.append(Q.Term(f"{name}_g", unit, boost=boost * SINGLE_CHAR_BOOST))
                forms.append(Q.Prefix(f"{name}_g", unit, boost=boost * SINGLE_CHAR_BOOST))
                continue
            forms.append(Q.Term(f"{name}_w", unit, boost=boost))
            if is_han:
                forms.append(_grams_query(f"{name}_g", unit, boost, f"{name}_w"))
                for alt in SYNONYMS.get(unit, ()):
                    forms.append(_alt_query(name, alt, boost))
        parts = pq.parts.get(unit)
        if parts:
            forms.append(Q.And([_part_query(p) for p in parts]))
        bonus = UNIT_BONUS if (len(unit) > 1 or not is_han) else 0.0
        clauses.append(Bonus(Q.Or([f for f in forms if f is not None]), bonus))
    # several query words verbatim (the whole run, or the words between stop words): a tier
    # above documents that only contain the words apart
    for phrase in pq.phrases:
        forms = [
            _grams_query(f"{name}_g", phrase, boost * RUN_PHRASE_BOOST)
            for name, boost in FIELD_BOOSTS
        ]
        clauses.append(Bonus(Q.Or([f for f in forms if f is not None]), UNIT_BONUS))
    if not clauses:
        return None
    required = clauses[0] if len(clauses) == 1 else Q.Or(clauses)
    # proximity: consecutive query units close together in the body (either order). It only
    # reorders the documents matched above (AndMaybe), so it is computed only for the documents
    # it can lift into the page (kb/search/evaluate.py).
    units = [u for u, is_han in pq.units if is_han and len(u) > 1]
    near = [
        GramNear("body_g", a, b, slop=NEAR_SLOP, boost=NEAR_BOOST)
        for a, b in list(zip(units, units[1:], strict=False))[:MAX_NEAR_PAIRS]
    ]
    if not near:
        return required
    return Q.AndMaybe(required, near[0] if len(near) == 1 else Q.Or(near))


# ----------------------------------------------------------------------------- snippets


def _unfolded(ch: str) -> str:
    """A regex for ``ch`` or any character that ``analysis.fold`` turns into it (Ａ for A)."""
    if "\x21" <= ch <= "\x7e":
        return f"[{re.escape(ch)}{chr(ord(ch) + 0xFEE0)}]"
    return "[ \u3000]" if ch == " " else re.escape(ch)


# Latin letters and digits, ASCII or full-width (as analysis.fold sees them)
_ALNUM = "0-9A-Za-z\u00c0-\u024f\uff10-\uff19\uff21-\uff3a\uff41-\uff5a"


@functools.lru_cache(maxsize=256)
def _term_pattern(terms: tuple[str, ...]) -> re.Pattern | None:
    """One regex for the highlight terms, matching the text as written: what the terms
    match in ``analysis.fold(text)``, at the same offsets (folding is one character for one),
    without folding long texts. Built once per query: a search makes ten snippets with the
    same terms."""
    alts = []
    for t in sorted({analysis.fold(t) for t in terms if t}, key=len, reverse=True):
        if re.match(r"[^\W_]", t) and not analysis._IS_HAN.search(t):
            # Latin/digit word: whole words only (not "act" inside "action"); a joined word
            # also matches its written form with separators (wifi → Wi-Fi)
            if len(t) <= 24:
                esc = "[-./_－．／＿]?".join(_unfolded(c) for c in t)
            else:
                esc = "".join(_unfolded(c) for c in t)
            esc = rf"(?<![{_ALNUM}]){esc}(?![{_ALNUM}])"
        else:
            esc = "".join(_unfolded(c) for c in t)
        alts.append(esc)
    if not alts:
        return None
    return re.compile("|".join(alts), re.IGNORECASE)


_SENTENCE_END = "。！？；!?;\n"


def make_snippet(body: str, terms: list[str], width: int = SNIPPET_CHARS) -> str:
    """Escaped excerpt of ``body`` (~``width`` chars) around the densest hits, hits in <mark>."""
    text = _WS.sub(" ", body or "").strip()
    if not text:
        return ""
    pat = _term_pattern(tuple(terms))
    spans = [(m.start(), m.end()) for m in pat.finditer(text)] if pat else []
    spans = spans[:400]
    start = 0
    if spans and len(text) > width:
        rank = {t.lower(): i for i, t in enumerate(terms)}
        found = [analysis.fold(text[s:e]).lower() for s, e in spans]
        # The window of span i: spans i, i+1, … ending within width - 20 of its start. Spans
        # are in text order and do not overlap, so the window's end only moves right: keep
        # a count of the texts found inside it.
        best, best_key = 0, None
        inside: dict[str, int] = {}
        j = 0
        for i, (s, _) in enumerate(spans):
            j = max(j, i)
            while j < len(spans) and spans[j][1] <= s + width - 20:
                inside[found[j]] = inside.get(found[j], 0) + 1
                j += 1
            if j == i:  # a hit longer than the window: nothing to rank it by
                continue
            # more distinct terms first, then better (earlier-listed) terms, then more hits
            if best_key is None or len(inside) >= best_key[0]:
                key = (len(inside), -min(rank.get(t, 99) for t in inside), j - i, -s)
                if best_key is None or key > best_key:
                    best, best_key = s, key
            inside[found[i]] -= 1
            if not inside[found[i]]:
                del inside[found[i]]
        # start a little before the first hit, at a sentence start if one is near
        start = max(0, best - 20)
        for j in range(best - 1, max(-1, best - 40), -1):
            if text[j] in _SENTENCE_END:
                start = j + 1
                break
        start = min(start, max(0, len(text) - width))
    end = min(len(text), start + width)
    out = ["…" if start > 0 else ""]
    pos = start
    for s, e in spans:
        if e <= pos or s < start:
            continue
        if s >= end:
            break
        s = max(s, pos)
        e = min(e, end)
        out.append(html.escape(text[pos:s]))
        out.append("<mark>" + html.escape(text[s:e]) + "</mark>")
        pos = e
    out.append(html.escape(text[pos:end]))
    if end < len(text):
        out.append("…")
    return "".join(out)


# ----------------------------------------------------------------------------- the index


def _new_generation_name() -> str:
    return f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


class SearchIndex:
    """The lesson search index in ``index_dir``; share one instance per process.

    Searches in one process are serialised by a lock (Whoosh readers share file cursors, and
    the work is pure Python under the GIL anyway); one long-lived searcher is refreshed when
    the index changed (a read of ``CURRENT`` plus Whoosh's cheap TOC check per search).
    Writers (rebuild, update, delete) take an OS file lock, so they are serialised across
    threads and processes; a writer waiting longer than ``writer_timeout`` seconds raises
    :class:`SearchIndexBusy`.
    """

    def __init__(self, index_dir: str | os.PathLike, writer_timeout: float = 10.0):
        self.root = Path(index_dir)
        self.writer_timeout = writer_timeout
        self._lock = threading.RLock()
        self._gen: str | None = None
        self._ix = None
        self._searcher = None
        self._popular: tuple[str | None, list[str]] = (None, [])
        self._version = 0  # bumped whenever the searcher is replaced (keys the result cache)
        self._pid = os.getpid()
        self._cache: OrderedDict[tuple, SearchResults] = OrderedDict()
        self._files: dict[str, tuple[int, int]] = {}  # of the open generation: size, inode
        self._problem: str | None = None  # why the index cannot be used, when it cannot
        self._problem_gen: str | None = None
        self._damaged_path = str(self.root / DAMAGED)
        self._lengths = evaluate.FieldLengths()  # per-segment field lengths for scoring

    # -- generations -------------------------------------------------------------------------

    def _current_generation(self) -> str | None:
        gen, _problem = self._read_current()
        return gen

    def _read_current(self) -> tuple[str | None, str | None]:
        """The live generation named by ``CURRENT``, or (None, why not) when there is none."""
        try:
            name = (self.root / "CURRENT").read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None, None  # no index yet (or deleted): "missing", not damaged
        except (OSError, ValueError) as exc:  # unreadable, or not text (UnicodeDecodeError)
            return None, f"CURRENT cannot be read: {type(exc).__name__}"
        if not name or "/" in name or "\\" in name or name.startswith(".") or len(name) > 100:
            return None, f"CURRENT names no generation ({name[:40]!r})"
        return name, None

    def _set_current(self, gen: str) -> None:
        tmp = self.root / f".CURRENT.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(gen + "\n")
                f.flush()
                os.fsync(f.fileno())
        except BaseException:  # e.g. the disk is full: CURRENT still names the old generation
            tmp.unlink(missing_ok=True)
            raise
        for attempt in range(50):
            try:
                os.replace(tmp, self.root / "CURRENT")
                return
            except PermissionError:  # Windows: a reader has CURRENT open this instant
                if attempt == 49:
                    raise
                time.sleep(0.02)

    def _remove_old_generations(self, keep: str) -> None:
        for p in self.root.glob("gen-*"):
            if p.name != keep and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".CURRENT.*.tmp"):
            try:
                if time.time() - p.stat().st_mtime > 60:
                    p.unlink()
            except OSError:
                pass

    def _write_lock(self):
        self.root.mkdir(parents=True, exist_ok=True)
        return _WriteLock(self.root / "write.lock", self.writer_timeout, self.root)

    # -- reading -----------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when the live generation can be opened and read (``check()`` says why not)."""
        return self.check()[0] == "ok"

    def check(self) -> tuple[str, str]:
        """Open the live index afresh (not this process's searcher) and read from it.

        Returns (state, detail): ``ok``, ``missing`` (no index: never built, or deleted) or
        ``unreadable`` (``CURRENT`` names a generation that is gone, or whose table of contents
        or segments are damaged). ``kb sync`` rebuilds the index unless it is ``ok``.
        """
        gen, problem = self._read_current()
        if gen is None:
            return ("unreadable", problem) if problem else ("missing", f"no index in {self.root}")
        path = self.root / gen
        if not path.is_dir():
            return "unreadable", f"CURRENT names {gen}, which does not exist"
        damage = self._damage_found(gen)
        if damage:
            return "unreadable", damage
        try:
            ix = windex.open_dir(str(path))
            try:
                with ix.searcher() as searcher:
                    count = searcher.doc_count()
                    reader = searcher.reader()
                    if count:  # the last stored document lies at the end of the stored fields
                        reader.stored_fields(reader.doc_count_all() - 1)
                    for name in ("title_w", "body_g"):
                        next(iter(reader.lexicon(name)), None)
            finally:
                ix.close()
        except Exception as exc:
            return "unreadable", f"{gen}: {type(exc).__name__}: {str(exc)[:200]}"
        return "ok", f"{gen}: {count} documents"

    def _open_files(self, gen: str, ix) -> dict[str, tuple[int, int]]:
        """Size and inode of the files ``ix`` reads (its table of contents and segments)."""
        names = {f"_{ix.indexname}_{ix.latest_generation()}.toc"}
        segments = {seg.segment_id() for seg in ix._segments()}
        files = {}
        with os.scandir(self.root / gen) as entries:
            for entry in entries:
                if entry.name in names or entry.name.split(".", 1)[0] in segments:
                    st = entry.stat()
                    files[entry.path] = (st.st_size, st.st_ino)
        return files

    def _files_changed(self) -> bool:
        """Whether a file the searcher has open was truncated, replaced or removed.

        Whoosh maps segment files into memory: reading a page that a truncation cut off kills
        the process (SIGBUS). Normal writes never change a file in place (they add segments and
        a new table of contents), so a change here means damage, or a commit that removed
        merged segments (then ``up_to_date()`` is False as well and the index is reopened).
        """
        for path, (size, ino) in self._files.items():
            try:
                st = os.stat(path)
            except OSError:
                return True
            if st.st_size != size or st.st_ino != ino:
                return True
        return False

    def _damage_found(self, gen: str) -> str | None:
        """What a process found damaged in ``gen`` while reading it (the DAMAGED file)."""
        try:
            found = (self.root / DAMAGED).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        name, _, what = found.partition("\n")
        return f"{gen}: {what.strip() or 'damaged'}" if name.strip() == gen else None

    def _mark_damaged(self, gen: str, what: str) -> None:
        """Tell every process (and ``kb sync``) that ``gen`` cannot be read."""
        try:
            (self.root / DAMAGED).write_text(f"{gen}\n{what}\n", encoding="utf-8")
        except OSError:
            log.warning("cannot write %s", self.root / DAMAGED, exc_info=True)

    def _broken(self, problem: str) -> None:
        """Remember why there is no searcher; log it once per generation, not every search."""
        self._close_searcher()
        gen, _ = self._read_current()
        if self._problem is None or self._problem_gen != gen:
            log.warning("search index %s unusable: %s; run `kb sync` to rebuild it", self.root,
                        problem)
        self._problem, self._problem_gen = problem, gen

    def _get_searcher(self):
        """The process's searcher, refreshed if the index changed. Call with self._lock held."""
        if self._pid != os.getpid():
            # forked (e.g. gunicorn --preload): never share open index files with the parent
            self._searcher = self._ix = self._gen = None
            self._cache.clear()
            self._pid = os.getpid()
        gen, problem = self._read_current()
        if gen is None:
            if problem:
                self._broken(problem)
            else:
                self._close_searcher()
                self._problem = None
            return None
        if gen == self._gen and self._searcher is not None and os.path.exists(self._damaged_path):
            damage = self._damage_found(gen)
            if damage:
                self._broken(damage)
                return None
        if gen == self._gen and self._searcher is not None and self._files_changed():
            try:
                current = self._searcher.up_to_date()
            except Exception:
                current = False
            if current:
                # Changed in place while no commit happened: damage. Tell every process, and
                # do not reopen it (a truncated postings file still opens, then fails to read).
                what = "a file of the open index was changed or removed"
                self._mark_damaged(gen, what)
                self._broken(f"{gen}: {what}")
                return None
            self._close_searcher()  # a commit replaced segments: open the new state below
        if gen != self._gen or self._searcher is None:
            damage = self._damage_found(gen)
            if damage:
                self._broken(damage)
                return None
            try:
                ix = windex.open_dir(str(self.root / gen))
                searcher = ix.searcher()
                files = self._open_files(gen, ix)
            except Exception as exc:
                self._broken(f"{gen} cannot be opened: {type(exc).__name__}: {str(exc)[:200]}")
                return None
            self._close_searcher()
            self._ix, self._searcher, self._gen, self._files = ix, searcher, gen, files
            self._problem = None
            self._version += 1
            return searcher
        try:
            if not self._searcher.up_to_date():
                # Not Searcher.refresh(): it reuses segment readers by segment and so keeps
                # their *old* deletions (a replaced lesson would stay visible). A new searcher
                # costs a few ms, only after a change.
                files = self._open_files(gen, self._ix)
                old, self._searcher = self._searcher, self._ix.searcher()
                self._files = files
                old.close()
                self._version += 1
        except Exception:
            log.warning("search index refresh failed; reopening", exc_info=True)
            self._close_searcher()
            return self._get_searcher()
        return self._searcher

    def _close_searcher(self) -> None:
        if self._searcher is not None:
            try:
                self._searcher.close()
            except Exception:
                pass
        if self._ix is not None:
            try:
                self._ix.close()
            except Exception:
                pass
        self._searcher = self._ix = self._gen = None
        self._files = {}
        self._version += 1
        self._cache.clear()

    def close(self) -> None:
        with self._lock:
            self._close_searcher()

    def status(self) -> dict:
        """This process's view: ``state`` is ok, missing or unreadable (with ``problem``)."""
        with self._lock:
            s = self._get_searcher()
            if s is None:
                state = "unreadable" if self._problem else "missing"
                return {"exists": False, "state": state, "problem": self._problem or "",
                        "documents": 0, "generation": "", "path": str(self.root)}
            return {
                "exists": True,
                "state": "ok",
                "documents": s.doc_count(),
                "generation": self._gen or "",
                "path": str(self.root / (self._gen or "")),
            }

    def search(
        self,
        query: str,
        *,
        course: str | None = None,
        tag: str | None = None,
        kind: str | None = None,
        audience: str | None = None,
        page: int = 1,
        per_page: int = 10,
    ) -> SearchResults:
        """Search; never raises for any query text (errors are logged, empty results returned)."""
        try:
            page = max(1, int(page))
        except (TypeError, ValueError):
            page = 1
        try:
            per_page = min(MAX_PER_PAGE, max(1, int(per_page)))
        except (TypeError, ValueError):
            per_page = 10
        qtext = query if isinstance(query, str) else ""
        pq = parse_query(qtext)
        empty = SearchResults(pq.text, [], 0, page, 0, per_page, [])
        with self._lock:
            searcher = self._get_searcher()
            if searcher is None:
                empty.index_missing = True
                return empty
            key = (self._version, pq.text, course, tag, kind, audience, page, per_page)
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return replace(cached, hits=list(cached.hits), suggestions=list(cached.suggestions))
            wq = build_query(pq)
            if wq is None:
                return empty
            filt = self._filter(course, tag, kind, audience)
            try:
                # The ranking of an exhaustive Whoosh search of wq (no pruning: the score tiers,
                # UNIT_BONUS, are added outside the child matchers, so Whoosh's block-quality
                # skipping would drop documents that belong in the top hits), computed
                # term-at-a-time (evaluate.py), which is several times faster.
                allow = None if filt is None else set(searcher.docs_for_query(filt))
                top, total = evaluate.top_docs(searcher, wq, page * per_page, allow=allow,
                                               lengths=self._lengths)
                rows = [(score, searcher.stored_fields(docnum))
                        for score, docnum in top[(page - 1) * per_page :]]
                suggestions = [] if total else self._suggest(searcher, pq)
            except Exception as exc:
                log.exception("search failed for %r", pq.text)
                # A damaged index can open cleanly and fail while reading.
                gen = self._gen
                if _is_read_error(exc) and gen:
                    what = f"reading failed: {type(exc).__name__}: {str(exc)[:200]}"
                    self._mark_damaged(gen, what)
                    self._broken(f"{gen}: {what}")
                    empty.index_missing = True
                else:
                    state, detail = self.check()
                    if state != "ok":
                        self._broken(detail)
                        empty.index_missing = True
                return empty
        terms = pq.highlight_terms()
        hits = [
            SearchHit(
                url=f.get("url", ""),
                kind=f.get("kind", ""),
                course=f.get("course", ""),
                course_title=f.get("course_title", ""),
                lesson=f.get("lesson", ""),
                anchor=f.get("anchor", ""),
                title=f.get("title", ""),
                heading=f.get("heading", ""),
                snippet=make_snippet(f.get("body", ""), terms),
                score=float(score),
            )
            for score, f in rows
        ]
        res = SearchResults(
            query=pq.text,
            hits=hits,
            total=total,
            page=page,
            pages=math.ceil(total / per_page),
            per_page=per_page,
            suggestions=suggestions,
        )
        with self._lock:
            if key[0] == self._version:
                self._cache[key] = replace(res, hits=list(hits), suggestions=list(suggestions))
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return res

    @staticmethod
    def _filter(course, tag, kind, audience):
        terms = []
        if course:
            terms.append(Q.Term("course", str(course)))
        if kind:
            terms.append(Q.Term("kind", str(kind)))
        if tag and _clean_tag(tag):
            terms.append(Q.Term("tags", _clean_tag(tag)))
        if audience and _clean_tag(audience):
            terms.append(
                Q.Or([Q.Term("audience", EVERYONE), Q.Term("audience", _clean_tag(audience))])
            )
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else Q.And(terms)

    # -- suggestions -------------------------------------------------------------------------

    def _suggest(self, searcher, pq: ParsedQuery, limit: int = 5) -> list[str]:
        """For a query without hits: corrected queries, then related and popular words."""
        reader = searcher.reader()
        out: list[str] = []

        def add(s):
            if s and s not in out and s != pq.text:
                out.append(s)

        def freq(term):
            return sum(reader.doc_frequency(f"{n}_w", term) for n, _ in FIELD_BOOSTS)

        corrected = pq.text
        related: list[str] = []
        for unit, is_han in pq.units:
            if freq(unit) or (len(unit) < 2 and not is_han):
                continue
            maxdist = 1 if (is_han or len(unit) <= 5) else 2
            cands: dict[str, int] = {}
            for name in ("title_w", "heading_w", "body_w"):
                try:
                    for c in searcher.corrector(name).suggest(unit, limit=8, maxdist=maxdist):
                        if c not in STOP_WORDS and (len(c) > 1 or not is_han):
                            cands[c] = freq(c)
                except Exception:
                    log.debug("corrector failed", exc_info=True)
            if is_han:
                # same length first (a mistyped character), then by document frequency
                ranked = sorted(cands, key=lambda c: (len(c) != len(unit), -cands[c]))
            else:
                ranked = sorted(cands, key=lambda c: -cands[c])
            if ranked:
                corrected = (
                    corrected.replace(unit, ranked[0])
                    if is_han
                    else re.sub(re.escape(unit), ranked[0], corrected, flags=re.IGNORECASE)
                )
                related += ranked[1:3]
            elif is_han:
                related += self._words_sharing_chars(reader, unit)
        if corrected != pq.text:
            add(corrected)
        for r in related:
            add(r)
        if not out:
            for w in self._popular_words(reader):
                add(w)
        return out[:limit]

    @staticmethod
    def _words_sharing_chars(reader, unit: str, per_char: int = 2) -> list[str]:
        found: list[str] = []
        for ch in unit[:4]:
            try:
                terms = reader.most_frequent_terms("body_w", number=20, prefix=ch)
            except Exception:
                continue
            words = [t.decode("utf-8") if isinstance(t, bytes) else t for _, t in terms]
            found += [w for w in words if len(w) > 1 and w not in STOP_WORDS][:per_char]
        return found

    def _popular_words(self, reader, number: int = 5) -> list[str]:
        if self._popular[0] == self._gen and self._popular[1]:
            return self._popular[1]
        words: list[str] = []
        try:
            for _, t in reader.most_frequent_terms("title_w", number=60):
                w = t.decode("utf-8") if isinstance(t, bytes) else t
                if len(w) > 1 and w not in STOP_WORDS and not w.isdigit():
                    words.append(w)
        except Exception:
            log.debug("most_frequent_terms failed", exc_info=True)
        self._popular = (self._gen, words[:number])
        return words[:number]

    # -- writing -----------------------------------------------------------------------------

    def rebuild(
        self, docs: Iterable[SearchDoc], progress: Callable[[int], None] | None = None
    ) -> int:
        """Index ``docs`` into a new generation, then swap it in atomically. Returns the count."""
        analysis.warm_up()
        with self._write_lock():
            gen = _new_generation_name()
            path = self.root / gen
            path.mkdir(parents=True)
            count = 0
            try:
                ix = windex.create_in(str(path), make_schema())
                writer = ix.writer(limitmb=128, _lk=False, compound=WRITE_COMPOUND)  # _write_lock() is held
                try:
                    for doc in docs:
                        writer.add_document(**_doc_fields(doc))
                        count += 1
                        if progress and count % 100 == 0:
                            progress(count)
                except BaseException:
                    _abandon(writer)
                    raise
                try:
                    writer.commit()
                except BaseException:
                    _abandon(writer)
                    raise
                ix.close()
                self._set_current(gen)
            except BaseException:
                # e.g. the disk filled up: the half-written generation goes, CURRENT still
                # names the live one, which keeps answering searches
                shutil.rmtree(path, ignore_errors=True)
                raise
            try:
                (self.root / DAMAGED).unlink(missing_ok=True)  # it named an older generation
            except OSError:
                log.warning("cannot remove %s", self.root / DAMAGED, exc_info=True)
            with self._lock:  # let go of the old generation here, so it can be removed
                self._close_searcher()
            self._remove_old_generations(keep=gen)
        if progress:
            progress(count)
        return count

    def update_lessons(self, keys: Iterable[tuple[str, str]], docs: Iterable[SearchDoc]) -> None:
        """Replace lessons: delete every doc of ``keys`` (and of the lessons in ``docs``), add
        ``docs``, in one commit. Creates the index if it is missing."""
        docs = list(docs)
        lkeys = {_lkey(c, les) for c, les in keys} | {_lkey(d.course, d.lesson) for d in docs}
        if not lkeys:
            return
        analysis.warm_up()
        with self._write_lock():
            ix = self._open_for_writing(create=True)
            try:
                # Without Whoosh's own lock: _write_lock() already excludes every other writer,
                # and a SegmentWriter that fails while starting (it creates files: a full disk)
                # would keep Whoosh's lock until it is garbage-collected.
                writer = ix.writer(_lk=False, compound=WRITE_COMPOUND)
            except BaseException:
                self._failed_write(None, ix)
                raise
            try:
                for k in sorted(lkeys):
                    writer.delete_by_term("lkey", k)
                for doc in docs:
                    writer.add_document(**_doc_fields(doc))
                writer.commit()
            except BaseException:
                self._failed_write(writer, ix)
                raise
            ix.close()

    def delete_lessons(self, keys: Iterable[tuple[str, str]]) -> None:
        """Remove every doc of the given (course, lesson) keys. No-op if the index is missing."""
        lkeys = {_lkey(c, les) for c, les in keys}
        if not lkeys:
            return
        with self._write_lock():
            ix = self._open_for_writing(create=False)
            if ix is None:
                return
            try:
                # Without Whoosh's own lock: _write_lock() already excludes every other writer,
                # and a SegmentWriter that fails while starting (it creates files: a full disk)
                # would keep Whoosh's lock until it is garbage-collected.
                writer = ix.writer(_lk=False, compound=WRITE_COMPOUND)
            except BaseException:
                self._failed_write(None, ix)
                raise
            try:
                for k in sorted(lkeys):
                    writer.delete_by_term("lkey", k)
                writer.commit()
            except BaseException:
                self._failed_write(writer, ix)
                raise
            ix.close()

    def _failed_write(self, writer, ix) -> None:
        """After a failed commit (a full disk, say) into the live generation: give the writer
        up and delete what it wrote. Readers never saw it: the table of contents they read
        is written last, so the live index is unchanged and keeps answering."""
        if writer is not None:
            _abandon(writer)
        try:
            toc = ix._read_toc()  # the table of contents readers use
            keep = {f"_{ix.indexname}_{toc.generation}.toc", f"{ix.indexname}_WRITELOCK"}
            segments = {seg.segment_id() for seg in toc.segments}
            folder = Path(ix.storage.folder)
            for entry in folder.iterdir():
                if entry.name in keep or entry.name.split(".", 1)[0] in segments:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        except Exception:
            log.warning("could not clean up after a failed index write in %s", self.root,
                        exc_info=True)
        finally:
            ix.close()

    def _open_for_writing(self, create: bool):
        """Open the live generation (write lock held); create an empty one if asked and there
        is no index at all. A damaged index is never replaced by an empty one here: ``kb sync``
        rebuilds it from all the content."""
        gen, problem = self._read_current()
        if gen is not None:
            state, detail = self.check()
            if state != "ok":
                raise SearchIndexUnreadable(f"search index {self.root} is unreadable ({detail}): "
                                            "run `kb sync` to rebuild it")
            return windex.open_dir(str(self.root / gen))
        if problem:
            raise SearchIndexUnreadable(f"search index {self.root} is unreadable ({problem}): "
                                        "run `kb sync` to rebuild it")
        if not create:
            return None
        gen = _new_generation_name()
        (self.root / gen).mkdir(parents=True)
        ix = windex.create_in(str(self.root / gen), make_schema())
        self._set_current(gen)
        self._remove_old_generations(keep=gen)
        return ix


class _WriteLock:
    """Cross-process, cross-thread exclusive lock on ``index_dir`` (OS file lock)."""

    def __init__(self, path: Path, timeout: float, root: Path):
        self.path, self.timeout, self.root = path, timeout, root
        self._lock = FileLock(str(path))

    def __enter__(self):
        deadline = time.monotonic() + max(0.0, self.timeout)
        delay = 0.01
        while not self._lock.acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise SearchIndexBusy(
                    f"search index {self.root} is busy: another writer held it for more than "
                    f"{self.timeout:g} s; try again later"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        return self

    def __exit__(self, *exc):
        self._lock.release()
        return False
