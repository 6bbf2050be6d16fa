"""The audit log of administrative actions (who changed what, when)."""

from __future__ import annotations

from flask import has_request_context, request
from flask_login import current_user

from .extensions import db
from .i18n import storable, stored_text
from .models import AuditLog

# The key in AuditLog.details that holds the summary's msgid and parameters.
SUMMARY_KEY = "summary_i18n"


def record(action: str, target=None, summary="", actor=None, **details) -> AuditLog:
    """Add an audit row to the session; the caller's commit makes it permanent with the change.

    Give the summary as ``_l("…%(name)s…", name=…)``: it is stored in Chinese (the record as
    written) with its msgid and parameters, and :func:`summary_text` shows it in the reader's
    language. A plain string is stored and shown as it is.
    """
    if actor is None and has_request_context() and current_user.is_authenticated:
        actor = current_user
    text, spec = storable(summary)
    if spec is not None:
        details = {**details, SUMMARY_KEY: spec}
    entry = AuditLog(
        actor_id=getattr(actor, "id", None),
        action=action,
        target_type=type(target).__name__.lower() if target is not None else "",
        target_id=getattr(target, "id", None),
        summary=text,
        details=details,
        ip=(request.remote_addr or "") if has_request_context() else "cli",
    )
    db.session.add(entry)
    return entry


def summary_text(entry: AuditLog) -> str:
    """The entry's summary in the reader's language (older rows: as stored)."""
    details = entry.details if isinstance(entry.details, dict) else {}
    return stored_text(details.get(SUMMARY_KEY), entry.summary or "")
