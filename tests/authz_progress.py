"""Objects of the progress plugin for the authorisation matrix (tests/test_authz.py)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from kb.extensions import db
from kb.models import Course, Lesson
from kb.plugins.progress.models import Claim, Notice, RequiredCourse


def build(app, world) -> dict:
    deputy = world["people"]["deputy"]
    stranger = world["stranger"]
    own_claim = Claim(user_id=deputy, org_unit_id=world["a1"], title="党校培训", hours=4,
                      held_on=date(2026, 3, 1))
    other_claim = Claim(user_id=stranger, org_unit_id=world["b1"], title="外县培训", hours=4,
                        held_on=date(2026, 3, 1))
    own_req = RequiredCourse(county_id=world["county_a"], year=2026, course_slug="basics",
                             role="deputy", due_on=date(2026, 12, 31))
    other_req = RequiredCourse(county_id=world["county_b"], year=2026, course_slug="basics",
                               role="deputy", due_on=date(2026, 12, 31))
    own_notice = Notice(user_id=deputy, body="请学习")
    other_notice = Notice(user_id=stranger, body="请学习")
    db.session.add_all([own_claim, other_claim, own_req, other_req, own_notice, other_notice])
    db.session.flush()
    lesson_id = db.session.scalar(select(Lesson.id).join(Course).where(
        Course.slug == "basics", Lesson.slug == "presidium"))
    return {
        "claim_id": (own_claim.id, other_claim.id),
        "req_id": (own_req.id, other_req.id),
        "notice_id": (own_notice.id, other_notice.id),
        "lesson_id": (lesson_id, lesson_id),
    }
