"""The quizzes plugin's part of a person's data export (``kb_personal_data``).

Attempts, every saved answer, the wrong-answer book (错题本) and daily practice (每日一练). The
FSRS scheduling state of a review card (``card``) is left out: it is the scheduler's working
numbers, derived from the reviews shown (count, lapses, next due date).
"""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import select

from kb import db
from kb.i18n import join_list
from kb.records import PersonalSection

from .models import Answer, Attempt, Daily, Question, Quiz, ReviewCard


def _status(attempt: Attempt) -> str:
    if attempt.status == "open":
        return _("进行中")
    return _("已交卷") if attempt.status == "submitted" else attempt.status


def sections(user) -> list[PersonalSection]:
    attempts = db.session.execute(
        select(Attempt, Quiz.title).join(Quiz, Quiz.id == Attempt.quiz_id)
        .where(Attempt.user_id == user.id).order_by(Attempt.started_at, Attempt.id)).all()
    attempt_rows = tuple(
        (title, a.number, _status(a), a.started_at, a.deadline, a.submitted_at, a.score,
         a.passed, a.expired)
        for a, title in attempts)

    answers = db.session.execute(
        select(Answer, Attempt.number, Quiz.title, Question.stem)
        .join(Attempt, Attempt.id == Answer.attempt_id)
        .join(Question, Question.id == Answer.question_id)
        .join(Quiz, Quiz.id == Attempt.quiz_id)
        .where(Attempt.user_id == user.id)
        .order_by(Attempt.started_at, Attempt.id, Question.position, Answer.id)).all()
    answer_rows = tuple(
        (title, number, stem, join_list(str(v) for v in (answer.response or [])), answer.credit,
         answer.saved_at)
        for answer, number, title, stem in answers)

    cards = db.session.execute(
        select(ReviewCard, Question.stem, Quiz.title)
        .join(Question, Question.id == ReviewCard.question_id)
        .join(Quiz, Quiz.id == Question.quiz_id)
        .where(ReviewCard.user_id == user.id).order_by(ReviewCard.created_at, ReviewCard.id)).all()
    card_rows = tuple(
        (title, stem, join_list(str(v) for v in (card.last_response or [])), card.lapses,
         card.reviews, card.due, card.flagged, card.created_at, card.updated_at)
        for card, stem, title in cards)

    days = db.session.scalars(select(Daily).where(Daily.user_id == user.id).order_by(Daily.day)).all()
    daily_rows = tuple(
        (d.day, len(d.question_ids or []), len(d.done or {}),
         sum(1 for v in (d.done or {}).values() if isinstance(v, dict) and v.get("correct")))
        for d in days)

    return [
        PersonalSection(
            key="quizzes.attempts", title=_("测验记录"), order=300,
            columns=(_("测验"), _("第几次"), _("状态"), _("开始时间"), _("截止时间"), _("交卷时间"),
                     _("得分"), _("是否通过"), _("超时")),
            rows=attempt_rows, tables=("quiz_attempt",)),
        PersonalSection(
            key="quizzes.answers", title=_("测验作答"), order=310,
            columns=(_("测验"), _("第几次"), _("题目"), _("作答"), _("得分"), _("保存时间")),
            rows=answer_rows, tables=("quiz_answer",)),
        PersonalSection(
            key="quizzes.review", title=_("错题本"), order=320,
            columns=(_("测验"), _("题目"), _("最近作答"), _("答错次数"), _("复习次数"),
                     _("下次复习"), _("已标记"), _("加入时间"), _("更新时间")),
            rows=card_rows, tables=("quiz_review_card",)),
        PersonalSection(
            key="quizzes.daily", title=_("每日一练"), order=330,
            columns=(_("日期"), _("题数"), _("已答"), _("答对")),
            rows=daily_rows, tables=("quiz_daily",)),
    ]
