"""One person's data export (个人信息): for access and copy requests under the PIPL.

The core and every plugin return :class:`kb.records.PersonalSection` records from the
``kb_personal_data`` hook; this module collects them, turns their values into plain text and
numbers, and writes them as JSON or as an .xlsx with one sheet per section.

What the core contributes (see docs/deploy.md, "privacy requests"):

* the profile: every stored field of the account except the password hash and the one-time code
  digest (secrets, not information about the person);
* audit-log entries about the person (``target`` is their account) and by the person. An entry
  about them shows who acted (the staff member's name, an actor label) and its summary; an
  entry they made about something else shows the time, action and kind of object only, not the
  summary, which may name other people. The address is shown only for entries the person made.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import or_, select

from .extensions import db
from .models import AuditLog, User, utcnow
from .pluginhost import PluginError, call_each
from .records import PersonalSection

FORMAT = "kb-personal-data/1"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_SCALARS = (str, int, float, type(None))


def _tz() -> ZoneInfo:
    return ZoneInfo(current_app.config.get("TIMEZONE") or "Asia/Shanghai")


def plain(value):
    """A value as the export writes it: text, a number or None; times in local time."""
    if isinstance(value, bool):
        return _("是") if value else _("否")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(_tz()).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, _SCALARS):
        return value
    return str(value)


def contributions(pm, user) -> list[tuple[str, PersonalSection]]:
    """Every (plugin name, section) for ``user``, checked and in display order.

    :raises PluginError: on a key two plugins return, a record that is not a section, or a row
        whose length differs from the section's columns (naming the plugin).
    """
    seen: dict[str, str] = {}
    out = []
    for plugin, result in call_each(pm, "kb_personal_data", user=user):
        for section in result:
            if not isinstance(section, PersonalSection):
                raise PluginError(f"kb_personal_data: {plugin!r} returned {section!r}, "
                                  "not a kb.records.PersonalSection")
            if section.key in seen:
                raise PluginError(f"kb_personal_data: {section.key!r} registered by both "
                                  f"{seen[section.key]!r} and {plugin!r}")
            for row in section.rows:
                if len(row) != len(section.columns):
                    raise PluginError(f"kb_personal_data: a row of {section.key!r} ({plugin!r}) has "
                                      f"{len(row)} values for {len(section.columns)} columns")
            seen[section.key] = plugin
            out.append((plugin, section))
    out.sort(key=lambda pair: (pair[1].order, pair[1].key))
    return out


def sections(pm, user) -> list[dict]:
    """The export as plain data: ``[{key, title, columns, rows}]`` with plain values."""
    return [{"key": s.key, "title": str(s.title), "columns": [str(c) for c in s.columns],
             "rows": [[plain(v) for v in row] for row in s.rows]}
            for _plugin, s in contributions(pm, user)]


def document(pm, user) -> dict:
    """The whole export: what it is, whose, when, and the sections."""
    return {
        "format": FORMAT,
        "generated_at": plain(utcnow()),
        "timezone": str(_tz()),
        "person": {"id": user.id, "username": user.username, "name": user.name},
        "sections": sections(pm, user),
    }


def to_json(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")


def to_xlsx(doc: dict) -> bytes:
    """One sheet per section, headers in the reader's language (text neutralised, see exports)."""
    from .exports import workbook_bytes

    return workbook_bytes((s["title"], s["columns"], s["rows"]) for s in doc["sections"])


def filename(user, fmt: str) -> str:
    return f"personal-data-{user.id}-{utcnow():%Y%m%d}.{fmt}"


# -- the core's sections ------------------------------------------------------------------------

def profile_section(user: User) -> PersonalSection:
    from .people.admin import role_label
    from .people.roster import GENDER_LABELS

    org = user.org_unit
    path = []
    while org is not None:
        path.append(org.name)
        org = org.parent
    fields = [
        (_("用户名"), user.username),
        (_("姓名"), user.name),
        (_("角色"), role_label(user.role)),
        (_("所在单位"), " / ".join(reversed(path))),
        (_("手机号"), user.phone),
        (_("代表证号"), user.deputy_card_no),
        (_("性别"), str(GENDER_LABELS.get(user.gender, user.gender or ""))),
        (_("民族"), user.ethnicity),
        (_("账号有效"), bool(user.active)),
        (_("须修改密码"), bool(user.must_change_password)),
        (_("一次性登录码有效期至"), user.otp_expires_at if user.otp_hash else None),
        (_("建立时间"), user.created_at),
        (_("最近登录"), user.last_login_at),
    ]
    return PersonalSection(key="core.profile", title=_("个人资料"), columns=(_("项目"), _("内容")),
                           rows=tuple(fields), tables=("user",), order=0)


def audit_section(user: User) -> PersonalSection:
    from .audit import summary_text

    about = (AuditLog.target_type == "user") & (AuditLog.target_id == user.id)
    entries = db.session.scalars(select(AuditLog).where(or_(about, AuditLog.actor_id == user.id))
                                 .order_by(AuditLog.at, AuditLog.id)).all()
    actors = {u.id: u.name for u in db.session.scalars(
        select(User).where(User.id.in_({e.actor_id for e in entries if e.actor_id} or {-1})))}
    rows = []
    for e in entries:
        on_self = e.target_type == "user" and e.target_id == user.id
        by_self = e.actor_id == user.id
        actor = actors.get(e.actor_id, "") if e.actor_id else _("系统")
        rows.append((
            e.at,
            e.action,
            _("关于本人") if on_self else _("本人的操作"),
            actor,
            e.target_type,
            summary_text(e) if on_self else "",
            e.ip if by_self else "",
        ))
    return PersonalSection(
        key="core.audit", title=_("操作记录"),
        columns=(_("时间"), _("操作"), _("关系"), _("操作人"), _("对象类型"), _("说明"), _("IP 地址")),
        rows=tuple(rows), tables=("audit_log",), order=900)


def actor_names(ids) -> dict[int, str]:
    """Names of the people who acted on someone's records (an actor label, see the hookspec)."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return dict(db.session.execute(select(User.id, User.name).where(User.id.in_(wanted))).all())
