"""Attendance objects for the authorisation matrix (tests/test_authz.py).

Own: a class of township A1 with A1 people enrolled; other: a class of county B.
"""

from __future__ import annotations

from datetime import timedelta

from kb.extensions import db
from kb.models import utcnow
from kb.plugins.attendance.models import (
    Enrolment,
    LeaveRequest,
    Record,
    TrainingClass,
    TrainingSession,
)


def _class(org_id, user_ids, title):
    klass = TrainingClass(title=title, org_unit_id=org_id)
    db.session.add(klass)
    db.session.flush()
    start = utcnow() + timedelta(minutes=5)
    session = TrainingSession(class_id=klass.id, starts_at=start, ends_at=start + timedelta(hours=2),
                              place="会议室", hours=2)
    past = TrainingSession(class_id=klass.id, starts_at=start - timedelta(days=2),
                           ends_at=start - timedelta(days=2) + timedelta(hours=2), hours=2)
    db.session.add_all([session, past])
    db.session.flush()
    db.session.add_all([Enrolment(class_id=klass.id, user_id=u) for u in user_ids])
    db.session.add(Record(session_id=past.id, user_id=user_ids[0], status="present", source="manual"))
    leave = LeaveRequest(session_id=session.id, user_id=user_ids[-1], reason="事假")
    db.session.add(leave)
    db.session.flush()
    return klass, session, leave


def build(app, world) -> dict:
    people = world["people"]
    own = _class(world["a1"], [people["deputy"], people["presidium"], world["own_user"]], "甲一镇学习班")
    other = _class(world["county_b"], [world["stranger"]], "乙县培训班")
    return {
        "class_id": (own[0].id, other[0].id),
        "session_id": (own[1].id, other[1].id),
        "leave_id": (own[2].id, other[2].id),
    }
