"""Tables of the attendance plugin (prefix ``attendance_``). Times are naive UTC."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kb.extensions import db
from kb.models import OrgUnit, User, utcnow

# Stored status keys; display names come from config ATTENDANCE_STATUS_NAMES.
PRESENT, LATE, LEAVE, ABSENT = "present", "late", "leave", "absent"
STATUSES = (PRESENT, LATE, LEAVE, ABSENT)
ATTENDED = (PRESENT, LATE)


class TrainingClass(db.Model):
    """A training class (培训班) organised by a county or a township."""

    __tablename__ = "attendance_class"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    org_unit: Mapped[OrgUnit] = relationship()
    sessions: Mapped[list[TrainingSession]] = relationship(
        back_populates="klass", order_by="TrainingSession.starts_at")


class TrainingSession(db.Model):
    """One session of a class: when, where and how many 学时 it is worth."""

    __tablename__ = "attendance_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("attendance_class.id"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    starts_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    place: Mapped[str] = mapped_column(String(200), default="")
    hours: Mapped[float] = mapped_column(Float, default=0.0)
    # Set once the unmarked people were recorded absent after the end.
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)

    klass: Mapped[TrainingClass] = relationship(back_populates="sessions")


class Enrolment(db.Model):
    """A person expected at every session of a class."""

    __tablename__ = "attendance_enrolment"
    __table_args__ = (UniqueConstraint("class_id", "user_id", name="uq_attendance_enrolment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("attendance_class.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    user: Mapped[User] = relationship()


class Record(db.Model):
    """A person's status at a session; one per (session, person) and per (session, phone)."""

    __tablename__ = "attendance_record"
    __table_args__ = (
        UniqueConstraint("session_id", "user_id", name="uq_attendance_record_user"),
        UniqueConstraint("session_id", "device_id", name="uq_attendance_record_device"),
        Index("ix_attendance_record_user_status", "user_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("attendance_session.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    status: Mapped[str] = mapped_column(String(16))
    # qr | code | manual | paper | leave | auto
    source: Mapped[str] = mapped_column(String(16), default="manual")
    device_id: Mapped[str | None] = mapped_column(String(64))
    checked_in_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    user: Mapped[User] = relationship(foreign_keys=[user_id])


class LeaveRequest(db.Model):
    """A request for leave (请假) sent before a session, decided by the organiser."""

    __tablename__ = "attendance_leave"
    __table_args__ = (UniqueConstraint("session_id", "user_id", name="uq_attendance_leave"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("attendance_session.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|approved|refused
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    session: Mapped[TrainingSession] = relationship()


class MarkLog(db.Model):
    """Every status change made by an organiser (or by the system), never edited."""

    __tablename__ = "attendance_mark_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("attendance_session.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    old_status: Mapped[str | None] = mapped_column(String(16))
    new_status: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    note: Mapped[str] = mapped_column(String(200), default="")
