"""Chinese text analysis for the search index: words (rjieba) and CJK bigrams.

Two token streams are produced from the same text:

* **words**: rjieba search-mode segmentation of each run of Han characters (a word and its
  dictionary sub-words, e.g. 闭会期间 → 闭会, 会期, 期间, 闭会期间), plus lowercased Latin/digit
  words. Ranks natural queries well, but misses arbitrary sub-words.
* **grams**: overlapping CJK bigrams of each Han run (a single-character run is kept as a
  unigram), plus the same Latin/digit words; positions are consecutive within a run with a gap
  between runs. A phrase of the query's bigrams matches exactly the documents containing that
  substring (never across punctuation).

The dictionary (rjieba's default dictionary plus ``userdict.txt``) is loaded once per process by
:func:`warm_up`; every function here calls it lazily, so calling it at app start only moves the
~0.1 s load out of the first request.

The Whoosh tokenizer classes live at module level: Whoosh pickles the analyzer into the index,
so renaming or moving them makes existing indexes unreadable (rebuild with ``kb sync``).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from whoosh.analysis import Token, Tokenizer

log = logging.getLogger(__name__)

USERDICT_PATH = Path(__file__).with_name("userdict.txt")

#: Number of times the dictionary was loaded in this process (tests check it stays at 1).
LOAD_COUNT = 0
_loaded = False
_load_lock = threading.Lock()
_jieba = None  # the rjieba module once loaded

# Han characters (CJK unified ideographs, extension A, compatibility ideographs, extensions B+)
# and 〇. Kana, Hangul etc. are treated like Latin words (whole lowercased tokens).
_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_HAN_RUN = re.compile(f"[{_HAN}]+")
_WORD_RUN = re.compile(r"[^\W_]+")  # letters and digits of any script; punctuation splits
_IS_HAN = re.compile(f"[{_HAN}]")

MAX_TOKEN_CHARS = 40  # longer Latin "words" (hashes, pasted junk) are truncated

# Full-width ASCII (Ａ, １, ＋) and the ideographic space fold to ASCII. One character maps to one
# character, so offsets into the folded text are offsets into the original.
_FOLD = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FOLD[0x3000] = 0x20


def fold(text: str) -> str:
    """Fold full-width ASCII to ASCII; length-preserving."""
    return text.translate(_FOLD)


def _read_userdict(path: Path) -> list[tuple[str, int | None]]:
    terms: list[tuple[str, int | None]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        terms.append((parts[0], freq))
    return terms


def warm_up() -> None:
    """Load rjieba and the 人大 user dictionary once per process (idempotent, thread-safe).

    Terms go into rjieba's default (process-wide) dictionary, so any other rjieba user in the
    process segments them the same way.
    """
    global _loaded, _jieba, LOAD_COUNT
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        import rjieba

        if USERDICT_PATH.is_file():
            for term, freq in _read_userdict(USERDICT_PATH):
                rjieba.add_word(term, freq, None)
        else:  # e.g. package data not installed: search still works, segmentation is poorer
            log.warning("search dictionary %s is missing", USERDICT_PATH)
        _jieba = rjieba
        LOAD_COUNT += 1
        _loaded = True


def _jb():
    if not _loaded:
        warm_up()
    return _jieba


def _runs(text: str) -> Iterator[tuple[str, int, bool]]:
    """Yield (run, start, is_han) for each maximal run of Han chars or of other word chars."""
    for m in _WORD_RUN.finditer(text):
        chunk, base = m.group(), m.start()
        if not _IS_HAN.search(chunk):
            yield chunk, base, False
            continue
        pos = 0
        for h in _HAN_RUN.finditer(chunk):
            if h.start() > pos:
                yield chunk[pos : h.start()], base + pos, False
            yield h.group(), base + h.start(), True
            pos = h.end()
        if pos < len(chunk):
            yield chunk[pos:], base + pos, False


def _latin(run: str) -> str:
    return run[:MAX_TOKEN_CHARS].lower()


# Latin words joined by - . / _ (Wi-Fi, e.g., COVID-19): the words stream adds the joined form.
_LATIN_COMPOUND = re.compile(r"[0-9A-Za-z]+(?:[-./_][0-9A-Za-z]+)+")


def iter_words(text: str) -> Iterator[tuple[str, int, int]]:
    """(token, start, end) for the *words* stream, in text order."""
    jb = _jb()
    text = fold(text)
    joined = {m.end(): m for m in _LATIN_COMPOUND.finditer(text)}
    for run, start, is_han in _runs(text):
        if is_han:
            for word, s, e in jb.tokenize(run, mode="search"):
                yield word, start + s, start + e
        else:
            yield _latin(run), start, start + len(run)
            m = joined.get(start + len(run))
            if m is not None:
                yield _latin(re.sub(r"[-./_]", "", m.group())), m.start(), m.end()


def iter_grams(text: str) -> Iterator[tuple[str, int, int, int]]:
    """(token, start, end, position) for the *grams* stream: CJK bigrams of each Han run (a
    lone Han char is a unigram), Latin/digit words lowercased.

    Positions are consecutive within a run and skip one between runs, so a phrase never
    matches across punctuation or a change of script.
    """
    text = fold(text)
    pos = 0
    for run, start, is_han in _runs(text):
        if is_han and len(run) > 1:
            for i in range(len(run) - 1):
                yield run[i : i + 2], start + i, start + i + 2, pos
                pos += 1
        elif is_han:
            yield run, start, start + 1, pos
            pos += 1
        else:
            yield _latin(run), start, start + len(run), pos
            pos += 1
        pos += 1


def gram_cover(text: str) -> list[tuple[str, int]]:
    """The fewest (gram, relative position) pairs that pin down ``text`` exactly: every
    other bigram of each run plus the run's last one (人民代表大会 → 人民@0, 代表@2, 大会@4).
    Positions are relative to the first gram."""
    grams = list(iter_grams(text))
    if not grams:
        return []
    base = grams[0][3]
    out: list[tuple[str, int]] = []
    run: list[tuple[str, int]] = []

    def flush():
        picked = run[::2]
        if run and run[-1] not in picked:
            picked.append(run[-1])
        out.extend(picked)

    for g, _, _, p in grams:
        if run and p != run[-1][1] + base + 1:
            flush()
            run = []
        run.append((g, p - base))
    flush()
    return out


def tokenize_words(text: str) -> list[str]:
    """The *words* tokens of ``text`` (rjieba search mode + lowercased Latin words)."""
    return [w for w, _, _ in iter_words(text)]


def tokenize_grams(text: str) -> list[str]:
    """The *grams* tokens of ``text`` (CJK bigrams + lowercased Latin words)."""
    return [g for g, _, _, _ in iter_grams(text)]


def cut_query(text: str) -> list[tuple[str, bool]]:
    """Segment query text into units: (word, is_han), rjieba default mode, Latin lowercased.

    Only word characters survive: quotes, operators' punctuation, ``*``, ``:``, emoji are
    separators here, so nothing of the user's syntax reaches Whoosh.
    """
    jb = _jb()
    units: list[tuple[str, bool]] = []
    for run, _, is_han in _runs(fold(text)):
        if is_han:
            units.extend((w, True) for w in jb.cut(run) if w.strip())
        else:
            units.append((_latin(run), False))
    return units


@functools.lru_cache(maxsize=4096)
def is_word(text: str) -> bool:
    """True if rjieba keeps ``text`` as one word (so the *words* field indexes it whole)."""
    return _jb().cut(text) == [text]


def query_runs(text: str) -> list[tuple[str, bool]]:
    """Maximal runs of word characters (Han runs and Latin runs), as (run, is_han)."""
    return [(run if is_han else _latin(run), is_han) for run, _, is_han in _runs(fold(text))]


def sub_words(word: str) -> list[str]:
    """A non-overlapping cover of ``word`` by its shorter dictionary words (greedy longest).

    闭会期间 → [闭会, 期间]; 人大常委会 → [人大, 常委会]; 建议批评和意见 → [建议, 批评, 和, 意见].
    Characters not covered by a sub-word stand alone. Returns [] for words of one or two
    characters and for words with no dictionary sub-words.
    """
    if len(word) < 3:
        return []
    spans = [(s, e, w) for w, s, e in _jb().tokenize(word, mode="search") if e - s < len(word)]
    cover: list[str] = []
    pos = 0
    while pos < len(word):
        cands = [(e, w) for s, e, w in spans if s == pos]
        # a character no dictionary sub-word starts with stands alone (建议批评「和」意见)
        end, w = max(cands) if cands else (pos + 1, word[pos])
        cover.append(w)
        pos = end
    if all(len(w) == 1 for w in cover):
        return []
    return cover


class _StreamTokenizer(Tokenizer):
    """Whoosh tokenizer over one of the streams above (``_stream``)."""

    _stream = staticmethod(iter_words)

    def __call__(
        self,
        value,
        positions=False,
        chars=False,
        keeporiginal=False,
        removestops=True,
        start_pos=0,
        start_char=0,
        tokenize=True,
        mode="",
        **kwargs,
    ):
        t = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        if not tokenize:
            t.original = t.text = value
            t.boost = 1.0
            if positions:
                t.pos = start_pos
            if chars:
                t.startchar = start_char
                t.endchar = start_char + len(value)
            yield t
            return
        for i, tok in enumerate(self._stream(value)):
            t.text = tok[0]
            t.boost = 1.0
            t.stopped = False
            if keeporiginal:
                t.original = t.text
            if positions:  # grams carry their own positions (gaps between runs)
                t.pos = start_pos + (tok[3] if len(tok) > 3 else i)
            if chars:
                t.startchar = start_char + tok[1]
                t.endchar = start_char + tok[2]
            yield t


class WordTokenizer(_StreamTokenizer):
    """The *words* stream (module level: Whoosh pickles it into the index)."""

    _stream = staticmethod(iter_words)


class GramTokenizer(_StreamTokenizer):
    """The *grams* stream (module level: Whoosh pickles it into the index)."""

    _stream = staticmethod(iter_grams)


def WordAnalyzer():  # noqa: N802 (Whoosh naming convention)
    return WordTokenizer()


def GramAnalyzer():  # noqa: N802
    return GramTokenizer()
