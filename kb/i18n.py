"""Translation helpers beyond Flask-Babel's ``_()`` and ``_l()`` (see docs/plugins.md, "Translating").

- Punctuation that differs between Chinese and English (``：`` ``（）`` ``、``) goes through the
  catalogue too: :func:`colon`, :func:`parens` and :func:`join_list`, also template filters.
- Texts written to the database by the system (audit summaries) are stored in the source
  language together with their msgid and parameters (:func:`storable`) and translated when
  they are shown (:func:`stored_text`); text a person typed is shown as typed.
- Messages made outside a request (the ``kb`` command line) follow :func:`cli_locale`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from flask_babel import gettext
from flask_babel.speaklater import LazyString
from markupsafe import Markup, escape

LANGUAGES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"


def _fill(pattern: str, **values):
    """``pattern % values``; Markup in, Markup out (a template's ``_()`` is already escaped)."""
    if any(isinstance(v, Markup) for v in values.values()):
        return Markup(escape(pattern)) % values
    return pattern % values


def colon(label):
    """``姓名`` → ``姓名：`` in Chinese, ``Name: `` in English."""
    return _fill(gettext("%(label)s："), label=label)


def parens(text):
    """A parenthetical after a word: ``（已停用）`` in Chinese, `` (retired)`` in English."""
    return _fill(gettext("（%(text)s）"), text=text)


def join_list(items: Iterable):
    """Items joined with ``、`` in Chinese and ``, `` in English."""
    items = list(items)
    if any(isinstance(i, Markup) for i in items):
        return Markup(escape(gettext("、"))).join(items)
    return gettext("、").join(str(i) for i in items)


# -- texts the system stores -------------------------------------------------------------------

def _source(msgid: str, args: Mapping) -> str:
    """The message in the source language (Chinese), whatever the request's language is."""
    def plain(v):
        if isinstance(v, dict):
            return _source(v["msgid"], v.get("args") or {})
        if isinstance(v, list):
            return "、".join(str(plain(i)) for i in v)
        return v

    values = {k: plain(v) for k, v in args.items()}
    try:
        return msgid % values if values else msgid
    except (KeyError, TypeError, ValueError):
        return msgid


def _jsonable(value):
    if isinstance(value, LazyString):
        return storable(value)[1]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def storable(text) -> tuple[str, dict | None]:
    """``(source-language text, {"msgid", "args"} or None)`` for a text to store.

    ``text`` made with ``_l("…%(name)s…", name=…)`` keeps its msgid and parameters so that
    :func:`stored_text` can show it in the reader's language later (a parameter may itself be an
    ``_l()`` text, e.g. a status label). Anything else is stored as it is and shown as stored.
    """
    if (isinstance(text, LazyString) and text._func is gettext and text._args
            and isinstance(text._args[0], str)):
        msgid = text._args[0]
        args = {k: _jsonable(v) for k, v in text._kwargs.items()}
        return _source(msgid, args), {"msgid": msgid, "args": args}
    return ("" if text is None else str(text)), None


def _translate(spec: Mapping) -> str:
    def value(v):
        if isinstance(v, dict):
            return _translate(v)
        if isinstance(v, list):
            return join_list(value(i) for i in v)
        return v

    args = {k: value(v) for k, v in (spec.get("args") or {}).items()}
    return gettext(spec["msgid"], **args) if args else gettext(spec["msgid"])


def stored_text(spec: Mapping | None, stored: str) -> str:
    """A stored system text in the reader's language; the stored text itself when it has no
    msgid (older rows, typed text) or its msgid no longer formats with its parameters."""
    if not spec or not isinstance(spec, Mapping) or not isinstance(spec.get("msgid"), str):
        return stored
    try:
        return _translate(spec)
    except (KeyError, TypeError, ValueError):
        return stored


# -- the command line ---------------------------------------------------------------------------

def locale_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The language for ``kb`` command output: ``KB_LOCALE``, else the POSIX locale variables.

    ``KB_LOCALE`` wins (it is also the site's default language). Otherwise the first of
    ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` that is set decides, as for other Unix
    tools: ``en…`` gives English, anything else (``zh_CN.UTF-8``, ``C``, ``POSIX``) Chinese.
    """
    env = os.environ if environ is None else environ
    explicit = (env.get("KB_LOCALE") or "").strip()
    if explicit in LANGUAGES:
        return explicit
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = (env.get(name) or "").strip()
        if value:
            first = value.split(":")[0]
            return "en" if first.lower().startswith("en") else DEFAULT_LOCALE
    return DEFAULT_LOCALE


def N_(msgid: str) -> str:
    """Mark a msgid for extraction without translating it now (stored keys translated later)."""
    return msgid
