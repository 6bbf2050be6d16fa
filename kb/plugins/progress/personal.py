"""The progress plugin's part of a person's data export (``kb_personal_data``).

Lesson progress (the per-course completion counts in ``progress_course_done`` are derived from
it and covered by it), the 学时 ledger and its yearly totals (``progress_user_year``), claims and
reminders. Staff who decided or sent appear by
name only, as actors.
"""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import select

from kb import db
from kb.models import Lesson
from kb.personal_data import actor_names
from kb.records import PersonalSection

from .models import Claim, LedgerEntry, LessonProgress, Notice, UserYear


def sections(user) -> list[PersonalSection]:
    from .views import CORRECTION_TITLE, SOURCE_LABELS, STATUS_LABELS

    lessons = db.session.execute(
        select(LessonProgress, Lesson.title).outerjoin(Lesson, Lesson.id == LessonProgress.lesson_id)
        .where(LessonProgress.user_id == user.id)
        .order_by(LessonProgress.started_at, LessonProgress.id)).all()
    lesson_rows = tuple(
        (p.course_slug, title or p.lesson_slug, p.seconds, round((p.max_scroll or 0) * 100, 1),
         p.started_at, p.updated_at, p.completed_at)
        for p, title in lessons)

    entries = db.session.scalars(select(LedgerEntry).where(LedgerEntry.user_id == user.id)
                                 .order_by(LedgerEntry.occurred_at, LedgerEntry.id)).all()
    claims = db.session.scalars(select(Claim).where(Claim.user_id == user.id)
                                .order_by(Claim.created_at, Claim.id)).all()
    notices = db.session.scalars(select(Notice).where(Notice.user_id == user.id)
                                 .order_by(Notice.created_at, Notice.id)).all()
    names = actor_names([e.created_by_id for e in entries] + [c.decided_by_id for c in claims]
                        + [n.sender_id for n in notices])

    def actor(actor_id):
        if actor_id is None:
            return _("系统")
        return _("本人") if actor_id == user.id else names.get(actor_id, "")

    ledger_rows = tuple(
        (e.year, e.hours, str(SOURCE_LABELS.get(e.source, e.source)),
         _(e.title) if e.title == CORRECTION_TITLE else e.title, e.note, e.occurred_at,
         e.created_at, actor(e.created_by_id))
        for e in entries)
    year_rows = tuple(
        (y.year, y.hours) for y in db.session.scalars(
            select(UserYear).where(UserYear.user_id == user.id).order_by(UserYear.year)))
    claim_rows = tuple(
        (c.title, c.held_on, c.hours, c.note, str(STATUS_LABELS.get(c.status, c.status)),
         c.created_at, names.get(c.decided_by_id, "") if c.decided_by_id else "", c.decided_at,
         c.decision_note)
        for c in claims)
    notice_rows = tuple((n.body, actor(n.sender_id), n.created_at, n.read_at) for n in notices)

    return [
        PersonalSection(
            key="progress.lessons", title=_("课程学习记录"), order=200,
            columns=(_("课程"), _("课时"), _("学习秒数"), _("阅读进度（百分比）"), _("开始时间"),
                     _("更新时间"), _("完成时间")),
            rows=lesson_rows, tables=("progress_lesson", "progress_course_done")),
        PersonalSection(
            key="progress.ledger", title=_("学时台账"), order=210,
            columns=(_("年度"), _("学时"), _("来源"), _("名称"), _("备注"), _("发生时间"),
                     _("记录时间"), _("操作人")),
            rows=ledger_rows, tables=("progress_ledger",)),
        PersonalSection(
            key="progress.years", title=_("年度学时合计"), order=215,
            columns=(_("年度"), _("学时")), rows=year_rows, tables=("progress_user_year",)),
        PersonalSection(
            key="progress.claims", title=_("学时申报"), order=220,
            columns=(_("培训名称"), _("培训日期"), _("学时"), _("说明"), _("状态"), _("提交时间"),
                     _("审核人"), _("审核时间"), _("审核意见")),
            rows=claim_rows, tables=("progress_claim",)),
        PersonalSection(
            key="progress.notices", title=_("站内提醒"), order=230,
            columns=(_("内容"), _("发送人"), _("发送时间"), _("已读时间")),
            rows=notice_rows, tables=("progress_notice",)),
    ]
