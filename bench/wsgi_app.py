"""The kb app with a benchmark-only plugin, for ``gunicorn bench.wsgi_app:app``.

Configured like ``kb.wsgi`` through the ``KB_*`` environment variables (and
``KB_BENCH_PLUGINS``, see ``bench.kb_entry``). The ``bench`` plugin adds
``GET /_bench/raw/<name>``: it answers with the bytes and content type stored in
``$KB_BENCH_RAW_DIR/<name>.body`` and ``<name>.type`` (a page captured from this same server),
read once per worker and kept in memory. It goes through the same app, middleware and
``after_request`` handlers as every other route, so the lesson page's requests/s against it
measures what building the page costs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flask import Blueprint, Response, abort

import kb
from kb import create_app

from .kb_entry import plugin_overrides

_NAME = re.compile(r"[a-z0-9_-]{1,40}")


class BenchPlugin:
    """A pluggy plugin registered through ``TEST_PLUGINS``."""

    def __init__(self, raw_dir: str | os.PathLike | None = None):
        self.raw_dir = Path(raw_dir or os.environ.get("KB_BENCH_RAW_DIR") or ".")
        self._cache: dict[str, tuple[bytes, str]] = {}

    @kb.hookimpl
    def kb_blueprints(self, app):
        bp = Blueprint("bench", __name__, url_prefix="/_bench")

        @bp.get("/raw/<name>")
        def raw(name):
            hit = self._cache.get(name)
            if hit is None:
                if not _NAME.fullmatch(name):
                    abort(404)
                try:
                    body = (self.raw_dir / f"{name}.body").read_bytes()
                    ctype = (self.raw_dir / f"{name}.type").read_text(encoding="utf-8").strip()
                except FileNotFoundError:
                    abort(404)
                hit = self._cache[name] = (body, ctype)
            return Response(hit[0], content_type=hit[1])

        return [bp]


app = create_app({**plugin_overrides(), "TEST_PLUGINS": [("bench", BenchPlugin())]})

try:  # like kb.wsgi: load the segmentation dictionary before the first request
    from kb.search import analysis

    analysis.warm_up()
except ImportError:  # pragma: no cover
    pass
