"""Demo data for ``kb demo``: progress, 学时, a required course, a claim and a reminder."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from kb import db, get_catalog
from kb.models import utcnow

from . import rules, service
from .models import Claim, LessonProgress, Notice, RequiredCourse


def load(app, users) -> None:
    staff = users.get("staff1")
    if staff is None or staff.org_unit_id is None:
        return
    if db.session.scalar(select(RequiredCourse.id).where(RequiredCourse.county_id == staff.org_unit_id)):
        return  # already loaded
    cat = get_catalog(app)
    lessons = cat.lessons()
    now = utcnow()
    year = rules.study_year(now)
    if cat.courses:
        for role in ("deputy", "presidium", "chair", "secretary"):
            db.session.add(RequiredCourse(county_id=staff.org_unit_id, year=year,
                                          course_slug=cat.courses[0].slug, role=role,
                                          due_on=date(year, 12, 31), created_by_id=staff.id))
    learners = [u for name, u in sorted(users.items()) if name.startswith(("t1-", "t2-", "t3-"))]
    for i, user in enumerate(learners):
        # A spread: some people far ahead, some who have not started.
        n = (i * 7) % (len(lessons) + 1) if lessons else 0
        for k, lesson in enumerate(lessons[:n]):
            finished = k < n - 1 or i % 3 == 0
            when = now - timedelta(days=(i + k) % 60 + 1)
            db.session.add(LessonProgress(
                user_id=user.id, lesson_id=lesson.id, course_slug=lesson.course_slug,
                lesson_slug=lesson.slug, seconds=lesson.minutes * 60 if finished else 120,
                max_scroll=1.0 if finished else 0.4, last_scroll=1.0 if finished else 0.4,
                started_at=when, last_beat_at=when, updated_at=when,
                completed_at=when if finished else None))
            if finished:
                service.bump_course_done(user.id, lesson.course_slug)
                service.add_entry(user_id=user.id, hours=rules.lesson_hours(lesson.minutes),
                                  source="lesson", title=lesson.title,
                                  key=f"lesson:{user.id}:{lesson.id}", occurred_at=when)
        if i % 4 == 0:
            service.add_entry(user_id=user.id, hours=16 if i % 8 == 0 else 6, source="attendance",
                              title="2026 年乡镇人大干部集中培训班", key=f"demo-attendance:{user.id}",
                              occurred_at=now - timedelta(days=30))
    d01 = users.get("t1-d01")
    if d01 is not None:
        db.session.add(Claim(user_id=d01.id, org_unit_id=d01.org_unit_id, title="县委党校代表履职专题班",
                             hours=4, held_on=date.today() - timedelta(days=10),
                             note="县委党校主办，有结业证书"))
        db.session.add(Notice(user_id=d01.id, sender_id=staff.id, org_unit_id=d01.org_unit_id,
                              body="请在年底前学完本年度必修课程。", created_at=now))
    db.session.flush()
