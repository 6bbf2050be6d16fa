"""Authorisation-matrix objects for the quizzes plugin (see tests/test_authz.py)."""

from __future__ import annotations

from kb.extensions import db
from kb.models import User

CSV = """题型,题干,选项A,选项B,选项C,选项D,选项E,选项F,答案,解析,出处
单选,乡镇人大每届任期几年？,三年,四年,五年,,,,C,每届任期五年。,地方组织法(2022) 第九条
判断,乡镇人大设常委会。,,,,,,,错,乡镇人大不设常委会。,宪法 第九十六条
"""


def build(app, world):
    """A bank for county A and one for county B, each with a wrong-answered attempt."""
    from kb.plugins.quizzes import service
    from kb.plugins.quizzes.imports import commit_import, parse_file
    from kb.plugins.quizzes.models import Quiz

    out = {}
    for slug, county, taker in (("a-bank", world["county_a"], world["people"]["deputy"]),
                                ("b-bank", world["county_b"], world["stranger"])):
        commit_import(parse_file("bank.csv", CSV.encode()), slug=slug, title=slug,
                      org_unit_id=county)
        quiz = db.session.query(Quiz).filter_by(slug=slug).one()
        attempt = service.start_attempt(quiz, db.session.get(User, taker))
        service.save_answer(attempt, quiz.live_questions()[0].id, ["A"])
        service.finalize(attempt)
        out.setdefault("quiz_slug", []).append(slug)
        out.setdefault("attempt_id", []).append(attempt.id)
    return {k: tuple(v) for k, v in out.items()}
