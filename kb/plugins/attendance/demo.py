"""Demo data: a county training class with a past, a current and a coming session."""

from __future__ import annotations

from datetime import time, timedelta

from sqlalchemy import select

from kb.extensions import db

from . import service
from .models import (
    ABSENT,
    LATE,
    LEAVE,
    PRESENT,
    Enrolment,
    LeaveRequest,
    Record,
    TrainingClass,
    TrainingSession,
)

TITLE = "乡镇人大代表履职能力集中培训班"


def load(app, users) -> None:
    staff = users.get("staff1")
    if staff is None or staff.org_unit_id is None:
        return
    if db.session.scalar(select(TrainingClass.id).where(TrainingClass.title == TITLE)) is not None:
        return  # kb demo runs again: keep what is there
    local_now = service.to_local(service.now())
    today = local_now.date()
    # The middle session is on now, so the projector and check-in can be tried at once.
    current = local_now.replace(minute=0 if local_now.minute < 30 else 30, second=0, microsecond=0)
    current -= timedelta(minutes=30)
    klass = TrainingClass(title=TITLE, org_unit_id=staff.org_unit_id, created_by=staff.id,
                          description="县人大常委会举办，地点在县委党校，共三个半天。")
    db.session.add(klass)
    db.session.flush()
    plan = [(today - timedelta(days=1), time(9), time(11, 30), "代表法与代表履职", 2.5),
            (current.date(), current.time(), (current + timedelta(hours=4)).time(), "预算审查监督实务", 4.0),
            (today + timedelta(days=7), time(14), time(16), "怎样写好代表建议", 2.0)]
    sessions = []
    for day, start, end, title, hours in plan:
        starts = service.from_local(day, start)
        ends = starts + (service.from_local(day, end) - service.from_local(day, start)) % timedelta(days=1)
        s = TrainingSession(class_id=klass.id, title=title, starts_at=starts, ends_at=ends,
                            place="县委党校报告厅", hours=hours)
        db.session.add(s)
        sessions.append(s)
    db.session.flush()
    people = [u for name, u in sorted(users.items())
              if name.startswith(("t1-", "t2-")) and u.role in ("deputy", "presidium", "chair", "secretary")]
    db.session.add_all([Enrolment(class_id=klass.id, user_id=u.id) for u in people])
    past = sessions[0]
    for i, u in enumerate(people):
        status = PRESENT if i % 7 else (LATE if i % 2 else ABSENT)
        if i == 3:
            status = LEAVE
        db.session.add(Record(session_id=past.id, user_id=u.id, status=status,
                              source="qr" if status in (PRESENT, LATE) else "manual",
                              checked_in_at=past.starts_at if status in (PRESENT, LATE) else None,
                              updated_at=past.starts_at))
    past.closed_at = past.ends_at
    if len(people) > 5:
        db.session.add(LeaveRequest(session_id=sessions[2].id, user_id=people[5].id,
                                    reason="当天村里召开选民座谈会，需要到场。"))
    db.session.flush()
