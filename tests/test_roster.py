"""Roster (花名册) import and export: reading files, the preview, the commit, the export."""

from __future__ import annotations

import csv
import io
import json

import openpyxl
import pytest
from sqlalchemy import event, func, select

from kb.people import roster
from kb.people.roster import RosterError, build_preview, commit, read_table

HEADER = "姓名,手机号,乡镇/单位,职务,代表证号,性别,民族"


def csv_bytes(lines: list[str], encoding: str = "utf-8") -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def xlsx_bytes(rows: list[list]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def errors_of(preview) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for o in preview.outcomes:
        for e in o.errors:
            out.setdefault(o.row, []).append(str(e))
    return out


# -- reading files (no database) --------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    ["姓名", "手机号", "乡镇/单位", "职务", "代表证号", "性别", "民族"],
    ["name", "phone", "township", "role", "deputy_card_no", "gender", "ethnicity"],
    [" Name ", "ＰＨＯＮＥ", "Organisation", "Position", "Card", "Sex", "Ethnicity"],
    ["姓 名", "手机号码", "乡镇（街道）", "角色", "代表证编号", "性别", "民族"],
    ["姓名（必填）", "电话", "所在乡镇", "职务", "代表证号", "性别", "民族"],
    ["姓名", "手机", "乡镇(街道)", "职务", "Deputy Card No", "性别", "民族"],
])
def test_header_variants(headers):
    data = csv_bytes([",".join(headers), "张三,13800138000,青山镇,人大代表,A001,男,汉族"])
    found, rows, errors = read_table("r.csv", data)
    assert errors == []
    assert found == [h.strip() for h in headers]
    assert rows == [(2, {"name": "张三", "phone": "13800138000", "org": "青山镇",
                         "role": "人大代表", "deputy_card_no": "A001", "gender": "男",
                         "ethnicity": "汉族"})]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_encodings(encoding):
    data = csv_bytes([HEADER, "张三,13800138000,青山镇,人大代表,,男,汉族",
                      "欧阳娜娜,13900000000,绿水乡,,,,"], encoding)
    if encoding == "gbk":
        assert data[:3] != b"\xef\xbb\xbf" and b"\xd5\xc5" in data  # 张 in GBK
    headers, rows, errors = read_table("r.csv", data)
    assert errors == []
    assert headers[0] == "姓名"  # no BOM left on the first header
    assert [r[1]["name"] for r in rows] == ["张三", "欧阳娜娜"]


def test_title_rows_above_header_and_blank_rows_skipped():
    data = xlsx_bytes([["青山镇人大代表花名册"], [], ["序号", "姓名", "手机号", "乡镇"],
                       [1, "张三", 13800138000, "青山镇"], [2, None, None, None],
                       [3, "李四", 13900000000.0, "青山镇"]])
    headers, rows, errors = read_table("r.xlsx", data)
    assert errors == [] and headers == ["序号", "姓名", "手机号", "乡镇"]
    assert [(n, r["name"], r["phone"]) for n, r in rows] == [
        (4, "张三", "13800138000"), (6, "李四", "13900000000")]


def test_mixed_encodings_is_a_file_error_naming_lines():
    data = ((HEADER + "\r\n" + "张三,13800138000,青山镇,,,,\r\n").encode()
            + "李四,13900000000,绿水乡,,,,\r\n".encode("gbk"))
    _, rows, errors = read_table("r.csv", data)
    assert rows == [] and len(errors) == 1
    assert "第 1、2 行是 UTF-8" in errors[0] and "第 3 行" in errors[0]


def test_gbk_lines_that_happen_to_be_valid_utf8_are_not_mixed():
    # 陆伟 in GBK is C2 BD CE B0, which is also valid UTF-8 ("½ΰ").
    data = csv_bytes(["姓名,手机号,乡镇/单位", "陆伟,13800138000,A01", "张三,13900000000,A01"], "gbk")
    assert "陆伟".encode("gbk").decode("utf-8") == "½ΰ"
    _, rows, errors = read_table("r.csv", data)
    assert errors == [] and [r["name"] for _, r in rows] == ["陆伟", "张三"]


def test_too_large_and_too_many_rows():
    _, _, errors = read_table("big.csv", b"a" * (20 * 1024 * 1024))
    assert len(errors) == 1 and "20.0 MB" in errors[0] and "10 MB" in errors[0]
    lines = [HEADER] + [f"人{i},,青山镇,,C{i},," for i in range(roster.MAX_ROWS + 1)]
    _, rows, errors = read_table("many.csv", csv_bytes(lines))
    assert rows == [] and "20000" in errors[0]


@pytest.mark.parametrize("name,data", [
    ("r.xlsx", b"PK\x03\x04 this is not a real workbook"),
    ("r.xlsx", b"plain text pretending"),
    ("r.csv", bytes(range(256)) * 8),
    ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),
    ("r.csv", b"%PDF-1.7\n..."),
    ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100),
    ("r.csv", b""),
])
def test_not_a_spreadsheet(name, data):
    headers, rows, errors = read_table(name, data)
    assert rows == [] and len(errors) == 1 and errors[0]


def test_missing_name_header_lists_headers_found():
    _, rows, errors = read_table("r.csv", csv_bytes(["名称,手机号,乡镇", "张三,13800138000,青山镇"]))
    assert rows == []
    assert "姓名" in errors[0] and "名称、手机号、乡镇" in errors[0]


def test_formula_cell_is_a_row_error(app):
    data = xlsx_bytes([["姓名", "手机号", "乡镇/单位"], ["张三", "=\"138\"&\"00138000\"", "青山镇"]])
    table = roster._read("r.xlsx", data)
    assert table.file_errors == []
    [err] = table.cell_errors[2]
    assert str(err) == "第2行「手机号」：单元格是公式，请粘贴为数值"
    from kb.extensions import db

    with app.app_context():
        make_orgs(db)
        preview = build_preview("r.xlsx", data, None)
        assert preview.errors == ["第2行「手机号」：单元格是公式，请粘贴为数值"]


# -- database ---------------------------------------------------------------------------------

def make_orgs(db):
    """Province → counties 甲县 and 乙县; both have a 城关镇."""
    from kb.models import OrgUnit

    def add(kind, name, parent=None, code=None, active=True):
        org = OrgUnit(kind=kind, name=name, code=code, parent_id=parent.id if parent else None,
                      path="/", is_active=active)
        db.session.add(org)
        db.session.flush()
        org.path = (parent.path if parent else "/") + f"{org.id}/"
        return org

    prov = add("province", "某省")
    a = add("county", "甲县", prov, "A")
    b = add("county", "乙县", prov, "B")
    orgs = {"prov": prov, "A": a, "B": b,
            "青山镇": add("township", "青山镇", a, "A01"),
            "城关镇A": add("township", "城关镇", a, "A02"),
            "旧镇": add("township", "旧镇", a, "A03", active=False),
            "绿水乡": add("township", "绿水乡", b, "B01"),
            "城关镇B": add("township", "城关镇", b, "B02")}
    db.session.commit()
    return orgs


def make_user(db, name, role, org, phone=None, card=None, **kw):
    from kb.models import User

    user = User(username=phone or card or name, name=name, role=role, org_unit_id=org.id,
                phone=phone, deputy_card_no=card, **kw)
    db.session.add(user)
    db.session.commit()
    return user


def user_count(db):
    from kb.models import User

    return db.session.scalar(select(func.count()).select_from(User))


def test_bad_rows_each_name_row_and_column(db_app):
    from kb.extensions import db

    with db_app.app_context():
        orgs = make_orgs(db)
        make_user(db, "老王", "deputy", orgs["青山镇"], phone="13700000001")
        make_user(db, "老李", "deputy", orgs["青山镇"], phone="13700000002", card="D9")
        make_user(db, "县干部", "county_staff", orgs["A"], phone="13700000003")
        lines = [
            "姓名,手机,乡镇（街道）,职务,代表证编号,性别,民族",
            ",13800000001,青山镇,,,,",                      # 2 blank name
            "张一,1380000000,青山镇,,,,",                    # 3 malformed phone
            "张二,13800000003,桃花岛,,,,",                   # 4 unknown township
            "张三,13800000004,城关镇,,,,",                   # 5 ambiguous township
            "张四,13800000005,青山镇,,,,",                   # 6 fine
            "张五,138-0000-0005,青山镇,,,,",                 # 7 duplicate of row 6
            "张六,13800000007,青山镇,厨师,,,",               # 8 unknown role
            "张七,13800000008,青山镇,县人大常委会工作人员,,,",  # 9 role import cannot grant
            "张八,13700000001,青山镇,,D9,,",                 # 10 phone and card: two people
            "张九,13800000010,旧镇,,,,",                     # 11 deactivated township
            "张十,13700000003,青山镇,,,,",                   # 12 matches a county_staff account
            "张十一,,青山镇,,,,",                            # 13 neither phone nor card
            "张十二,13800000013,青山镇,,K1,,",               # 14 fine
            "张十三,13800000014,青山镇,,Ｋ １,,",              # 15 duplicate card of row 14
            "张十四,13800000015,青山镇,,,未知,",             # 16 bad gender
        ]
        preview = build_preview("r.csv", csv_bytes(lines, "gbk"), None)
        assert preview.file_errors == []
        errs = errors_of(preview)
        assert set(errs) == {2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 15, 16}
        assert errs[2] == ["第2行「姓名」：姓名不能为空"]
        assert errs[3][0].startswith("第3行「手机」：手机号「1380000000」格式不正确")
        assert errs[4][0].startswith("第4行「乡镇（街道）」：找不到乡镇「桃花岛」")
        assert "甲县城关镇" in errs[5][0] and "乙县城关镇" in errs[5][0]
        assert errs[7] == ["第7行「手机」：与第6行的手机号重复"]
        assert errs[8][0].startswith("第8行「职务」：未知职务「厨师」，可填：人大代表")
        assert errs[9][0].startswith("第9行「职务」：导入不能授予该角色")
        assert errs[10] == ["第10行「手机」：手机号与代表证号分别属于两个不同的已有账号，请核对"]
        assert errs[11] == ["第11行「乡镇（街道）」：乡镇「旧镇」已停用"]
        assert "县人大常委会工作人员账号" in errs[12][0]
        assert errs[13] == ["第13行「手机」：手机号和代表证号至少填写一项"]
        assert errs[15] == ["第15行「代表证编号」：与第14行的代表证号重复"]
        assert errs[16][0].startswith("第16行「性别」")
        assert preview.counts == {"new": 2, "updated": 0, "unchanged": 0, "error": 13}
        assert not preview.ok
        with pytest.raises(RosterError):
            commit(preview, None)


def test_phone_normalisation_and_township_by_code_or_path(db_app):
    from kb.extensions import db

    with db_app.app_context():
        make_orgs(db)
        lines = [HEADER,
                 "张 三,＋８６ １３８ ００１３ ８０００,甲县/城关镇,主席,,女,",
                 "李四,0086-139-0000-0000,B02,副主席,,F,",
                 "王五,+86 13700000000,ｂ０１,人大秘书,,,",
                 "赵六,86 136 0000 0000,乙县／城关镇,deputy,,,"]
        preview = build_preview("r.csv", csv_bytes(lines), None)
        assert preview.ok, preview.errors
        got = [(o.data["name"], o.data["phone"], o.data["org_name"], o.data["role"],
                o.data["gender"]) for o in preview.outcomes]
        assert got == [("张三", "13800138000", "城关镇", "chair", "女"),
                       ("李四", "13900000000", "城关镇", "chair", "女"),
                       ("王五", "13700000000", "绿水乡", "secretary", ""),
                       ("赵六", "13600000000", "城关镇", "deputy", "")]
        assert len({o.data["org_id"] for o in preview.outcomes[:2]}) == 2


def test_preview_writes_nothing_then_commit_reimport_and_update(db_app):
    from kb.extensions import db
    from kb.models import User

    with db_app.app_context():
        orgs = make_orgs(db)
        before = user_count(db)
        rows = [["姓名", "手机号", "乡镇/单位", "职务", "代表证号", "性别", "民族"],
                ["张三", 13800138000, "青山镇", "人大代表", "A001", "男", "汉族"],
                ["李四", "13900000000", "A02", "主席团成员", None, "女", "回族"],
                ["王五", None, "A02", "干事", "A003", None, None]]
        data = xlsx_bytes(rows)
        preview = build_preview("r.xlsx", data, None)
        assert preview.ok and preview.counts["new"] == 3
        assert user_count(db) == before  # the preview wrote nothing
        db.session.rollback()
        assert user_count(db) == before

        payload = json.loads(json.dumps(preview.to_payload()))
        restored = roster.Preview.from_payload(payload)
        assert restored == preview
        result = commit(restored, None)
        assert len(result.created) == 3 and result.updated == 0
        by_name = {u.name: (u, code) for u, code in result.created}
        wang, code = by_name["王五"]
        assert wang.username == "card-A003" and wang.phone is None and wang.role == "secretary"
        assert wang.must_change_password and wang.check_one_time_code(code)
        assert by_name["张三"][0].username == "13800138000"
        assert by_name["李四"][0].org_unit_id == orgs["城关镇A"].id
        assert user_count(db) == before + 3

        # The caller commits its own audit record, then lists the new accounts.
        db.session.commit()
        statements = []

        def record(conn, cursor, statement, *rest):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            seen = [(u.id, u.username, u.name, u.phone, u.org_unit.name, u.last_login_at,
                     u.created_at, u.otp_expires_at) for u, _ in result.created]
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        # Only the (expired, still attached) townships reload: one query per township.
        assert len(seen) == 3 and len(statements) <= 2
        assert all("FROM org_unit" in s and "user" not in s for s in statements)

        again = build_preview("r.xlsx", data, None)
        assert again.counts == {"new": 0, "updated": 0, "unchanged": 3, "error": 0}
        result = commit(again, None)
        assert result.created == [] and result.unchanged == 3 and user_count(db) == before + 3

        # Match by card (no phone in the file), change the name, role and township.
        rows = [["name", "card", "unit", "role"], ["张三丰", "Ａ００１", "甲县/城关镇", "主席"]]
        preview = build_preview("r.xlsx", xlsx_bytes(rows), None)
        [o] = preview.outcomes
        assert o.status == "updated" and o.user_id == by_name["张三"][0].id
        assert o.changes == {"name": ["张三", "张三丰"], "org": ["青山镇", "城关镇"],
                             "role": ["deputy", "chair"]}
        assert o.data["phone"] == "13800138000" and o.data["gender"] == "男"  # blanks kept
        result = commit(preview, None)
        assert result.updated == 1
        zhang = db.session.get(User, o.user_id)
        assert (zhang.name, zhang.role, zhang.phone, zhang.org_unit_id) == (
            "张三丰", "chair", "13800138000", orgs["城关镇A"].id)

        # A deactivated person is matched and updated, and stays deactivated.
        zhang.active = False
        db.session.commit()
        rows = [["姓名", "手机号", "乡镇/单位"], ["张三", "13800138000", "A02"]]
        preview = build_preview("r.xlsx", xlsx_bytes(rows), None)
        [o] = preview.outcomes
        assert o.status == "updated" and o.changes == {"name": ["张三丰", "张三"]}
        assert o.data["role"] == "chair" and "停用" in o.notes[0]  # blank role: kept
        commit(preview, None)
        zhang = db.session.get(User, o.user_id)
        assert (zhang.name, zhang.role, zhang.active) == ("张三", "chair", False)


def test_commit_is_all_or_nothing(db_app, monkeypatch):
    from kb.extensions import db

    with db_app.app_context():
        make_orgs(db)
        before = user_count(db)
        lines = [HEADER] + [f"人{i},1380000{i:04d},青山镇,,,," for i in range(5)]
        preview = build_preview("r.csv", csv_bytes(lines), None)
        assert preview.ok
        real = roster._new_user
        calls = []

        def failing(data, username, *args):
            calls.append(username)
            if len(calls) == 4:
                raise RuntimeError("disk full")
            return real(data, username, *args)

        monkeypatch.setattr(roster, "FLUSH_EVERY", 1)  # three rows really reach the database
        monkeypatch.setattr(roster, "_new_user", failing)
        with pytest.raises(RuntimeError):
            commit(preview, None)
        assert user_count(db) == before


def test_stale_preview_and_only_valid(db_app):
    from kb.extensions import db

    with db_app.app_context():
        orgs = make_orgs(db)
        lines = [HEADER, "张三,13800138000,青山镇,,,,", "李四,13900000000,青山镇,,,,",
                 "王五,bad,青山镇,,,,"]
        preview = build_preview("r.csv", csv_bytes(lines), None)
        assert preview.counts == {"new": 2, "updated": 0, "unchanged": 0, "error": 1}
        make_user(db, "李四", "deputy", orgs["青山镇"], phone="13900000000")
        before = user_count(db)
        with pytest.raises(RosterError, match="数据已变化，请重新预览"):
            commit(preview, None, only_valid=True)
        assert user_count(db) == before
        preview = build_preview("r.csv", csv_bytes(lines), None)
        result = commit(preview, None, only_valid=True)
        assert (len(result.created), result.unchanged, result.skipped) == (1, 1, 1)
        assert user_count(db) == before + 1


def test_importer_scope(db_app):
    from kb.extensions import db

    with db_app.app_context():
        orgs = make_orgs(db)
        staff = make_user(db, "县干部", "county_staff", orgs["A"], phone="13700000009")
        make_user(db, "乙县代表", "deputy", orgs["绿水乡"], phone="13700000008")
        lines = [HEADER, "张三,13800138000,绿水乡,,,,", "李四,13900000000,B01,,,,",
                 "王五,13600000000,城关镇,,,,", "赵六,13700000008,青山镇,,,,"]
        preview = build_preview("r.csv", csv_bytes(lines), staff)
        errs = errors_of(preview)
        assert errs[2][0].startswith("第2行「乡镇/单位」：找不到乡镇「绿水乡」")
        assert errs[3][0].startswith("第3行「乡镇/单位」：找不到乡镇「B01」")
        assert 4 not in errs  # 城关镇 is not ambiguous inside 甲县
        assert preview.outcomes[2].data["org_id"] == orgs["城关镇A"].id
        assert "管理范围之外" in errs[5][0]
        deputy = make_user(db, "代表", "deputy", orgs["青山镇"], phone="13700000007")
        preview = build_preview("r.csv", csv_bytes(lines[:2]), deputy)
        assert preview.file_errors and not preview.outcomes


def test_export_round_trip_and_neutralisation(db_app):
    from kb.extensions import db
    from kb.models import User

    with db_app.app_context():
        orgs = make_orgs(db)
        make_user(db, "=1+2", "deputy", orgs["青山镇"], phone="13800138000", gender="男",
                  ethnicity="汉族")
        make_user(db, "李四", "chair", orgs["青山镇"], card="0012", gender="女")
        make_user(db, "@SUM(A1)", "secretary", orgs["城关镇A"], phone="13900000000", card="-5")
        users = db.session.scalars(select(User).order_by(User.id)).all()
        rows = roster.export_rows(users)
        assert rows[1] == {"name": "李四", "phone": "", "org": "青山镇", "role": "人大主席/副主席",
                           "deputy_card_no": "0012", "gender": "女", "ethnicity": ""}

        body = roster.to_csv(rows)
        assert body.startswith(b"\xef\xbb\xbf" + "姓名,手机号".encode())
        assert b"\r\n" in body and body.count(b"\r\n") == 4
        parsed = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        assert parsed[1][0] == "'=1+2" and parsed[3][0] == "'@SUM(A1)" and parsed[3][4] == "'-5"

        book = roster.to_xlsx(rows)
        ws = openpyxl.load_workbook(io.BytesIO(book)).active
        assert [c.value for c in ws[1]] == [label for _, label in roster.COLUMNS]
        assert all(c.data_type == "s" for row in ws.iter_rows(min_row=2) for c in row
                   if c.value is not None)
        assert ws["A2"].value == "'=1+2" and ws["E3"].value == "0012"

        expected = [dict(r) for r in rows]
        for r in expected:
            for k, v in r.items():
                r[k] = roster.neutralize(v)
        for name, data in (("r.csv", body), ("r.xlsx", book)):
            headers, got, errors = read_table(name, data)
            assert errors == [] and headers == [label for _, label in roster.COLUMNS]
            assert [n for n, _ in got] == [2, 3, 4]
            assert [r for _, r in got] == expected

        # Re-importing the plain rows (no formula characters) of an export changes nothing.
        plain = roster.to_xlsx([rows[1]])
        assert build_preview("r.xlsx", plain, None).counts["unchanged"] == 1


def test_read_table_without_org_column_when_not_required():
    from kb.people.roster import read_table

    data = "姓名,手机号\n张三,13800000001\n".encode("utf-8-sig")
    _h, rows, errors = read_table("a.csv", data)
    assert errors and "乡镇/单位" in errors[0]
    _h, rows, errors = read_table("a.csv", data, require_org=False)
    assert not errors and rows == [(2, {"name": "张三", "phone": "13800000001"})]
