"""The attendance plugin's part of a person's data export (``kb_personal_data``).

Enrolments, attendance records, leave requests and the mark log of the person's records. The
phone identifier a check-in stores (``device_id``, used to stop one phone checking in two people)
is left out: it is a token, not information about the person. Organisers appear by name only,
as the actor of a change.
"""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import select

from kb import db
from kb.models import OrgUnit
from kb.personal_data import actor_names
from kb.records import PersonalSection

from . import service
from .models import Enrolment, LeaveRequest, MarkLog, Record, TrainingClass, TrainingSession


def _leave_state(state: str) -> str:
    return {"pending": _("待审批"), "approved": _("已批准"), "refused": _("未批准")}.get(state, state)


def sections(user) -> list[PersonalSection]:
    from .views import SOURCE_LABELS

    enrolments = db.session.execute(
        select(Enrolment, TrainingClass.title, OrgUnit.name)
        .join(TrainingClass, TrainingClass.id == Enrolment.class_id)
        .join(OrgUnit, OrgUnit.id == TrainingClass.org_unit_id)
        .where(Enrolment.user_id == user.id).order_by(Enrolment.created_at, Enrolment.id)).all()
    enrolment_rows = tuple((title, org, e.created_at) for e, title, org in enrolments)

    def of_sessions(model, *order):
        return db.session.execute(
            select(model, TrainingSession, TrainingClass.title)
            .join(TrainingSession, TrainingSession.id == model.session_id)
            .join(TrainingClass, TrainingClass.id == TrainingSession.class_id)
            .where(model.user_id == user.id).order_by(*order)).all()

    records = of_sessions(Record, TrainingSession.starts_at, Record.id)
    leaves = of_sessions(LeaveRequest, LeaveRequest.created_at, LeaveRequest.id)
    marks = of_sessions(MarkLog, MarkLog.at, MarkLog.id)
    names = actor_names([r.updated_by for r, _s, _t in records]
                        + [lv.decided_by for lv, _s, _t in leaves]
                        + [m.actor_id for m, _s, _t in marks])

    def actor(actor_id):
        if actor_id is None:
            return _("系统")
        return _("本人") if actor_id == user.id else names.get(actor_id, "")

    record_rows = tuple(
        (title, s.title, s.starts_at, s.place, s.hours, service.status_name(r.status),
         str(SOURCE_LABELS.get(r.source, r.source)), r.checked_in_at, r.updated_at,
         actor(r.updated_by))
        for r, s, title in records)
    leave_rows = tuple(
        (title, s.title, s.starts_at, lv.reason, _leave_state(lv.state), lv.created_at,
         names.get(lv.decided_by, "") if lv.decided_by else "", lv.decided_at)
        for lv, s, title in leaves)
    mark_rows = tuple(
        (title, s.title, s.starts_at, service.status_name(m.old_status),
         service.status_name(m.new_status), actor(m.actor_id), m.at, service.note_text(m.note))
        for m, s, title in marks)

    return [
        PersonalSection(
            key="attendance.enrolments", title=_("培训报名"), order=400,
            columns=(_("培训班"), _("主办单位"), _("加入时间")),
            rows=enrolment_rows, tables=("attendance_enrolment",)),
        PersonalSection(
            key="attendance.records", title=_("签到记录"), order=410,
            columns=(_("培训班"), _("场次"), _("开始时间"), _("地点"), _("学时"), _("状态"),
                     _("方式"), _("签到时间"), _("更新时间"), _("操作人")),
            rows=record_rows, tables=("attendance_record",)),
        PersonalSection(
            key="attendance.leave", title=_("请假申请"), order=420,
            columns=(_("培训班"), _("场次"), _("开始时间"), _("请假理由"), _("状态"),
                     _("申请时间"), _("审批人"), _("审批时间")),
            rows=leave_rows, tables=("attendance_leave",)),
        PersonalSection(
            key="attendance.marks", title=_("签到变更记录"), order=430,
            columns=(_("培训班"), _("场次"), _("开始时间"), _("原状态"), _("新状态"), _("操作人"),
                     _("时间"), _("备注")),
            rows=mark_rows, tables=("attendance_mark_log",)),
    ]
