"""Tables of the progress plugin (prefix ``progress_``).

* ``progress_lesson``: one row per person and lesson (upserted by heartbeats);
* ``progress_ledger``: the 学时 ledger, append-only; ``event_key`` is unique so an event seen twice
  is recorded once;
* ``progress_claim``: offline claims (学时申报) waiting for county staff;
* ``progress_required``: courses a county requires of a role in a year;
* ``progress_notice``: in-app reminders (站内提醒);
* ``progress_user_year`` and ``progress_course_done``: totals derived from the ledger and the
  lesson rows, updated in the same transaction, so reports never scan the big tables
  (``kb progress-rebuild`` recomputes them).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from kb import db
from kb.models import utcnow


class LessonProgress(db.Model):
    __tablename__ = "progress_lesson"
    __table_args__ = (
        UniqueConstraint("user_id", "lesson_id"),
        Index("ix_progress_lesson_user_course", "user_id", "course_slug", "completed_at"),
        Index("ix_progress_lesson_user_updated", "user_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    lesson_id: Mapped[int] = mapped_column(Integer)
    course_slug: Mapped[str] = mapped_column(String(100))
    lesson_slug: Mapped[str] = mapped_column(String(100))
    seconds: Mapped[int] = mapped_column(Integer, default=0)
    max_scroll: Mapped[float] = mapped_column(Float, default=0.0)
    last_scroll: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Server time of the last accepted heartbeat: study time is measured from it.
    last_beat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)


class LedgerEntry(db.Model):
    __tablename__ = "progress_ledger"
    __table_args__ = (Index("ix_progress_ledger_user_year", "user_id", "year"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    year: Mapped[int] = mapped_column(Integer)
    hours: Mapped[float] = mapped_column(Float)
    # lesson | quiz | attendance | claim | correction
    source: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200), default="")
    event_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    note: Mapped[str] = mapped_column(Text, default="")
    occurred_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("progress_ledger.id"))


class Claim(db.Model):
    __tablename__ = "progress_claim"
    __table_args__ = (Index("ix_progress_claim_org_status", "org_unit_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    title: Mapped[str] = mapped_column(String(200))
    hours: Mapped[float] = mapped_column(Float)
    held_on: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|approved|rejected
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    decision_note: Mapped[str] = mapped_column(Text, default="")


class RequiredCourse(db.Model):
    __tablename__ = "progress_required"
    __table_args__ = (UniqueConstraint("county_id", "year", "course_slug", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    county_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    year: Mapped[int] = mapped_column(Integer)
    course_slug: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    due_on: Mapped[date] = mapped_column(Date)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Notice(db.Model):
    __tablename__ = "progress_notice"
    __table_args__ = (Index("ix_progress_notice_user_read", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(DateTime)


class UserYear(db.Model):
    """Derived: 学时 per person and year, kept in step with the ledger (reports read this)."""

    __tablename__ = "progress_user_year"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    hours: Mapped[float] = mapped_column(Float, default=0.0)


class CourseDone(db.Model):
    """Derived: completed lessons per person and course (reports read this for required courses)."""

    __tablename__ = "progress_course_done"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)
    course_slug: Mapped[str] = mapped_column(String(100), primary_key=True)
    lessons: Mapped[int] = mapped_column(Integer, default=0)
