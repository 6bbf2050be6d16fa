"""Per-worker caches of rendered HTML, with holes for the values that change per request.

A page or panel that is the same for many requests except for a few values (the CSRF token,
the reader's name, the plugins' panels) is rendered once with a *hole* marker in place of each
such value, split at the markers and kept; a request then only joins the literal pieces with
its own values (:class:`Shell`). The markers carry a random part made when the worker starts, so
no content (lessons are written before the worker starts, and never see the marker) can fake one.

Every cache here is keyed by everything its HTML is made of; values that must never be shared
between people (the CSRF token, the name) are holes, never part of a cached piece.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict

from flask import current_app
from markupsafe import Markup, escape

_MARK = "kbhole" + secrets.token_hex(8)
_HOLE = re.compile(_MARK + r"x([a-z_]+)x")


def hole(name: str) -> Markup:
    """The marker for hole ``name`` (lower-case letters and ``_``), safe to put in a template."""
    return Markup(f"{_MARK}x{name}x")


class Shell:
    """Rendered HTML split at its holes: ``fill`` joins the pieces with a request's values."""

    __slots__ = ("parts", "holes", "size")

    def __init__(self, html: str):
        pieces = _HOLE.split(str(html))
        self.parts = tuple(pieces)  # literal, hole name, literal, hole name, ..., literal
        self.holes = frozenset(pieces[1::2])
        self.size = sum(len(p) for p in pieces[0::2])

    def fill(self, values) -> Markup:
        """Join the pieces; ``values`` maps a hole name to its (escaped) text or a callable
        returning it, called once, only when the hole is in the HTML."""
        seen = {}
        out = []
        for i, piece in enumerate(self.parts):
            if i % 2 == 0:
                out.append(piece)
                continue
            if piece not in seen:
                value = values[piece]
                seen[piece] = str(escape(value() if callable(value) else value))
            out.append(seen[piece])
        return Markup("".join(out))


def csrf_value() -> str:
    """This request's CSRF token (Flask-WTF: the session's token, signed)."""
    from flask_wtf.csrf import generate_csrf

    return generate_csrf()


class FragmentCache:
    """A small LRU of rendered fragments, bounded in entries and in characters, thread-safe.

    ``generation`` (e.g. the catalog object) empties the cache when it changes: what was
    rendered from an older catalog is never served again.
    """

    def __init__(self, max_entries: int = 128, max_chars: int = 8_000_000):
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._generation = None
        self._parts: OrderedDict = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._parts)

    def clear(self) -> None:
        with self._lock:
            self._parts.clear()
            self._chars = 0

    def get(self, key, render, generation=None):
        """The cached value for ``key``, else ``render()`` (kept unless the generation moved)."""
        with self._lock:
            if self._generation is not generation:
                self._parts.clear()
                self._chars = 0
                self._generation = generation
            hit = self._parts.get(key)
            if hit is not None:
                self._parts.move_to_end(key)
                return hit
        hit = render()
        size = _size(hit)
        with self._lock:
            if self._generation is generation and key not in self._parts:
                self._parts[key] = hit
                self._chars += size
                while self._parts and (len(self._parts) > self.max_entries
                                       or self._chars > self.max_chars):
                    _, old = self._parts.popitem(last=False)
                    self._chars -= _size(old)
        return hit


def _size(value) -> int:
    if isinstance(value, Shell):
        return value.size
    if isinstance(value, str):
        return len(value)
    if isinstance(value, tuple):
        return sum(_size(v) for v in value)
    html = getattr(value, "html", None)  # a record (kb.records.Panel, Card): its HTML
    return len(html) if isinstance(html, str) else 1


def worker_cache(name: str, max_entries: int = 128, max_chars: int = 8_000_000) -> FragmentCache:
    """The current app's per-worker cache ``name`` (made on first use)."""
    cache = current_app.extensions.get(name)
    if cache is None:
        cache = current_app.extensions.setdefault(name, FragmentCache(max_entries, max_chars))
    return cache


def page_key() -> tuple[str, str]:
    """(locale, URL prefix) of this request: what the words and links of every cached
    fragment depend on besides its own key. Worked out once per request (Flask-Babel's
    ``get_locale`` costs several context look-ups per call, and a signed-in lesson page asks
    about ten times), kept in ``g`` with the request and the locale object it was made from,
    so ``flask_babel.refresh()`` (which drops that object) still takes effect."""
    from flask import g, request
    from flask_babel import get_locale

    ctx_g = g._get_current_object()
    req = request._get_current_object()  # g can outlive a request (an app context held open)
    babel = ctx_g.__dict__.get("_flask_babel")
    hit = ctx_g.__dict__.get("_kb_page_key")
    if (hit is not None and hit[1] is req and babel is not None
            and getattr(babel, "babel_locale", None) is hit[0]):
        return hit[2]
    locale = get_locale()
    key = (str(locale), req.script_root)
    ctx_g._kb_page_key = (locale, req, key)
    return key


def per_locale(name: str, key, make):
    """``make()``, kept per worker for ``key`` within this request's locale and URL prefix:
    for hook answers that depend only on ``key`` (e.g. a role) and on the language and links
    (nav items, asset URLs). Returns a tuple."""
    from flask import has_request_context

    if not has_request_context():  # e.g. a hook called from the command line: nothing kept
        return tuple(make())
    return worker_cache(name, 64).get((*page_key(), key), lambda: tuple(make()))


def hashable(key) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True
