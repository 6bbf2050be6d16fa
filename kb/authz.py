"""The one authorisation layer every view and API uses.

Every view declares who may call it with :func:`public`, :func:`login_required` or
:func:`roles_required`; ``tests/test_authz.py`` walks the URL map and fails on a route without a
declaration. Object-level scope goes through :func:`can_view_user`, :func:`can_manage_org` and
:func:`managed_org_ids`; plugins add rules for their own objects with ``kb_can_view``:

* a person sees their own records;
* chair and secretary see their township;
* county staff see every unit under their county;
* admin sees everything.
"""

from __future__ import annotations

from functools import wraps

from flask import abort, g, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import select

from .extensions import db
from .models import OrgUnit, User

STAFF_ROLES = frozenset({"county_staff", "admin"})
TOWNSHIP_MANAGER_ROLES = frozenset({"chair", "secretary"})
REPORT_ROLES = STAFF_ROLES | TOWNSHIP_MANAGER_ROLES
LEARNER_ROLES = frozenset({"deputy", "presidium", "chair", "secretary"})
# Roles each role may give to others (nobody but an admin creates admins).
ASSIGNABLE_ROLES = {
    "admin": ("deputy", "presidium", "chair", "secretary", "county_staff", "admin"),
    "county_staff": ("deputy", "presidium", "chair", "secretary", "county_staff"),
}


def _mark(view, kind: str, roles: tuple[str, ...] = ()):
    view._kb_access = (kind, roles)
    return view


def public(view):
    """Anyone may call this view (it must not show personal data)."""
    return _mark(view, "public")


def _sign_in_first():
    """Answer an anonymous request: 401 for the API, else the sign-in page that comes back."""
    if request.path.startswith("/api/"):
        abort(401)
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def login_required(view):
    """Any signed-in, active person may call this view."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return _sign_in_first()
        return view(*args, **kwargs)

    return _mark(wrapped, "login")


def roles_required(*roles: str):
    """Only signed-in people with one of ``roles`` may call this view (others get 403)."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return _sign_in_first()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return _mark(wrapped, "roles", tuple(roles))

    return decorator


def access_rule(view) -> tuple[str, tuple[str, ...]] | None:
    return getattr(view, "_kb_access", None)


# -- scope ----------------------------------------------------------------------------------

def managed_org_ids(user) -> set[int] | None:
    """Return the org units whose people ``user`` may see; None means every unit (admin)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return set()
    cache = g.setdefault("_kb_scope", {}) if _has_g() else {}
    if user.id in cache:
        return cache[user.id]
    if user.role == "admin":
        result = None
    elif user.role == "county_staff" and user.org_unit is not None:
        base = user.org_unit
        result = set(db.session.scalars(
            select(OrgUnit.id).where(OrgUnit.path.startswith(base.path))
        ))
    elif user.role in TOWNSHIP_MANAGER_ROLES and user.org_unit_id is not None:
        result = {user.org_unit_id}
    else:
        result = set()
    cache[user.id] = result
    return result


def _has_g() -> bool:
    try:
        g._get_current_object()
        return True
    except RuntimeError:
        return False


def in_scope(user, org_id: int | None) -> bool:
    ids = managed_org_ids(user)
    return ids is None or (org_id is not None and org_id in ids)


def can_view_user(viewer, target: User) -> bool:
    """A person sees themself; managers see people in their scope."""
    if viewer is None or not viewer.is_authenticated:
        return False
    return viewer.id == target.id or (viewer.role in REPORT_ROLES and in_scope(viewer, target.org_unit_id))


def can_manage_users(viewer) -> bool:
    return viewer.is_authenticated and viewer.role in STAFF_ROLES


def can_edit_user(viewer, target: User) -> bool:
    """Staff edit people in their scope; only an admin edits an admin."""
    if not can_manage_users(viewer) or not in_scope(viewer, target.org_unit_id):
        return False
    return target.role != "admin" or viewer.role == "admin"


def can_manage_org(viewer, org: OrgUnit) -> bool:
    """Admins manage every unit; county staff manage the units below their county."""
    if not viewer.is_authenticated:
        return False
    if viewer.role == "admin":
        return True
    return (viewer.role == "county_staff" and viewer.org_unit_id != org.id
            and in_scope(viewer, org.id))


def get_user_or_404(user_id: int, *, edit: bool = False) -> User:
    """Load a person the current user may see (or edit); 404 otherwise, so ids don't leak."""
    target = db.session.get(User, user_id)
    allowed = target is not None and (
        can_edit_user(current_user, target) if edit else can_view_user(current_user, target)
    )
    if not allowed:
        abort(404)
    return target


def get_org_or_404(org_id: int, *, manage: bool = False) -> OrgUnit:
    org = db.session.get(OrgUnit, org_id)
    if org is None:
        abort(404)
    if manage and not can_manage_org(current_user, org):
        abort(404)
    if not manage and not in_scope(current_user, org.id):
        abort(404)
    return org


def scoped_users(viewer):
    """Return a SELECT of the users ``viewer`` may see (for lists, reports and exports)."""
    query = select(User)
    ids = managed_org_ids(viewer)
    if ids is None:
        return query
    if viewer.role in REPORT_ROLES:
        return query.where(User.org_unit_id.in_(ids or {-1}))
    return query.where(User.id == viewer.id)


def scoped_orgs(viewer):
    query = select(OrgUnit)
    ids = managed_org_ids(viewer)
    return query if ids is None else query.where(OrgUnit.id.in_(ids or {-1}))
