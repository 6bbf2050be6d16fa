"""Events plugins emit and others consume through ``kb_track_event``.

No plugin imports another: the quizzes plugin emits ``QuizPassed``, the progress plugin turns it
into 学时. Every event carries an idempotency ``key`` so a consumer that sees it twice (a double
submit, a retried request) records it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, kw_only=True)
class Event:
    user_id: int
    key: str
    occurred_at: datetime = field(default_factory=_now)

    @property
    def name(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, kw_only=True)
class LessonCompleted(Event):
    """A person completed a lesson by the completion rule. ``seconds`` is credited study time."""

    lesson_id: int
    course_slug: str
    lesson_slug: str
    minutes: int
    seconds: int


@dataclass(frozen=True, kw_only=True)
class QuizPassed(Event):
    """A person passed a quiz (first pass counts; ``key`` names the quiz and person)."""

    quiz_slug: str
    quiz_title: str
    attempt_id: int
    score: float
    course_slug: str | None = None


@dataclass(frozen=True, kw_only=True)
class AttendanceMarked(Event):
    """A person was marked present (出席) or late (迟到) at a training session."""

    session_id: int
    class_id: int
    class_title: str
    status: str
    hours: float


@dataclass(frozen=True, kw_only=True)
class ContentSynced(Event):
    """``kb sync`` finished; ``user_id`` is 0 (the system)."""

    changed_lessons: tuple[tuple[str, str], ...] = ()
