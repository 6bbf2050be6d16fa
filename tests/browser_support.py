"""Helpers for the browser tests: a live server in a thread and Debian's Chromium.

A downloaded Playwright browser cannot be had on these machines, so the tests drive
``/usr/bin/chromium`` (Debian's package). Without it the browser tests are skipped, except when
``CI`` is set: CI must run them, so there they fail.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("KB_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PHONE = {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True, "locale": "zh-CN"}


def require_chromium() -> None:
    """Skip (or, under CI, fail) when Chromium or the Playwright package is missing."""
    problem = None
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        problem = (f"Chromium not found at {CHROMIUM}: install Debian's chromium package "
                   "(apt-get install chromium) to run the browser tests")
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem + " (CI must run the browser tests)", pytrace=False)
        pytest.skip(problem)


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=CHROMIUM_ARGS)


class LiveServer:
    """Serve a WSGI app on 127.0.0.1 (a free port) from a background thread."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="kb-live-server", daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def build_synced_app(config: dict):
    """The app for ``config`` with its database created and the courses synced and indexed."""
    from kb import create_app, dbmigrate
    from kb.cli import run_sync

    app = create_app(config)
    with app.app_context():
        dbmigrate.upgrade(app)
    run_sync(app)
    return app


def dispose(app) -> None:
    with app.app_context():
        from kb.extensions import db

        db.session.remove()
        db.engine.dispose()
