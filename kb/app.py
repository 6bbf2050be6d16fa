"""The application factory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, current_app, g, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import config as kb_config
from . import i18n
from .catalog import CatalogCache
from .extensions import babel, csrf, db, login_manager
from .pluginhost import call_each, collect, make_plugin_manager

log = logging.getLogger(__name__)

LANGUAGES = i18n.LANGUAGES


class ConfigurationError(RuntimeError):
    """The configuration is unsafe or inconsistent; the app refuses to start."""


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """Use WAL and foreign keys on every SQLite connection. The busy timeout (how long a
    writer waits for another one before "database is locked", answered 503) is the
    connection's ``timeout``: 10 s, ``SQLALCHEMY_ENGINE_OPTIONS["connect_args"]`` to change."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


def _select_locale():
    if not has_request_context():
        # The `kb` command line sets CLI_LOCALE (kb.i18n.locale_from_env); None falls back to
        # BABEL_DEFAULT_LOCALE (KB_LOCALE, zh_CN unless set).
        return current_app.config.get("CLI_LOCALE")
    lang = session.get("lang")
    if lang in LANGUAGES:
        return lang
    return None  # Flask-Babel falls back to BABEL_DEFAULT_LOCALE (zh_CN)


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing serializer made once per secret key
    (and fallbacks) instead of on every request and every cookie written. The serializer holds
    no per-request state, so threads can share it; a changed ``SECRET_KEY`` or
    ``SECRET_KEY_FALLBACKS`` makes a new one."""

    _made: tuple | None = None

    def get_signing_serializer(self, app: Flask):
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        made = self._made
        if made is None or made[0] != keys:
            made = self._made = (keys, super().get_signing_serializer(app))
        return made[1]


def create_app(test_config: dict | None = None) -> Flask:
    """Create and configure an app; ``test_config`` overrides environment and defaults."""
    instance = os.environ.get("KB_INSTANCE_DIR") or (test_config or {}).get("INSTANCE_DIR")
    app = Flask("kb", instance_path=str(Path(instance).resolve()) if instance else None,
                instance_relative_config=True)
    settings = kb_config.default_config(app.instance_path)
    settings.update(kb_config.from_environ())
    if test_config:
        settings.update(test_config)
    app.config.from_mapping(settings)
    _check_config(app)
    app.session_interface = CookieSessions()
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    url = kb_config.sqlalchemy_url(app.config["DATABASE_URL"])
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    engine_options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if url.startswith("sqlite"):
        engine_options.setdefault("connect_args", {"timeout": 10})
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    else:
        engine_options.setdefault("pool_pre_ping", True)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options
    if app.config["ENV"] == "production":
        # Production is served over HTTPS (docs/deploy.md); KB_COOKIE_SECURE=0 only behind a
        # proxy that terminates TLS and forwards plain HTTP on a trusted network.
        secure = os.environ.get("KB_COOKIE_SECURE", "1") != "0"
        app.config["SESSION_COOKIE_SECURE"] = settings.get("SESSION_COOKIE_SECURE", secure)
        app.config["REMEMBER_COOKIE_SECURE"] = settings.get("REMEMBER_COOKIE_SECURE", secure)

    if int(app.config["PROXIES"]) > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = int(app.config["PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    db.init_app(app)
    _close_sessions_safely(app)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    babel.init_app(app, locale_selector=_select_locale,
                   default_translation_directories=str(Path(__file__).parent / "translations"))

    pm = make_plugin_manager(app.config["PLUGINS"], extra=list(app.config.get("TEST_PLUGINS", ())))
    app.extensions["kb.pm"] = pm
    app.extensions["kb.catalog"] = CatalogCache(float(app.config["CATALOG_TTL"]))

    from . import auth, views
    from .api import bp as api_bp
    from .laws.views import bp as laws_bp
    from .people.admin import bp as people_bp

    for bp in (views.bp, auth.bp, api_bp, people_bp, laws_bp):
        app.register_blueprint(bp)
    for bp in collect(pm, "kb_blueprints", key="name", app=app):
        if bp.name in app.blueprints:
            raise ConfigurationError(f"a plugin blueprint is named {bp.name!r}, which the core uses")
        app.register_blueprint(bp)

    _template_helpers(app)
    _security_headers(app)
    views.register_error_handlers(app)
    pm.hook.kb_init_app(app=app)
    return app


def discard_session() -> None:
    """End the request's database session after a database error, never raising.

    When the connection broke (the database restarted or crashed), rolling back on it fails
    again; the session is then invalidated instead: its connection is dropped, not returned
    to the pool, and the pool connects afresh for the next request.
    """
    from sqlalchemy.exc import SQLAlchemyError

    if not db.session.registry.has():
        return
    try:
        db.session.close()
    except SQLAlchemyError:
        try:
            db.session().invalidate()
        except SQLAlchemyError:
            log.debug("session invalidate failed", exc_info=True)
            db.session.registry.clear()  # forget it: nothing is left to close at teardown


def _close_sessions_safely(app: Flask) -> None:
    """Close each request's session before Flask-SQLAlchemy's teardown does (teardowns run
    in reverse order), so a connection lost during the request ends in the 503 page
    (kb/views.py) rather than an exception after the response was made (a bare 500)."""
    app.teardown_appcontext(lambda _exc: discard_session())


def _check_config(app: Flask) -> None:
    if app.config["ENV"] == "production" and (
        not app.config["SECRET_KEY"] or app.config["SECRET_KEY"] == kb_config.DEFAULT_SECRET_KEY
    ):
        raise ConfigurationError(
            "KB_ENV=production needs KB_SECRET_KEY set to a long random value "
            "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
        )


def _template_helpers(app: Flask) -> None:
    pm = app.extensions["kb.pm"]

    def slot(hook_name: str, **kwargs):
        """Fill a template slot from a hook, sorted by each record's order."""
        records = collect(pm, hook_name, **kwargs)
        return sorted(records, key=lambda r: (getattr(r, "order", 100), getattr(r, "key", "")))

    def continue_learning(user):
        return pm.hook.kb_continue_learning(user=user)

    def page_assets():
        endpoint = request.endpoint or ""
        assets = [a for _, result in call_each(pm, "kb_page_assets", endpoint=endpoint,
                                               user=current_user._get_current_object()) for a in result]
        seen, out = set(), []
        for a in assets:
            if a.url not in seen:
                seen.add(a.url)
                out.append(a)
        return out

    from flask_babel import get_locale, get_translations

    def translations():
        """Flask-Babel's translations for this request, looked up once per request.

        Flask-Babel resolves the domain, the locale and its cache on every ``_()`` in a
        template; a page has about twenty. Kept in ``g`` with the locale object it was found
        for, so ``flask_babel.refresh()`` (which drops that locale) still takes effect.
        """
        try:
            ctx_g = g._get_current_object()  # one context lookup, not one per attribute
        except RuntimeError:  # no app context: Flask-Babel answers with null translations
            return get_translations()
        locale = getattr(getattr(ctx_g, "_flask_babel", None), "babel_locale", None)
        hit = getattr(ctx_g, "_kb_translations", None)
        if hit is not None and locale is not None and hit[0] is locale:
            return hit[1]
        found = get_translations()
        ctx_g._kb_translations = (getattr(getattr(ctx_g, "_flask_babel", None), "babel_locale", None),
                                  found)
        return found

    app.jinja_env.install_gettext_callables(
        gettext=lambda s: translations().ugettext(s),
        ngettext=lambda s, p, n: translations().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: translations().unpgettext(c, s, p, n),
    )

    static_urls: dict = {}

    def fixed_url(endpoint: str, **values) -> str:
        """``url_for`` for the page chrome's fixed links (no request-dependent arguments),
        built once per worker and URL prefix (``SCRIPT_NAME``)."""
        key = (request.script_root, endpoint, tuple(sorted(values.items())))
        url = static_urls.get(key)
        if url is None:
            from flask import url_for

            url = static_urls[key] = url_for(endpoint, **values)
        return url

    class ScriptTexts(dict):
        """language -> the ``data-msg-*`` attributes of kb.js's script tag (its texts, from the
        catalogue), built on first use in a request of that language: base.html is on every
        page, and a dict lookup costs less there than three gettext calls."""

        def __missing__(self, lang):
            from flask_babel import gettext
            from markupsafe import Markup

            attrs = self[lang] = Markup(
                ' data-msg-close="{}" data-msg-open-law="{}" data-msg-version="{}"').format(
                gettext("关闭"), gettext("查看全文"), i18n.parens("{date}"))
            return attrs

    app.jinja_env.filters["dict_without"] = lambda d, *keys: {k: v for k, v in d.items() if k not in keys}
    # Punctuation in the reader's language: {{ _('姓名')|colon }}, {{ _('已停用')|parens }}, names|join_list.
    app.jinja_env.filters.update(colon=i18n.colon, parens=i18n.parens, join_list=i18n.join_list)
    from .audit import summary_text

    app.jinja_env.filters["audit_summary"] = summary_text
    app.jinja_env.globals.update(slot=slot, continue_learning=continue_learning,
                                 page_assets=page_assets, LANGUAGES=LANGUAGES,
                                 get_locale=get_locale, fixed_url=fixed_url,
                                 kb_js_texts=ScriptTexts())


CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def _security_headers(app: Flask) -> None:
    @app.after_request
    def add_headers(response):
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        # Signed-in pages are personal: never stored by shared caches. Read the session, not
        # current_user, so this works even when the database is down.
        if getattr(g, "_kb_private", False) or "_user_id" in session:
            h.setdefault("Cache-Control", "private, no-store")
        return response
