"""The core's own hook implementations, registered first and marked ``trylast``."""

from __future__ import annotations

from pathlib import Path

from flask_babel import gettext as _

from .pluginhost import hookimpl
from .records import MigrationDir, NavItem


@hookimpl(trylast=True)
def kb_nav_items(user):
    """Link everyone to the law library, and staff to the administration pages."""
    from .fragments import per_locale

    staff = bool(getattr(user, "is_authenticated", False) and user.role in ("county_staff", "admin"))
    return list(per_locale("core.nav", staff, lambda: _nav(staff)))


def _nav(staff: bool):
    items = [NavItem(key="laws", label=_("法律法规"), url=_link("laws.index", "/laws"), order=50)]
    if staff:
        items.append(NavItem(key="admin", label=_("管理"), url=_link("people.users", "/admin/users"),
                             order=900))
    return items


def _link(endpoint: str, path: str) -> str:
    """The endpoint's URL under this request's prefix; the bare path when the hook is asked
    outside a request (e.g. a plugin check from the command line)."""
    from flask import has_request_context, url_for

    return url_for(endpoint) if has_request_context() else path


@hookimpl(trylast=True)
def kb_migration_dirs():
    """Provide the core branch of the migrations."""
    return [MigrationDir(branch="core", path=Path(__file__).parent / "migrations" / "versions")]


@hookimpl(trylast=True)
def kb_can_view(user, obj):
    """Apply the core rule: a lesson limited to an audience is shown to those roles and staff."""
    audience = getattr(obj, "audience", None)
    if not audience:
        return True
    role = getattr(user, "role", None)
    if role in ("admin", "county_staff"):
        return True
    return role in audience


@hookimpl(trylast=True)
def kb_search_documents(app):
    """Make every article of the current law versions a search document (kind law_article)."""
    from sqlalchemy import select

    from .extensions import db
    from .laws.library import law_article_documents
    from .models import Law

    laws = db.session.scalars(select(Law).where(Law.is_current.is_(True))).all()
    return [doc for law in laws for doc in law_article_documents(law)]


@hookimpl(trylast=True)
def kb_personal_data(user):
    """The core's part of a person's export: the profile and the audit-log entries."""
    from .personal_data import audit_section, profile_section

    return [profile_section(user), audit_section(user)]
