"""WSGI entry point for gunicorn/waitress: ``kb.wsgi:app``."""

from .app import create_app

app = create_app()

try:  # load the segmentation dictionary once per worker, before the first request
    from .search import analysis

    analysis.warm_up()
except ImportError:  # pragma: no cover - search package missing means a broken install
    pass
