"""The core's own hook implementations, registered first and marked ``trylast``."""

from __future__ import annotations

from pathlib import Path

from flask_babel import gettext as _

from .pluginhost import hookimpl
from .records import MigrationDir, NavItem


@hookimpl(trylast=True)
def kb_nav_items(user):
    """Link staff to the administration pages."""
    if getattr(user, "is_authenticated", False) and user.role in ("county_staff", "admin"):
        return [NavItem(key="admin", label=_("管理"), url="/admin/users", order=900)]
    return []


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
