"""Core tables: organisations, people, the lesson catalog and sync bookkeeping.

Plugins keep their own tables, prefixed with their short name (``quiz_``, ``attendance_``,
``progress_``); ``tests/test_migrations.py`` fails on any other table.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, date, datetime, timedelta

from flask import current_app, has_app_context
from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db

CORE_TABLES = frozenset(
    {"org_unit", "user", "course", "lesson", "kb_meta", "content_problem", "audit_log",
     "rate_counter", "import_batch", "law", "law_article"}
)

ROLES = ("deputy", "presidium", "chair", "secretary", "county_staff", "admin")
ORG_KINDS = ("province", "city", "county", "township")


def password_method() -> str:
    """Return the password hash method: scrypt, unless a test config asks for a cheaper one."""
    if has_app_context():
        return current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")
    return "scrypt"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class OrgUnit(db.Model):
    """A node of the organisation tree: province → (city) → county → township."""

    __tablename__ = "org_unit"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    code: Mapped[str | None] = mapped_column(String(32), unique=True)
    # Materialised path of ancestor ids ("/1/4/9/"), so scope checks are one LIKE query.
    path: Mapped[str] = mapped_column(String(255), default="/", index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    parent: Mapped[OrgUnit | None] = relationship(remote_side=[id])

    def record(self) -> OrgUnit:
        """Itself (as :meth:`kb.principal.OrgSnapshot.record`)."""
        return self

    def __repr__(self) -> str:
        return f"<OrgUnit {self.kind} {self.name}>"


def add_org_unit(kind: str, name: str, parent: OrgUnit | None = None,
                 code: str | None = None) -> OrgUnit:
    """Add a unit under ``parent`` with its materialised path (flushes to get the id)."""
    unit = OrgUnit(kind=kind, name=name, code=code, parent=parent, path="/")
    db.session.add(unit)
    db.session.flush()
    unit.path = (parent.path if parent else "/") + f"{unit.id}/"
    return unit


class User(UserMixin, db.Model):
    """A person with one role in exactly one organisation. Deactivated, never deleted."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20), index=True)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True)
    deputy_card_no: Mapped[str | None] = mapped_column(String(32), unique=True)
    gender: Mapped[str] = mapped_column(String(8), default="")
    ethnicity: Mapped[str] = mapped_column(String(16), default="")
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    # A one-time code (import or reset) is stored as a SHA-256 digest: codes are random and
    # short-lived, and hashing 5,000 of them with scrypt would take minutes.
    otp_hash: Mapped[str | None] = mapped_column(String(64))
    otp_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)

    org_unit: Mapped[OrgUnit | None] = relationship()

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive accounts
        return bool(self.active)

    def record(self) -> User:
        """Itself: ``current_user.record()`` is the mapped User whether ``current_user`` is this
        or the per-request snapshot :class:`kb.principal.Principal`."""
        return self

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method=password_method())

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    def issue_one_time_code(self, days: int = 7) -> str:
        """Set a fresh one-time sign-in code and return it (shown once, never stored)."""
        code = new_one_time_code()
        self.otp_hash = digest_code(code)
        self.otp_expires_at = utcnow() + timedelta(days=days)
        self.must_change_password = True
        return code

    def check_one_time_code(self, code: str) -> bool:
        if not self.otp_hash or self.otp_expires_at is None or self.otp_expires_at < utcnow():
            return False
        return hmac.compare_digest(self.otp_hash, digest_code(code))

    def __repr__(self) -> str:
        return f"<User {self.username} {self.role}>"


CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud over the phone


def new_one_time_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def digest_code(code: str) -> str:
    normalized = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(normalized.encode()).hexdigest()


class AuditLog(db.Model):
    """Who changed what, when: one row per administrative action. Never edited."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32), default="")
    target_id: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    ip: Mapped[str] = mapped_column(String(64), default="")

    actor: Mapped[User | None] = relationship()


class RateCounter(db.Model):
    """One fixed-window counter of :mod:`kb.ratelimit` (the embedded store, shared by every
    worker and app server through the database): ``hits`` in the window ending ``expires_at``."""

    __tablename__ = "rate_counter"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    # Seconds since the epoch (UTC): plain numbers compare the same on SQLite and PostgreSQL.
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class ImportBatch(db.Model):
    """An uploaded roster between preview and confirmation (so we commit what was previewed)."""

    __tablename__ = "import_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default="roster")
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    filename: Mapped[str] = mapped_column(String(255), default="")
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    committed_at: Mapped[datetime | None] = mapped_column(DateTime)


class Course(db.Model):
    """A course folder under ``courses/``: ``_course.md`` plus numbered lessons."""

    __tablename__ = "course"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    order: Mapped[int] = mapped_column(Integer, default=0)
    required_for: Mapped[list] = mapped_column(JSON, default=list)
    intro_html: Mapped[str] = mapped_column(Text, default="")
    source_path: Mapped[str] = mapped_column(String(500), default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    synced_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    lessons: Mapped[list[Lesson]] = relationship(
        back_populates="course", order_by="Lesson.position"
    )


class Lesson(db.Model):
    """One Markdown lesson; its HTML is rendered at sync time and stored, never per request."""

    __tablename__ = "lesson"
    __table_args__ = (UniqueConstraint("course_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id"), index=True)
    slug: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    minutes: Mapped[int] = mapped_column(Integer, default=10)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    audience: Mapped[list] = mapped_column(JSON, default=list)
    sources: Mapped[list] = mapped_column(JSON, default=list)
    updated: Mapped[date | None] = mapped_column(Date)
    html: Mapped[str] = mapped_column(Text, default="")
    toc: Mapped[list] = mapped_column(JSON, default=list)
    sections: Mapped[list] = mapped_column(JSON, default=list)
    links: Mapped[list] = mapped_column(JSON, default=list)
    source_path: Mapped[str] = mapped_column(String(500), default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    synced_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    course: Mapped[Course] = relationship(back_populates="lessons")


class KbMeta(db.Model):
    """Small key/value facts about the deployment (catalog version, last sync)."""

    __tablename__ = "kb_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")


class ContentProblem(db.Model):
    """A problem found in a content file by the last sync (shown to admins, printed by the CLI)."""

    __tablename__ = "content_problem"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(500))
    line: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text)  # in Chinese, the source language
    # {"msgid", "args"} of the message (kb.i18n.storable), to show it in the reader's language
    message_i18n: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    severity: Mapped[str] = mapped_column(String(10), default="error")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Law(db.Model):
    """One version of a law text. A newer version of the same law keeps the old one, superseded."""

    __tablename__ = "law"
    __table_args__ = (UniqueConstraint("slug", "version_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), index=True)  # the short title, e.g. 地方组织法
    title: Mapped[str] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(100), default="")
    version_date: Mapped[date | None] = mapped_column(Date)
    history: Mapped[list] = mapped_column(JSON, default=list)
    preamble: Mapped[list] = mapped_column(JSON, default=list)
    chapters: Mapped[list] = mapped_column(JSON, default=list)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    source_name: Mapped[str] = mapped_column(String(500), default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    imported_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    articles: Mapped[list[LawArticle]] = relationship(
        back_populates="law", order_by="LawArticle.position", cascade="all, delete-orphan"
    )


class LawArticle(db.Model):
    """An article (第X条) of one law version, with a stable anchor (its label)."""

    __tablename__ = "law_article"
    __table_args__ = (UniqueConstraint("law_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    law_id: Mapped[int] = mapped_column(ForeignKey("law.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[str] = mapped_column(String(32))
    chapter: Mapped[str] = mapped_column(String(200), default="")
    section: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text, default="")

    law: Mapped[Law] = relationship(back_populates="articles")


def report_members(scope):
    """Select ``(user_id, row_id)``: each person and the report row of ``scope`` they count in.

    Person rows map to themselves, township rows to the people of that unit, county rows to the
    people of the county's townships. Everyone is included (active or not, any role): the caller
    filters what its figure needs. Join it to a plugin's own table to aggregate per row in SQL.
    """
    from sqlalchemy import select

    ids = tuple(scope.row_ids) or (-1,)
    if scope.level == "person":
        return select(User.id.label("user_id"), User.id.label("row_id")).where(User.id.in_(ids))
    if scope.level == "township":
        return select(User.id.label("user_id"), User.org_unit_id.label("row_id")).where(
            User.org_unit_id.in_(ids))
    if scope.level == "county":
        return (select(User.id.label("user_id"), OrgUnit.parent_id.label("row_id"))
                .join(OrgUnit, OrgUnit.id == User.org_unit_id)
                .where(OrgUnit.parent_id.in_(ids), OrgUnit.kind == "township"))
    raise ValueError(f"unknown report level {scope.level!r}")
