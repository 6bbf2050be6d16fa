"""The signed-in person as read for one request: a snapshot, not an ORM object.

Flask-Login asks for the signed-in person on nearly every request (the password-change check
reads it first), and most pages only read a few of their columns: id, name, role, the org
unit's id and path. Loading a mapped :class:`~kb.models.User` costs several times what the
SELECT itself costs (an ORM context, row processors built per execution, the identity map), so
the loader reads the person and their org unit with one prebuilt statement into a
:class:`Principal`. It is read afresh on every request, so a role change or a deactivation
still takes effect on the next page.

A :class:`Principal` has the columns of ``user`` that most requests read (``USER_COLUMNS``:
id, username, name, role, org unit, the password-change flag, active), and ``org_unit`` as an
:class:`OrgSnapshot` of every column of the unit (or None). It is read-only. Code that
changes the person, or hands them to the ORM (a relationship, ``db.session.add``), takes the
mapped object with :meth:`Principal.record`; any other attribute of ``User`` (another column, a
method such as ``check_password``, a relationship) is looked up on that record, loaded on first
use, so plugin code written against ``User`` keeps working. Equality is Flask-Login's
``UserMixin``'s: a principal equals the ``User`` with the same id.
"""

from __future__ import annotations

from flask_login import UserMixin
from sqlalchemy import bindparam, select

from .extensions import db
from .hotread import HotRead
from .models import OrgUnit, User

# What pages, scope checks and panels read on most requests. The rest (phone, card number,
# dates, and never the password or one-time-code digests) comes from the record when asked
# for: dates also cost a conversion per row on SQLite.
USER_COLUMNS = ("id", "username", "name", "role", "org_unit_id", "must_change_password", "active")
ORG_COLUMNS = tuple(c.key for c in OrgUnit.__table__.c)

def _statement():
    u, o = User.__table__, OrgUnit.__table__
    return (select(*(u.c[k] for k in USER_COLUMNS), *(o.c[k].label(f"org__{k}") for k in ORG_COLUMNS))
            .select_from(u.outerjoin(o, u.c.org_unit_id == o.c.id))
            .where(u.c.id == bindparam("id")))


_READ = HotRead(_statement)


def load(user_id: int) -> Principal | None:
    """The person with ``user_id`` and their org unit, or None: one SELECT on the request's
    database session (so it shares its transaction), on the driver's cursor (:mod:`kb.hotread`)."""
    row = _READ.first({"id": user_id})
    if row is None:
        return None
    n = len(USER_COLUMNS)
    org = OrgSnapshot(dict(zip(ORG_COLUMNS, row[n:], strict=True))) if row[n] is not None else None
    return Principal(dict(zip(USER_COLUMNS, row[:n], strict=True)), org)


class _Snapshot:
    """Column values in ``__dict__`` (plain attribute reads), read-only, with the mapped
    object's other attributes looked up on :meth:`record` when first asked for."""

    _model: type

    def record(self):
        """The mapped object in the request's session (from its identity map when loaded)."""
        return db.session.get(self._model, self.__dict__["id"])

    def __getattr__(self, name: str):
        # Only called when ``name`` is not a column value: methods and relationships of the
        # model, or the secret columns, come from the mapped object.
        if name.startswith("__") or not hasattr(self._model, name):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        record = self.record()
        if record is None:
            raise AttributeError(f"{name!r}: the {self._model.__name__} no longer exists")
        return getattr(record, name)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is read-only: change .record() instead "
                             f"(setting {name!r})")


class OrgSnapshot(_Snapshot):
    """An org unit's columns as read with the signed-in person."""

    _model = OrgUnit

    def __init__(self, values: dict):
        self.__dict__.update(values)

    def __eq__(self, other):
        if isinstance(other, OrgSnapshot | OrgUnit):
            return self.__dict__["id"] == other.id
        return NotImplemented

    def __hash__(self):
        return hash(("org_unit", self.__dict__["id"]))

    def __repr__(self) -> str:
        return f"<OrgSnapshot {self.kind} {self.name}>"


class Principal(_Snapshot, UserMixin):
    """The signed-in person for this request (see the module's docstring)."""

    _model = User

    def __init__(self, values: dict, org: OrgSnapshot | None):
        self.__dict__.update(values)
        self.__dict__["org_unit"] = org

    @property
    def is_active(self) -> bool:  # as User.is_active: Flask-Login refuses inactive accounts
        return bool(self.__dict__["active"])

    def __repr__(self) -> str:
        return f"<Principal {self.username} {self.role}>"
