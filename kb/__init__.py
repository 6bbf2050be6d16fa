"""履职学堂 (kb): training and knowledge base for township People's Congress cadres.

The public API for plugins: :func:`create_app`, :data:`hookimpl`, :data:`db`, :func:`emit`,
:func:`get_catalog`, :func:`search_index`, and the records in :mod:`kb.records` and events in
:mod:`kb.events`.
"""

from __future__ import annotations

from flask import current_app

from .extensions import db
from .pluginhost import hookimpl

__all__ = ["create_app", "hookimpl", "db", "emit", "get_catalog", "search_index", "plugin_manager"]


def create_app(test_config=None):
    """Create the app (see :func:`kb.app.create_app`)."""
    from .app import create_app as _create_app

    return _create_app(test_config)


def plugin_manager(app=None):
    """Return the app's pluggy PluginManager."""
    return (app or current_app).extensions["kb.pm"]


def emit(event, app=None) -> None:
    """Send an event from :mod:`kb.events` to every plugin's ``kb_track_event``."""
    plugin_manager(app).hook.kb_track_event(event=event)


def get_catalog(app=None):
    """Return the worker's in-memory lesson catalog (:class:`kb.catalog.Catalog`)."""
    return (app or current_app).extensions["kb.catalog"].get()


def search_index(app=None):
    """Return the worker's long-lived :class:`kb.search.SearchIndex`."""
    from .searching import get_index

    return get_index(app or current_app)
