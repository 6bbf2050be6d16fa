"""Demo data: a county question bank with a few graded attempts (idempotent)."""

from __future__ import annotations

import random

from sqlalchemy import select

from kb import db

from . import service
from .imports import commit_import, parse_file, template_xlsx
from .models import Attempt, Quiz

DEMO_SLUG = "demo-county-basics"


def load_demo(app, users) -> None:
    staff = users.get("staff1")
    if staff is None or db.session.scalar(select(Quiz).where(Quiz.slug == DEMO_SLUG)):
        return
    result = parse_file("template.xlsx", template_xlsx())
    commit_import(result, slug=DEMO_SLUG, title="示例县人大知识测验", org_unit_id=staff.org_unit_id)
    quiz = db.session.scalar(select(Quiz).where(Quiz.slug == DEMO_SLUG))
    quiz.time_limit_minutes = 10
    db.session.commit()
    rng = random.Random(7)
    learners = [u for name, u in sorted(users.items()) if name.split("-")[-1].startswith("d")][:24]
    for user in learners:
        if db.session.scalar(select(Attempt).where(Attempt.user_id == user.id,
                                                   Attempt.quiz_id == quiz.id)):
            continue
        attempt = service.start_attempt(quiz, user, rng)
        for q in quiz.live_questions():
            right = rng.random() < 0.7
            if q.type in ("single", "multiple"):
                wrong = [o["key"] for o in q.options if o["key"] not in q.answer][:1]
                values = q.answer if right or not wrong else wrong
            elif q.type == "truefalse":
                values = ["对" if (q.answer[0] == right) else "错"]
            else:
                values = [q.answer[0] if right else "不知道"]
            service.save_answer(attempt, q.id, values)
        service.finalize(attempt)
