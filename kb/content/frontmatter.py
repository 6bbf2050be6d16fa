"""YAML front matter: split it off, parse it, validate the fields with line numbers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import yaml
from flask_babel import lazy_gettext as _l

from ..models import ROLES


@dataclass
class FieldError:
    line: int
    message: str  # usually an _l() text: shown in the reader's language, stored with its msgid
    fatal: bool = False


@dataclass
class FrontMatter:
    data: dict[str, Any]
    body: str
    body_line: int  # 1-based line number of the first body line in the file
    errors: list[FieldError] = field(default_factory=list)

    @property
    def fatal(self) -> bool:
        return any(e.fatal for e in self.errors)


def split(text: str) -> FrontMatter:
    """Split ``---`` delimited YAML front matter from the body and parse it."""
    if not text.strip():
        return FrontMatter({}, "", 1, [FieldError(1, _l("文件是空的"), fatal=True)])
    if not text.startswith("---"):
        return FrontMatter(
            {}, text, 1, [FieldError(1, _l("缺少文件头（文件必须以 --- 开头）"), True)]
        )
    lines = text.split("\n")
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
    if end is None:
        return FrontMatter(
            {}, text, 1, [FieldError(1, _l("文件头没有以单独一行 --- 结束"), True)]
        )
    raw = "\n".join(lines[1:end])
    body = "\n".join(lines[end + 1 :])
    try:
        data = yaml.safe_load(raw) if raw.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return FrontMatter({}, body, end + 2, [FieldError(line, _l("文件头不是有效的 YAML：%(problem)s", problem=str(problem)), True)])
    if not isinstance(data, dict):
        return FrontMatter({}, body, end + 2, [FieldError(2, _l("文件头必须是“字段: 值”的形式"), True)])
    fm = FrontMatter(data, body, end + 2)
    fm.key_lines = _key_lines(lines[1:end])
    return fm


def _key_lines(lines: list[str]) -> dict[str, int]:
    out = {}
    for i, line in enumerate(lines):
        if line and not line[0].isspace() and ":" in line and not line.startswith("#"):
            out.setdefault(line.split(":", 1)[0].strip(), i + 2)
    return out


def _as_list(value) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.replace("，", ",").split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    return None


LESSON_FIELDS = {"title", "summary", "minutes", "tags", "audience", "sources", "updated"}
COURSE_FIELDS = {"title", "summary", "order", "required_for"}


def validate(fm: FrontMatter, kind: str) -> dict[str, Any]:
    """Check fields of a ``lesson`` or ``course`` and return clean values; errors go to ``fm``."""
    allowed = LESSON_FIELDS if kind == "lesson" else COURSE_FIELDS
    lines = getattr(fm, "key_lines", {})
    data = fm.data
    clean: dict[str, Any] = {}

    def err(key, message, fatal=False):
        fm.errors.append(FieldError(lines.get(key, 1), message, fatal))

    for key in data:
        if key not in allowed:
            err(key, _l("未知字段 %(field)s（可用字段：%(allowed)s）", field=repr(key),
                       allowed=", ".join(sorted(allowed))))

    title = data.get("title")
    if title is None or not str(title).strip():
        err("title", _l("缺少标题（title）"), fatal=True)
    else:
        clean["title"] = str(title).strip()
    clean["summary"] = str(data.get("summary") or "").strip()

    if kind == "lesson":
        minutes = data.get("minutes", 10)
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 600:
            err("minutes", _l("minutes 必须是 1 到 600 的整数，不能是 %(value)s", value=repr(minutes)))
            minutes = 10
        clean["minutes"] = minutes
        for key in ("tags", "sources"):
            value = _as_list(data.get(key))
            if value is None:
                err(key, _l("%(field)s 必须是文字列表", field=key))
                value = []
            clean[key] = value
        clean["audience"] = _roles(data.get("audience"), "audience", err)
        updated = data.get("updated")
        if updated is not None and not isinstance(updated, dt.date):
            try:
                updated = dt.date.fromisoformat(str(updated))
            except ValueError:
                err("updated", _l("updated 必须是形如 2026-11-01 的日期，不能是 %(value)s", value=repr(updated)))
                updated = None
        if isinstance(updated, dt.datetime):
            updated = updated.date()
        clean["updated"] = updated
    else:
        order = data.get("order", 0)
        if isinstance(order, bool) or not isinstance(order, int):
            err("order", _l("order 必须是整数，不能是 %(value)s", value=repr(order)))
            order = 0
        clean["order"] = order
        clean["required_for"] = _roles(data.get("required_for"), "required_for", err)
    return clean


def _roles(value, key, err) -> list[str]:
    roles = _as_list(value)
    if roles is None:
        err(key, _l("%(field)s 必须是角色列表", field=key))
        return []
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        err(key, _l("%(field)s 中有未知角色：%(unknown)s（可用角色：%(roles)s）", field=key,
                     unknown=", ".join(unknown), roles=", ".join(ROLES)))
    return [r for r in roles if r in ROLES]
