"""Shared helpers for the quizzes tests: a small quiz file, people in two counties."""

from __future__ import annotations

from pathlib import Path

from kb.extensions import db

from .conftest import make_org as org
from .conftest import make_user as person

QUIZ_YAML = """\
title: 基础测验
course: basics
pass_score: 60
time_limit_minutes: 10
attempts: 3
grading: best
shuffle_options: false
show_after: answers
one_per_screen: true
questions:
  - id: q-single
    type: single
    stem: 乡镇人大每届任期几年？
    options: {A: 三年, B: 四年, C: 五年}
    answer: C
    explanation: 每届任期五年。
    source: 地方组织法(2022) 第九条
    lesson: basics/status#代表的任期
  - id: q-multi
    type: multiple
    stem: 主席团闭会期间做什么？
    options: [听取专项工作报告, 检查法律实施, 批准预算调整]
    answer: [A, B]
    explanation: 预算调整由人代会批准。
    source: 地方组织法(2022) 第十九条
  - id: q-tf
    type: truefalse
    stem: 乡镇人大设常委会。
    answer: 错
    explanation: 乡镇人大不设常委会。
    lesson: basics/presidium
  - id: q-fill
    type: fill
    stem: 建议应当自交办之日起____个月内答复。
    answer: [三, "3"]
    explanation: 三个月内答复。
    source: 代表法(2025) 第五十一条
"""


def write_quiz(app, slug="basics-quiz", text=QUIZ_YAML) -> Path:
    path = Path(app.config["QUIZZES_DIR"]) / f"{slug}.yaml"
    path.write_text(text, encoding="utf-8")
    return path






def small_world():
    """County A (townships A1, A2) and county B (B1), with deputies and staff; ids by key."""
    province = org("province", "省")
    ca, cb = org("county", "甲县", province), org("county", "乙县", province)
    a1, a2, b1 = org("township", "甲一镇", ca), org("township", "甲二镇", ca), org("township", "乙一镇", cb)
    people = {
        "d1": person("d1", "deputy", a1), "d2": person("d2", "deputy", a1),
        "d3": person("d3", "deputy", a2), "b1d": person("b1d", "deputy", b1),
        "staff": person("staff", "county_staff", ca), "bstaff": person("bstaff", "county_staff", cb),
        "admin": person("root", "admin", province),
    }
    db.session.commit()
    ids = {k: u.id for k, u in people.items()}
    ids.update(ca=ca.id, cb=cb.id, a1=a1.id, a2=a2.id, b1=b1.id)
    return ids


def login(app, username):
    client = app.test_client()
    response = client.post("/login", data={"login": username, "password": "pw"})
    assert response.status_code == 302, f"cannot log in as {username}"
    return client
