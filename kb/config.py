"""Configuration: safe defaults, overridden by ``KB_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SECRET_KEY = "dev-insecure-change-me"

# Environment variable -> (config key, parser). Documented in README and docs/configuration.md.
_ENV_KEYS = {
    "KB_DATABASE_URL": "DATABASE_URL",
    "KB_SECRET_KEY": "SECRET_KEY",
    "KB_COURSES_DIR": "COURSES_DIR",
    "KB_QUIZZES_DIR": "QUIZZES_DIR",
    "KB_INDEX_DIR": "INDEX_DIR",
    "KB_PLUGINS": "PLUGINS",
    "KB_CREDIT_RULES": "CREDIT_RULES",
    "KB_ENV": "ENV",
    "KB_LOCALE": "BABEL_DEFAULT_LOCALE",
    "KB_TIMEZONE": "TIMEZONE",
    "KB_DEMO_PASSWORD": "DEMO_PASSWORD",
    "KB_CATALOG_TTL": "CATALOG_TTL",
    "KB_PORT": "PORT",
    "KB_PROXIES": "PROXIES",
    "KB_REDIS_URL": "REDIS_URL",
    "KB_REDIS_PREFIX": "REDIS_PREFIX",
}


def default_config(instance_path: str) -> dict:
    """Return the defaults: a demo on one machine with nothing else installed."""
    cwd = Path.cwd()
    return {
        "ENV": "development",
        "SECRET_KEY": DEFAULT_SECRET_KEY,
        "DATABASE_URL": "sqlite:///" + str(Path(instance_path) / "kb.sqlite3"),
        "COURSES_DIR": str(cwd / "courses"),
        "QUIZZES_DIR": str(cwd / "quizzes"),
        "INDEX_DIR": str(cwd / "search_index"),
        # None = every built-in plugin plus every installed external one.
        "PLUGINS": None,
        "CREDIT_RULES": None,
        "BABEL_DEFAULT_LOCALE": "zh_CN",
        "BABEL_DEFAULT_TIMEZONE": "Asia/Shanghai",
        "TIMEZONE": "Asia/Shanghai",
        "DEMO_PASSWORD": "lvzhi2026",
        # Seconds a worker trusts its in-memory lesson catalog before checking for a newer sync.
        "CATALOG_TTL": 2.0,
        "PORT": 5000,
        # How many reverse proxies (nginx) sit in front: their X-Forwarded-For/-Proto are trusted,
        # so login throttling sees the real address. 0 when the app is reached directly.
        "PROXIES": 0,
        # Rate limits (kb/ratelimit.py): kept in the database unless a Redis URL is given
        # (redis://host:6379/0); the prefix keeps deployments sharing one Redis apart.
        "REDIS_URL": None,
        "REDIS_PREFIX": "kb:",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
        "SEARCH_PER_PAGE": 10,
        "MAX_CONTENT_LENGTH": 32 * 1024 * 1024,
    }


def _parse(key: str, raw: str):
    if key == "PLUGINS":
        return [p.strip() for p in raw.split(",") if p.strip()]
    if key == "CATALOG_TTL":
        return float(raw)
    if key in ("PORT", "PROXIES"):
        return int(raw)
    return raw


def from_environ(environ: dict[str, str] | None = None) -> dict:
    """Return the settings given by ``KB_*`` environment variables."""
    environ = os.environ if environ is None else environ
    return {
        key: _parse(key, environ[name])
        for name, key in _ENV_KEYS.items()
        if environ.get(name, "").strip() != ""
    }


def sqlalchemy_url(url: str) -> str:
    """Map user-facing database URLs to the SQLAlchemy driver we ship (psycopg 3)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url
