"""Attendance logic: rotating check-in tokens, the check-in window, marking, closing, reports.

Everything that depends on the time asks :func:`now` (naive UTC), so tests can move the clock
with ``monkeypatch.setattr(service, "now", ...)``. Tokens are stateless HMACs of the session id
and a time slot under the app's secret key, so several app servers agree on them.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from flask_babel import gettext as _
from flask_babel import pgettext
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import and_, case, exists, func, insert, literal, select
from sqlalchemy.exc import IntegrityError

import kb
from kb.events import AttendanceMarked
from kb.extensions import db
from kb.i18n import N_
from kb.models import OrgUnit, User, report_members, utcnow
from kb.records import ReportScope

from .models import (
    ABSENT,
    ATTENDED,
    LATE,
    LEAVE,
    PRESENT,
    STATUSES,
    Enrolment,
    LeaveRequest,
    MarkLog,
    Record,
    TrainingSession,
)

DEFAULTS = {
    "ATTENDANCE_TOKEN_PERIOD": 15,        # seconds per QR token
    "ATTENDANCE_TOKEN_GRACE": 15,         # seconds the previous token is still accepted
    "ATTENDANCE_PASS_SECONDS": 180,       # a scanned token lets a person log in and check in
    "ATTENDANCE_OPEN_BEFORE": 30,         # minutes before the start check-in opens
    "ATTENDANCE_LATE_AFTER": 10,          # minutes after the start a check-in counts as late
    "ATTENDANCE_CLOSE_AFTER": 0,          # minutes after the end check-in closes
    # None: the built-in names (出席/迟到/请假/缺席) in the reader's language. A mapping such as
    # {"present": "到会"} replaces those names with the operator's words, in every language.
    "ATTENDANCE_STATUS_NAMES": None,
}
# The canonical names carried by AttendanceMarked, whatever the display names are.
EVENT_STATUS = {PRESENT: "出席", LATE: "迟到"}
# Notes the system writes into attendance_mark_log. They are stored in Chinese (the key; the
# session page hides AUTO_NOTE rows by it) and shown in the reader's language (note_text).
AUTO_NOTE = N_("签到结束，自动记为缺席")
SELF_NOTE = N_("本人签到")
ORGANISER_NOTE = N_("组织者标记")
LEAVE_NOTE = N_("批准请假")
PAPER_NOTE = N_("纸质签到表录入")
SYSTEM_NOTES = frozenset({AUTO_NOTE, SELF_NOTE, ORGANISER_NOTE, LEAVE_NOTE, PAPER_NOTE})


def now() -> datetime:
    """Return the current time, naive UTC (monkeypatched in tests)."""
    return utcnow()


def cfg(key: str):
    return current_app.config.get(key, DEFAULTS[key])


def status_name(status: str | None) -> str:
    if not status:
        return _("未签到")
    configured = cfg("ATTENDANCE_STATUS_NAMES") or {}
    if status in configured:
        return configured[status]
    if status == PRESENT:
        return pgettext("attendance status", "出席")
    if status == LATE:
        return pgettext("attendance status", "迟到")
    if status == LEAVE:
        return pgettext("attendance status", "请假")
    if status == ABSENT:
        return pgettext("attendance status", "缺席")
    return status


def note_text(note: str | None) -> str:
    """A mark-log note in the reader's language when the system wrote it; else as stored."""
    return _(note) if note in SYSTEM_NOTES else (note or "")


# -- time zone ---------------------------------------------------------------------------------

def tz() -> ZoneInfo:
    return ZoneInfo(current_app.config.get("TIMEZONE") or "Asia/Shanghai")


def to_local(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC).astimezone(tz()).replace(tzinfo=None)


def from_local(day: date, at: time) -> datetime:
    """Local date and time → naive UTC."""
    local = datetime.combine(day, at).replace(tzinfo=tz())
    return local.astimezone(UTC).replace(tzinfo=None)


def year_bounds(year: int) -> tuple[datetime, datetime]:
    return from_local(date(year, 1, 1), time()), from_local(date(year + 1, 1, 1), time())


# -- tokens ------------------------------------------------------------------------------------

def _key() -> bytes:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, b"kb.attendance.checkin", hashlib.sha256).digest()


def _mac(message: str) -> str:
    return hmac.new(_key(), message.encode(), hashlib.sha256).hexdigest()


def _epoch(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()


def current_slot() -> int:
    return int(_epoch(now()) // int(cfg("ATTENDANCE_TOKEN_PERIOD")))


def make_token(session_id: int, slot: int | None = None) -> str:
    slot = current_slot() if slot is None else slot
    return f"{slot}.{_mac(f'qr:{session_id}:{slot}')[:20]}"


def make_code(session_id: int, slot: int | None = None) -> str:
    slot = current_slot() if slot is None else slot
    return f"{int(_mac(f'code:{session_id}:{slot}'), 16) % 1_000_000:06d}"


def seconds_left() -> int:
    period = int(cfg("ATTENDANCE_TOKEN_PERIOD"))
    return max(1, int((current_slot() + 1) * period - _epoch(now())))


def _slot_fresh(slot: int) -> bool:
    """The current slot, the next (a server whose clock runs ahead) or a recent previous one."""
    period = int(cfg("ATTENDANCE_TOKEN_PERIOD"))
    current = current_slot()
    if slot > current + 1:
        return False
    return _epoch(now()) < (slot + 1) * period + int(cfg("ATTENDANCE_TOKEN_GRACE"))


def check_token(session_id: int, token: str | None) -> str:
    """Return "ok", "expired" or "invalid" for a scanned QR token."""
    slot_text, _, sig = (token or "").partition(".")
    if not slot_text.isdigit() or len(sig) != 20:
        return "invalid"
    slot = int(slot_text)
    if not hmac.compare_digest(sig, _mac(f"qr:{session_id}:{slot}")[:20]):
        return "invalid"
    return "ok" if _slot_fresh(slot) else "expired"


def check_code(session_id: int, code: str) -> bool:
    """Whether a typed 6-digit code is the current (or just previous) code of the session."""
    code = (code or "").strip()
    current = current_slot()
    return any(_slot_fresh(s) and hmac.compare_digest(code, make_code(session_id, s))
               for s in (current + 1, current, current - 1))


def _pass_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(str(current_app.config["SECRET_KEY"]), salt="kb.attendance.pass")


def make_pass(session_id: int) -> str:
    """A short-lived proof that the bearer scanned a fresh code (survives logging in)."""
    return _pass_serializer().dumps({"s": session_id, "t": int(_epoch(now()))})


def check_pass(session_id: int, value: str | None) -> str:
    try:
        data = _pass_serializer().loads(value or "")
    except BadSignature:
        return "invalid"
    if not isinstance(data, dict) or data.get("s") != session_id:
        return "invalid"
    age = _epoch(now()) - float(data.get("t", 0))
    return "ok" if -60 <= age <= int(cfg("ATTENDANCE_PASS_SECONDS")) else "expired"


def paper_code(session_id: int, user_id: int) -> str:
    """The per-person code printed on the paper sign-in sheet."""
    return f"{int(_mac(f'paper:{session_id}:{user_id}'), 16) % 1_000_000:06d}"


# -- window ------------------------------------------------------------------------------------

@dataclass
class Window:
    opens: datetime
    late_at: datetime
    closes: datetime

    def state(self, at: datetime) -> str:
        if at < self.opens:
            return "early"
        if at > self.closes:
            return "closed"
        return PRESENT if at <= self.late_at else LATE


def window(session: TrainingSession) -> Window:
    return Window(
        opens=session.starts_at - timedelta(minutes=int(cfg("ATTENDANCE_OPEN_BEFORE"))),
        late_at=session.starts_at + timedelta(minutes=int(cfg("ATTENDANCE_LATE_AFTER"))),
        closes=session.ends_at + timedelta(minutes=int(cfg("ATTENDANCE_CLOSE_AFTER"))),
    )


def is_enrolled(session: TrainingSession, user_id: int) -> bool:
    return db.session.scalar(select(Enrolment.id).where(
        Enrolment.class_id == session.class_id, Enrolment.user_id == user_id)) is not None


# -- check-in and marking ------------------------------------------------------------------------

@dataclass
class Outcome:
    ok: bool
    message: str
    status: str | None = None
    already: bool = False


def _fmt(value: datetime) -> str:
    return to_local(value).strftime("%H:%M")


def _emit(session: TrainingSession, user_id: int, status: str, at: datetime) -> None:
    if status not in ATTENDED:
        return
    kb.emit(AttendanceMarked(
        user_id=user_id, key=f"attendance:{session.id}:{user_id}", occurred_at=at,
        session_id=session.id, class_id=session.class_id, class_title=session.klass.title,
        status=EVENT_STATUS[status], hours=float(session.hours or 0)))


def device_taken_message() -> str:
    return _("这部手机已为另一位学员签到。每部手机只能为一人签到，请用本人手机扫码。")


def _already(record: Record) -> Outcome:
    return Outcome(True, _("您已于 %(t)s 签到，无需重复签到。",
                           t=_fmt(record.checked_in_at or record.updated_at)), record.status, already=True)


def check_in(session: TrainingSession, user, device_id: str | None, source: str = "qr") -> Outcome:
    """Record the person's own check-in; no record is written when anything is wrong."""
    at = now()
    if not is_enrolled(session, user.id):
        return Outcome(False, _("您不在本次培训的名单中，不能签到。如有疑问请联系组织者。"))
    state = window(session).state(at)
    if state == "early":
        return Outcome(False, _("签到尚未开始，将于 %(t)s 开始。", t=_fmt(window(session).opens)))
    if state == "closed":
        return Outcome(False, _("本次培训的签到已经结束。如确已到场，请联系组织者补录。"))
    existing = db.session.scalar(select(Record).where(
        Record.session_id == session.id, Record.user_id == user.id))
    if existing is not None and existing.status in ATTENDED:
        return _already(existing)
    if device_id:
        taken = db.session.scalar(select(Record.user_id).where(
            Record.session_id == session.id, Record.device_id == device_id, Record.user_id != user.id))
        if taken is not None:
            return Outcome(False, device_taken_message())
    try:
        if existing is None:
            db.session.add(Record(session_id=session.id, user_id=user.id, status=state, source=source,
                                  device_id=device_id, checked_in_at=at, updated_at=at,
                                  updated_by=user.id))
        else:
            old = existing.status
            existing.status, existing.source, existing.device_id = state, source, device_id
            existing.checked_in_at, existing.updated_at, existing.updated_by = at, at, user.id
            db.session.add(MarkLog(session_id=session.id, user_id=user.id, old_status=old,
                                   new_status=state, actor_id=user.id, at=at, note=SELF_NOTE))
        # In the same transaction: the record and what consumers write for it (the 学时
        # ledger) are saved together, or neither is and the person taps again.
        _emit(session, user.id, state, at)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        again = db.session.scalar(select(Record).where(
            Record.session_id == session.id, Record.user_id == user.id))
        if again is not None and again.status in ATTENDED:
            return _already(again)
        return Outcome(False, device_taken_message())
    return Outcome(True, _("签到成功（%(s)s），时间 %(t)s。", s=status_name(state), t=_fmt(at)), state)


def set_status(session: TrainingSession, user_id: int, status: str, actor_id: int | None,
               source: str = "manual", note: str = "") -> bool:
    """Set a person's status (organiser marking); log the change. Return whether it changed.

    The caller calls :func:`emit_marked`, then commits (one transaction: the records and what
    the event's consumers write for them are saved together).
    """
    if status not in STATUSES:
        raise ValueError(status)
    at = now()
    record = db.session.scalar(select(Record).where(
        Record.session_id == session.id, Record.user_id == user_id))
    old = record.status if record is not None else None
    if old == status:
        return False
    if record is None:
        record = Record(session_id=session.id, user_id=user_id, status=status, source=source)
        db.session.add(record)
    record.status, record.source, record.updated_at, record.updated_by = status, source, at, actor_id
    if status in ATTENDED and record.checked_in_at is None:
        record.checked_in_at = at
    db.session.add(MarkLog(session_id=session.id, user_id=user_id, old_status=old,
                           new_status=status, actor_id=actor_id, at=at, note=note[:200]))
    return True


def emit_marked(session: TrainingSession, user_ids, status: str) -> None:
    at = now()
    for uid in user_ids:
        _emit(session, uid, status, at)


# -- closing -------------------------------------------------------------------------------------

def close_due_sessions(class_id: int | None = None, session_id: int | None = None) -> int:
    """Mark the unmarked people of every ended session 缺席; return how many sessions closed."""
    cutoff = now() - timedelta(minutes=int(cfg("ATTENDANCE_CLOSE_AFTER")))
    query = select(TrainingSession).where(TrainingSession.closed_at.is_(None),
                                          TrainingSession.ends_at < cutoff)
    if class_id is not None:
        query = query.where(TrainingSession.class_id == class_id)
    if session_id is not None:
        query = query.where(TrainingSession.id == session_id)
    closed = 0
    for session in db.session.scalars(query).all():
        try:
            _close(session)
            db.session.commit()
            closed += 1
        except IntegrityError:  # another worker closed it at the same moment
            db.session.rollback()
    return closed


def _close(session: TrainingSession) -> None:
    at = now()
    unmarked = (Enrolment.class_id == session.class_id,
                ~exists().where(Record.session_id == session.id,
                                Record.user_id == Enrolment.user_id))
    db.session.execute(insert(MarkLog).from_select(
        ["session_id", "user_id", "new_status", "at", "note"],
        select(literal(session.id), Enrolment.user_id, literal(ABSENT), literal(at),
               literal(AUTO_NOTE)).where(*unmarked)))
    db.session.execute(insert(Record).from_select(
        ["session_id", "user_id", "status", "source", "updated_at"],
        select(literal(session.id), Enrolment.user_id, literal(ABSENT), literal("auto"),
               literal(at)).where(*unmarked)))
    session.closed_at = at


# -- leave ---------------------------------------------------------------------------------------

def decide_leave(leave: LeaveRequest, approve: bool, actor_id: int) -> None:
    """Approve (the person is marked 请假) or refuse a leave request; the caller commits."""
    leave.state = "approved" if approve else "refused"
    leave.decided_by, leave.decided_at = actor_id, now()
    if approve:
        set_status(leave.session, leave.user_id, LEAVE, actor_id, source="leave", note=LEAVE_NOTE)


# -- reports -------------------------------------------------------------------------------------

def _sum(status):
    return func.coalesce(func.sum(case((Record.status == status, 1), else_=0)), 0)


def stats_query(*group_cols):
    """Expected (enrolment × every session of the class) and each status, grouped."""
    return (select(*group_cols, func.count(TrainingSession.id).label("expected"),
                   _sum(PRESENT).label("present"), _sum(LATE).label("late"),
                   _sum(LEAVE).label("leave"), _sum(ABSENT).label("absent"))
            .select_from(Enrolment)
            .join(TrainingSession, TrainingSession.class_id == Enrolment.class_id)
            .join(User, User.id == Enrolment.user_id)
            .outerjoin(Record, and_(Record.session_id == TrainingSession.id,
                                    Record.user_id == Enrolment.user_id))
            .group_by(*group_cols))


def rate(row) -> float | None:
    expected = int(row.expected or 0)
    if not expected:
        return None
    return round((int(row.present or 0) + int(row.late or 0)) / expected, 4)


def rate_by(level: str, row_ids, year: int | None) -> dict[int, float]:
    """Attendance rate (0–1) per report row: county or township (org unit id) or person (user id).

    One SQL query; rows with no expected session are left out.
    """
    ids = tuple(row_ids)
    if not ids:
        return {}
    members = report_members(ReportScope(level=level, row_ids=ids, year=year or 0)).subquery()
    query = stats_query(members.c.row_id.label("row_id")).join(
        members, members.c.user_id == Enrolment.user_id)
    if year:
        start, end = year_bounds(int(year))
        query = query.where(TrainingSession.starts_at >= start, TrainingSession.starts_at < end)
    return {row.row_id: rate(row) for row in db.session.execute(query) if rate(row) is not None}


def session_counts(session: TrainingSession) -> dict[str, int]:
    counts = dict(db.session.execute(
        select(Record.status, func.count()).where(Record.session_id == session.id)
        .group_by(Record.status)).all())
    enrolled = db.session.scalar(select(func.count()).select_from(Enrolment)
                                 .where(Enrolment.class_id == session.class_id)) or 0
    marked = sum(counts.values())
    return {"enrolled": enrolled, **{s: counts.get(s, 0) for s in STATUSES},
            "in": counts.get(PRESENT, 0) + counts.get(LATE, 0), "unmarked": max(0, enrolled - marked)}


def session_rows(session: TrainingSession):
    """(user, org name, record or None) for everyone enrolled, ordered by township and name."""
    return db.session.execute(
        select(User, OrgUnit.name, Record)
        .join(Enrolment, Enrolment.user_id == User.id)
        .outerjoin(OrgUnit, OrgUnit.id == User.org_unit_id)
        .outerjoin(Record, and_(Record.session_id == session.id, Record.user_id == User.id))
        .where(Enrolment.class_id == session.class_id)
        .order_by(OrgUnit.name, User.name, User.id)).all()
