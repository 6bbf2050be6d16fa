"""Quizzes: imports (Excel/CSV, GIFT, Moodle XML, entity attacks), export, CLI, statistics scope."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from kb.extensions import db
from kb.plugins.quizzes import service
from kb.plugins.quizzes.imports import (
    ImportRefused,
    commit_import,
    export_xlsx,
    parse_file,
    template_xlsx,
)
from kb.plugins.quizzes.models import Question, Quiz
from kb.records import ReportScope

from .quizzes_support import login, small_world

CSV = """题型,题干,选项A,选项B,选项C,选项D,选项E,选项F,答案,解析,出处
单选,乡镇人大每届任期几年？,三年,四年,五年,,,,C,每届任期五年。,地方组织法(2022) 第九条
多选,主席团闭会期间做什么？,听取专项工作报告,检查法律实施,批准预算调整,,,,AB,预算调整由人代会批准。,地方组织法(2022) 第十九条
判断,乡镇人大设常委会。,,,,,,,错,乡镇人大不设常委会。,宪法 第九十六条
填空,建议应当自交办之日起____个月内答复。,,,,,,,三|3,三个月内答复。,代表法(2025) 第五十一条
"""


def test_csv_utf8_and_gbk():
    for data in (CSV.encode("utf-8"), CSV.encode("utf-8-sig"), CSV.encode("gbk")):
        result = parse_file("bank.csv", data)
        assert result.errors == [] and result.fmt == "table"
        assert result.by_type() == {"single": 1, "multiple": 1, "truefalse": 1, "fill": 1}
        fill = result.questions[3]
        assert fill["answer"] == ["三", "3"] and fill["where"] == "第 5 行"
        assert result.questions[2]["answer"] == [False]


def test_table_errors_name_the_row():
    bad = CSV.replace(",,,,C,每届任期五年。", ",,,,,每届任期五年。")  # row 2: no answer
    bad += "问答,谈谈体会,,,,,,,,,\n"
    bad += "单选,答案不在选项里,甲,乙,,,,,D,解析,\n"
    result = parse_file("bank.csv", bad.encode())
    messages = {(e["where"], e["message"][:6]) for e in result.errors}
    assert ("第 2 行", "缺少答案（a") in messages
    assert any(w == "第 6 行" and "题型" in m for w, m in messages)
    assert any(e["where"] == "第 7 行" and "不在选项" in e["message"] for e in result.errors)
    assert len(result.questions) == 3
    with pytest.raises(ImportRefused):
        commit_import(result, slug="x", title=None, org_unit_id=None)


def test_xlsx_template_round_trip_and_export(app):
    result = parse_file("template.xlsx", template_xlsx())
    assert result.errors == [] and len(result.questions) == 4
    with app.app_context():
        small_world()
        n = commit_import(result, slug="bank", title="县题库", org_unit_id=None)
        assert n == 4
        again = commit_import(parse_file("t.xlsx", template_xlsx()), slug="bank", title=None,
                              org_unit_id=None)
        assert again == 4 and db.session.query(Question).count() == 4  # stable ids: no duplicates
        quiz = db.session.scalar(select(Quiz))
        data = export_xlsx(quiz)
    back = parse_file("export.xlsx", data)
    assert back.errors == [] and [q["qid"] for q in back.questions] == [q["qid"] for q in result.questions]


GIFT = """// 测试题库
$CATEGORY: 乡镇人大

::任期:: 乡镇人大每届任期几年？ {~三年 =五年 ~四年 ####每届任期五年。}

::主席团:: 主席团闭会期间做什么？ {
  ~%50%听取专项工作报告
  ~%50%检查法律实施
  ~%-100%批准预算调整
}

乡镇人大设常委会。{F#不设常委会}

建议应当自交办之日起 {=三 =3} 个月内答复。

会议须有几分之几的代表出席？填小数 {#0.67:0.01}

谈谈你的体会。{}

::配对:: 配对 {=主席团 -> 主持会议 =政府 -> 执行}

::坏题:: 这道题少了右括号 {=对 ~错
"""


def test_gift_types_skips_and_syntax_error():
    result = parse_file("bank.gift", GIFT.encode())
    assert result.fmt == "gift"
    assert result.by_type() == {"single": 1, "multiple": 1, "truefalse": 1, "fill": 2}
    single = result.questions[0]
    assert single["answer"] == ["B"] and single["explanation"] == "每届任期五年。"
    multi = result.questions[1]
    assert multi["type"] == "multiple" and multi["answer"] == ["A", "B"]
    assert result.questions[3]["stem"] == "建议应当自交办之日起 ____ 个月内答复。"
    assert result.questions[4]["answer"] == ["0.67"]
    reasons = {s["where"]: s["reason"] for s in result.skipped}
    assert "问答题" in reasons["第 18 行"] and "配对题" in reasons["第 20 行"]
    assert result.errors == [{"where": "第 22 行", "message": "GIFT 语法错误：花括号 { } 不配对"}]


MOODLE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<quiz>
  <question type="category"><category><text>$course$/人大</text></category></question>
  <question type="multichoice">
    <name><text>任期</text></name>
    <questiontext format="html"><text><![CDATA[<p>乡镇人大每届任期几年？</p>]]></text></questiontext>
    <generalfeedback><text>每届任期五年。</text></generalfeedback>
    <single>true</single>
    <answer fraction="0"><text>三年</text></answer>
    <answer fraction="100"><text>五年</text></answer>
  </question>
  <question type="multichoice">
    <name><text>主席团</text></name>
    <questiontext><text>主席团闭会期间做什么？</text></questiontext>
    <single>false</single>
    <answer fraction="50"><text>听取专项工作报告</text></answer>
    <answer fraction="50"><text>检查法律实施</text></answer>
    <answer fraction="-100"><text>批准预算调整</text></answer>
  </question>
  <question type="truefalse">
    <questiontext><text>乡镇人大设常委会。</text></questiontext>
    <answer fraction="0"><text>true</text></answer>
    <answer fraction="100"><text>false</text></answer>
  </question>
  <question type="shortanswer">
    <questiontext><text>答复期限是几个月？</text></questiontext>
    <answer fraction="100"><text>三</text></answer>
    <answer fraction="100"><text>3</text></answer>
  </question>
  <question type="numerical">
    <questiontext><text>乡镇人大副主席最多几人？</text></questiontext>
    <answer fraction="100"><text>2</text></answer>
  </question>
  <question type="essay"><name><text>体会</text></name><questiontext><text>谈谈体会</text></questiontext></question>
  <question type="matching"><questiontext><text>配对</text></questiontext></question>
</quiz>
"""


def test_moodle_xml_types_and_skips():
    result = parse_file("bank.xml", MOODLE_XML.encode())
    assert result.fmt == "xml" and result.errors == []
    assert result.by_type() == {"single": 1, "multiple": 1, "truefalse": 1, "fill": 2}
    assert result.questions[0]["stem"] == "乡镇人大每届任期几年？" and result.questions[0]["answer"] == ["B"]
    assert result.questions[1]["answer"] == ["A", "B"]
    assert result.questions[2]["answer"] == [False]
    assert [s["where"] for s in result.skipped] == ["第 6 题（体会）", "第 7 题"]
    assert "essay" in result.skipped[0]["reason"]


XXE = """<?xml version="1.0"?>
<!DOCTYPE quiz [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<quiz><question type="shortanswer"><questiontext><text>&xxe;</text></questiontext>
<answer fraction="100"><text>x</text></answer></question></quiz>
"""
LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<quiz><question type="shortanswer"><questiontext><text>&lol3;</text></questiontext></question></quiz>
"""


@pytest.mark.parametrize("payload", [XXE, LAUGHS])
def test_xml_entity_attacks_are_refused(payload):
    result = parse_file("evil.xml", payload.encode())
    assert result.questions == [] and len(result.errors) == 1
    assert "实体" in result.errors[0]["message"]
    assert "root:" not in json.dumps(result.to_payload(), ensure_ascii=False)


def test_cli_import_json_dry_run_and_valid_only(runner, app, tmp_path):
    good = tmp_path / "bank.xml"
    good.write_text(MOODLE_XML, encoding="utf-8")
    out = runner.invoke(["quizzes", "import", str(good), "--quiz", "county-bank", "--json"])
    summary = json.loads(out.output)
    assert summary["imported"] == 5 and summary["by_type"]["fill"] == 2
    assert len(summary["skipped"]) == 2 and summary["errors"] == []
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV + "单选,坏题,甲,乙,,,,,D,解析,\n", encoding="utf-8")
    out = runner.invoke(["quizzes", "import", str(bad), "--json", "--dry-run"])
    summary = json.loads(out.output)
    assert summary["imported"] == 0 and summary["errors"][0]["where"] == "第 6 行"
    result = runner.invoke(["quizzes", "import", str(bad), "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["imported"] == 0
    out = runner.invoke(["quizzes", "import", str(bad), "--json", "--valid-only"])
    assert json.loads(out.output)["imported"] == 4
    with app.app_context():
        assert {q.slug for q in db.session.scalars(select(Quiz))} == {"county-bank", "bad"}


def test_web_import_preview_then_confirm(app):
    with app.app_context():
        ids = small_world()
    staff = login(app, "staff")
    assert staff.get("/quizzes/admin/template.xlsx").data.startswith(b"PK")
    bad = CSV + "单选,坏题,甲,乙,,,,,D,解析,\n"
    r = staff.post("/quizzes/admin/import", data={
        "file": (io.BytesIO(bad.encode("gbk")), "题库.csv"), "slug": "a-bank", "title": "甲县题库"},
        content_type="multipart/form-data")
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "第 6 行" in page and "只导入正确的 4 题" in page
    token = page.split('name="token" value="')[1].split('"')[0]
    r = staff.post("/quizzes/admin/import/confirm", data={"token": token})
    with app.app_context():
        assert db.session.scalar(select(Quiz)) is None  # errors: nothing imported
    r = staff.post("/quizzes/admin/import/confirm", data={"token": token, "valid_only": "1"})
    assert r.status_code == 302
    with app.app_context():
        quiz = db.session.scalar(select(Quiz))
        assert quiz.origin == "import" and quiz.org_unit_id == ids["ca"]
        assert len(quiz.live_questions()) == 4
    # the bank belongs to county A: its deputies see it, county B's do not
    assert login(app, "d3").get("/quizzes/a-bank").status_code == 200
    assert login(app, "b1d").get("/quizzes/a-bank").status_code == 404
    assert login(app, "bstaff").get("/quizzes/admin/a-bank/stats").status_code == 404
    assert login(app, "d1").get("/quizzes/admin/").status_code == 403
    x = staff.get("/quizzes/admin/a-bank/export.xlsx")
    assert x.status_code == 200 and parse_file("a.xlsx", x.data).by_type()["single"] == 1


def _take(quiz, user, right: set[str]):
    attempt = service.start_attempt(quiz, user)
    for q in quiz.live_questions():
        if q.qid in right:
            values = q.answer if q.type != "truefalse" else ["对" if q.answer[0] else "错"]
        else:
            values = ["不对"] if q.type == "fill" else (
                [next(o["key"] for o in q.options if o["key"] not in q.answer)]
                if q.options else ["对" if not q.answer[0] else "错"])
        service.save_answer(attempt, q.id, values)
    service.finalize(attempt)
    return attempt


def test_statistics_are_scoped_to_the_county(db_app):
    from kb.models import User

    with db_app.app_context():
        ids = small_world()
        commit_import(parse_file("bank.csv", CSV.encode()), slug="shared", title="共用题库",
                      org_unit_id=None)
        quiz = db.session.scalar(select(Quiz))
        qids = [q.qid for q in quiz.live_questions()]
        users = {k: db.session.get(User, ids[k]) for k in ("d1", "d2", "d3", "b1d")}
        _take(quiz, users["d1"], set(qids))  # 100
        _take(quiz, users["d2"], set(qids[:2]))  # 50
        _take(quiz, users["d3"], set())  # 0
        _take(quiz, users["b1d"], set())  # county B: must not count for county A
        prefix_a = db.session.get(User, ids["staff"]).org_unit.path
        stats = {s["question"].qid: s for s in service.question_stats(quiz, prefix_a)}
        first = stats[qids[0]]
        assert first["answered"] == 3 and abs(first["rate"] - 2 / 3) < 1e-9
        assert first["discrimination"] == 1.0  # top 27% right, bottom 27% wrong
        assert abs(stats[qids[3]]["discrimination"] - 1.0) < 1e-9
        towns = {t["name"]: t for t in service.pass_rate_by_township(quiz, prefix_a)}
        assert set(towns) == {"甲一镇", "甲二镇"}
        assert towns["甲一镇"]["people"] == 2 and towns["甲一镇"]["passed"] == 1
        assert towns["甲二镇"]["rate"] == 0.0
        missed = service.most_missed([quiz.id], prefix_a)
        assert missed[0]["wrong"] == 2 and missed[0]["answered"] == 3
        year = service.local_today().year
        rates = service.report_pass_rate(ReportScope("township", (ids["a1"], ids["a2"], ids["b1"]), year))
        assert rates == {ids["a1"]: 50.0, ids["a2"]: 0.0, ids["b1"]: 0.0}
        counts = service.report_passed_count(ReportScope("person", (ids["d1"], ids["d2"]), year))
        assert counts == {ids["d1"]: 1}
        assert service.report_pass_rate(ReportScope("township", (ids["a1"],), year - 1)) == {}
    client = login(db_app, "staff")
    page = client.get("/quizzes/admin/shared/stats").get_data(as_text=True)
    assert "甲一镇" in page and "乙一镇" not in page


def test_report_columns_hook(app):
    from kb import plugin_manager
    from kb.pluginhost import collect

    with app.app_context():
        cols = collect(plugin_manager(app), "kb_report_columns", scope=ReportScope("township", (), 2026))
        assert any(c.key == "quiz_pass_rate" and c.kind == "percent" for c in cols)
        cols = collect(plugin_manager(app), "kb_report_columns", scope=ReportScope("person", (), 2026))
        assert any(c.key == "quiz_passed" for c in cols)


def test_bank_settings_by_its_county_staff(app):
    with app.app_context():
        ids = small_world()
        commit_import(parse_file("bank.csv", CSV.encode()), slug="a-bank", title="甲县题库",
                      org_unit_id=ids["ca"])
    staff = login(app, "staff")
    assert "设置" in staff.get("/quizzes/admin/").get_data(as_text=True)
    assert staff.get("/quizzes/admin/a-bank/settings").status_code == 200
    bad = staff.post("/quizzes/admin/a-bank/settings", data={"title": "x", "pass_score": "120"})
    assert bad.status_code == 400 and "pass_score" in bad.get_data(as_text=True)
    r = staff.post("/quizzes/admin/a-bank/settings", data={
        "title": "甲县期末测验", "pass_score": "80", "time_limit_minutes": "15", "attempts": "2",
        "draw": "", "grading": "last", "one_per_screen": "1"})
    assert r.status_code == 302
    with app.app_context():
        quiz = db.session.scalar(select(Quiz))
        assert (quiz.title, quiz.pass_score, quiz.time_limit_minutes, quiz.attempts_allowed,
                quiz.draw, quiz.grading) == ("甲县期末测验", 80, 15, 2, None, "last")
    assert login(app, "bstaff").get("/quizzes/admin/a-bank/settings").status_code == 404
    assert login(app, "d1").get("/quizzes/admin/a-bank/settings").status_code == 403
