"""Grading of each question type; pure functions, no database."""

from __future__ import annotations

import re
import unicodedata

from flask_babel import lazy_gettext as _l

TYPES = ("single", "multiple", "truefalse", "fill")
# In the reader's language; imports read the Chinese and the English labels (imports._TYPE_NAMES).
TYPE_LABELS = {"single": _l("单选"), "multiple": _l("多选"), "truefalse": _l("判断"), "fill": _l("填空")}
OPTION_KEYS = "ABCDEF"

_TRUE = {"对", "正确", "是", "true", "t", "yes", "y", "√", "✓", "✔", "1", "right"}
_FALSE = {"错", "错误", "否", "false", "f", "no", "n", "×", "✗", "✘", "x", "0", "wrong"}
_SPACE = re.compile(r"\s+")


def normalize(text) -> str:
    """Fold full-width/half-width forms (NFKC), case and every kind of whitespace."""
    folded = unicodedata.normalize("NFKC", "" if text is None else str(text)).casefold()
    return _SPACE.sub("", folded).replace("\u3000", "")


def parse_bool(value) -> bool | None:
    """Read 对/错/正确/错误/true/false/√/× (and friends) as a bool; None if it is neither."""
    if isinstance(value, bool):
        return value
    text = normalize(value)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def option_keys(value) -> list[str]:
    """Read "ACD", "A,C,D", "A C D" or a list into sorted unique option keys (upper case)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        parts = [str(value)]
    keys: set[str] = set()
    for part in parts:
        for ch in normalize(part).upper():
            if ch.isalnum():
                keys.add(ch)
    return sorted(keys)


def grade(qtype: str, answer: list, response: list, partial_credit: bool = False) -> float:
    """Return the credit (0.0–1.0) that ``response`` earns for a question.

    :param answer: stored answer (option keys, [bool] or accepted texts).
    :param response: what the person gave, as stored (list of strings).
    """
    response = [r for r in (response or []) if r not in (None, "")]
    if not response:
        return 0.0
    if qtype == "single":
        return 1.0 if option_keys(response) == option_keys(answer) else 0.0
    if qtype == "multiple":
        given, right = set(option_keys(response)), set(option_keys(answer))
        if given == right:
            return 1.0
        if not partial_credit or given - right:
            return 0.0
        return round(len(given & right) / len(right), 4)
    if qtype == "truefalse":
        given = parse_bool(response[0])
        return 1.0 if given is not None and given == bool(answer[0]) else 0.0
    if qtype == "fill":
        given = normalize(response[0])
        return 1.0 if given and any(given == normalize(a) for a in answer) else 0.0
    raise ValueError(f"unknown question type {qtype!r}")


def score(credits: list[float], total: int) -> float:
    """Percent score over ``total`` questions (unanswered count as 0), one decimal."""
    if total <= 0:
        return 0.0
    return round(100.0 * sum(credits) / total, 1)
