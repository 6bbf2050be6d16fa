"""Tables of the quizzes plugin (prefix ``quiz_``)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
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
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kb import db
from kb.models import utcnow


class Quiz(db.Model):
    """A quiz: from ``quizzes/<slug>.yaml`` (origin "file") or an imported bank (origin "import").

    An imported bank belongs to the county of the staff member who imported it
    (``org_unit_id``) and is only visible to people of that county.
    """

    __tablename__ = "quiz_quiz"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    course_slug: Mapped[str | None] = mapped_column(String(100), index=True)
    pass_score: Mapped[int] = mapped_column(Integer, default=60)
    time_limit_minutes: Mapped[int | None] = mapped_column(Integer)
    attempts_allowed: Mapped[int | None] = mapped_column(Integer)
    grading: Mapped[str] = mapped_column(String(8), default="best")
    draw: Mapped[int | None] = mapped_column(Integer)
    shuffle_options: Mapped[bool] = mapped_column(Boolean, default=False)
    show_after: Mapped[str] = mapped_column(String(16), default="answers")
    one_per_screen: Mapped[bool] = mapped_column(Boolean, default=True)
    origin: Mapped[str] = mapped_column(String(8), default="file")
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True)
    source_path: Mapped[str] = mapped_column(String(500), default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    synced_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    questions: Mapped[list[Question]] = relationship(
        back_populates="quiz", order_by="Question.position")

    def live_questions(self) -> list[Question]:
        return [q for q in self.questions if not q.retired]


class Question(db.Model):
    """A question with a stable ``qid`` inside its quiz; removed questions are retired, not deleted."""

    __tablename__ = "quiz_question"
    __table_args__ = (UniqueConstraint("quiz_id", "qid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    quiz_id: Mapped[int] = mapped_column(ForeignKey("quiz_quiz.id"), index=True)
    qid: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)
    type: Mapped[str] = mapped_column(String(12))
    stem: Mapped[str] = mapped_column(Text)
    # [{"key": "A", "text": "..."}]; empty for truefalse and fill.
    options: Mapped[list] = mapped_column(JSON, default=list)
    # Option keys (single/multiple), [true|false] (truefalse) or accepted texts (fill).
    answer: Mapped[list] = mapped_column(JSON, default=list)
    explanation: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(300), default="")
    lesson: Mapped[str] = mapped_column(String(300), default="")
    partial_credit: Mapped[bool] = mapped_column(Boolean, default=False)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)

    quiz: Mapped[Quiz] = relationship(back_populates="questions")


class Attempt(db.Model):
    """One sitting of a quiz by one person; ``number`` is unique per person and quiz."""

    __tablename__ = "quiz_attempt"
    __table_args__ = (UniqueConstraint("quiz_id", "user_id", "number"),
                      Index("ix_quiz_attempt_user_quiz", "user_id", "quiz_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    quiz_id: Mapped[int] = mapped_column(ForeignKey("quiz_quiz.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    number: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(12), default="open", index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    deadline: Mapped[datetime | None] = mapped_column(DateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    score: Mapped[float | None] = mapped_column(Float)
    passed: Mapped[bool | None] = mapped_column(Boolean)
    expired: Mapped[bool] = mapped_column(Boolean, default=False)
    question_ids: Mapped[list] = mapped_column(JSON, default=list)
    # {str(question id): [option keys in the order shown]}
    option_orders: Mapped[dict] = mapped_column(JSON, default=dict)

    quiz: Mapped[Quiz] = relationship()


class Answer(db.Model):
    """A saved answer; one row per attempt and question (upserted as the person goes)."""

    __tablename__ = "quiz_answer"
    __table_args__ = (UniqueConstraint("attempt_id", "question_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("quiz_attempt.id"), index=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("quiz_question.id"), index=True)
    response: Mapped[list] = mapped_column(JSON, default=list)
    credit: Mapped[float | None] = mapped_column(Float)
    saved_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ReviewCard(db.Model):
    """A question a person got wrong, scheduled with FSRS (错题本)."""

    __tablename__ = "quiz_review_card"
    __table_args__ = (UniqueConstraint("user_id", "question_id"),
                      Index("ix_quiz_review_card_user_due", "user_id", "due"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    question_id: Mapped[int] = mapped_column(ForeignKey("quiz_question.id"), index=True)
    card: Mapped[dict] = mapped_column(JSON, default=dict)
    due: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    lapses: Mapped[int] = mapped_column(Integer, default=0)
    reviews: Mapped[int] = mapped_column(Integer, default=0)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    last_response: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    question: Mapped[Question] = relationship()


class Daily(db.Model):
    """A person's 每日一练 set for one day (local date) and what they answered."""

    __tablename__ = "quiz_daily"
    __table_args__ = (UniqueConstraint("user_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    day: Mapped[date] = mapped_column(Date)
    question_ids: Mapped[list] = mapped_column(JSON, default=list)
    # {str(question id): {"response": [...], "correct": bool}}
    done: Mapped[dict] = mapped_column(JSON, default=dict)


class ImportDraft(db.Model):
    """A parsed upload between preview and confirmation (what was previewed is what is saved)."""

    __tablename__ = "quiz_import_draft"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    filename: Mapped[str] = mapped_column(String(255), default="")
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    committed_at: Mapped[datetime | None] = mapped_column(DateTime)
