"""The English UI catalogue: complete, well-formed, and actually used by the app.

Every string the source marks for translation (``_()``, ``gettext``, ``ngettext``, ``pgettext``,
``N_``, ``_l``, ``lazy_gettext``, as ``make extract-messages`` extracts them with ``babel.cfg``) must
have an English translation in ``kb/translations/en/LC_MESSAGES/messages.po``. When this fails, run
``make extract-messages`` and translate the new entries (their ``msgstr`` is empty).

The English UI must not show Chinese outside content (lesson and law text, names, titles): every
page is rendered in English as every role and checked; messages made outside templates (roster and
quiz imports, quiz files, audit summaries, attendance notes), exports and the JavaScript texts are
checked one by one; and no new Chinese text may appear in templates, scripts or Python outside a
gettext call (tests/i18n_allowed_cjk.txt lists the Chinese that is data, e.g. header aliases).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from tests import test_authz
from tests.conftest import make_config, make_org, make_user
from tests.test_authz import ROLES, _login, _request, routes

REPO = Path(__file__).resolve().parent.parent
BABEL_CFG = REPO / "babel.cfg"
PO = REPO / "kb" / "translations" / "en" / "LC_MESSAGES" / "messages.po"
# The keywords `make extract-messages` uses: Babel's defaults (_, gettext, ngettext, ...) + -k _l
# -k lazy_gettext.
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[sdifr]")


def _key(msgid) -> str:
    return msgid[0] if isinstance(msgid, (tuple, list)) else msgid


def _forms(value) -> tuple[str, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value,)


@pytest.fixture(scope="module")
def extracted() -> dict[tuple[str | None, str], list[str]]:
    """(context, msgid) -> ["file:line", ...] for every translatable string in the source tree."""
    with BABEL_CFG.open() as fh:
        method_map, options_map = parse_mapping_cfg(fh, str(BABEL_CFG))
    found: dict[tuple[str | None, str], list[str]] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(REPO), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True
    ):
        key = _key(message)
        if key:
            found.setdefault((context, key), []).append(f"{filename}:{lineno}")
    return found


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    with PO.open("rb") as fh:
        return read_po(fh, locale="en")


def _translated(message) -> bool:
    return "fuzzy" not in message.flags and all(s.strip() for s in _forms(message.string))


def test_extraction_finds_the_ui(extracted):
    # Guards against babel.cfg patterns silently matching nothing.
    assert len(extracted) > 300
    assert (None, "课程") in extracted
    assert ("attendance status", "请假") in extracted  # pgettext keeps its context
    files = {loc.rsplit(":", 1)[0] for locs in extracted.values() for loc in locs}
    assert any(f.startswith("kb/plugins/") and f.endswith(".html") for f in files)
    assert any(f.startswith("kb/plugins/") and f.endswith(".py") for f in files)


def test_every_ui_string_has_an_english_translation(extracted, catalog):
    missing = []
    for (context, msgid), locations in sorted(extracted.items(), key=lambda kv: kv[1][0]):
        message = catalog.get(msgid, context=context)
        if message is None or not _translated(message):
            state = "fuzzy" if message is not None and "fuzzy" in message.flags else \
                "untranslated" if message is not None else "not in messages.po"
            missing.append(f"  {locations[0]}: {msgid!r} ({state})")
    assert not missing, (
        f"{len(missing)} UI strings have no English translation; run `make extract-messages` "
        f"and translate (msgstr in {PO.relative_to(REPO)}):\n" + "\n".join(missing))


def test_catalogue_compiles_without_format_errors(catalog):
    problems = [f"{_key(m.id)!r}: {err}" for m, errors in catalog.check() for err in errors]
    for message in catalog:
        if not message.id or not _translated(message):
            continue
        ids = _forms(message.id)
        names = set().union(*(PLACEHOLDER.findall(i) for i in ids))
        values = {name: 1 for name in names}
        for form in _forms(message.string):
            if set(PLACEHOLDER.findall(form)) != names and not (
                    len(ids) > 1 and set(PLACEHOLDER.findall(form)) <= names):
                problems.append(f"{_key(message.id)!r}: placeholders {sorted(names)} "
                                f"but the translation has {sorted(PLACEHOLDER.findall(form))}")
            # Jinja's new-style gettext always applies `% variables`; Flask-Babel does when
            # there are variables. A translation must survive it whenever the msgid does.
            try:
                ids[0] % values
            except (ValueError, TypeError, KeyError):
                continue
            try:
                form % values
            except (ValueError, TypeError, KeyError) as exc:
                problems.append(f"{_key(message.id)!r}: translation fails `% vars`: {exc}")
    assert not problems, "format errors in messages.po:\n" + "\n".join(problems)

    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    translations = Translations(fp=buf)
    assert translations.gettext("课程") == catalog.get("课程").string != "课程"
    assert translations.plural(1) == 0 and translations.plural(2) == 1


@pytest.fixture
def english_app(tmp_path, catalog):
    """An app reading a freshly compiled .mo (not whatever `make install` left behind)."""
    from kb import create_app, dbmigrate
    from kb.extensions import babel, db

    directory = tmp_path / "translations"
    (directory / "en" / "LC_MESSAGES").mkdir(parents=True)
    with (directory / "en" / "LC_MESSAGES" / "messages.mo").open("wb") as fh:
        write_mo(fh, catalog)
    app = create_app(make_config(tmp_path, BABEL_TRANSLATION_DIRECTORIES=str(directory)))
    assert app.extensions["babel"].translation_directories == [str(directory)]
    with app.app_context():
        dbmigrate.upgrade(app)
        # kb.extensions.babel is one Babel() for the whole process, and Flask-Babel caches
        # loaded translations on its domain keyed only by locale: drop what other apps loaded.
        babel.domain_instance.cache.clear()
    yield app
    with app.app_context():
        babel.domain_instance.cache.clear()
        db.engine.dispose()


def test_english_ui_end_to_end(english_app, catalog):
    client = english_app.test_client()
    page = client.get("/").get_data(as_text=True)
    assert '<html lang="zh-CN"' in page and ">课程</a>" in page

    client.post("/prefs", data={"lang": "en"})
    page = client.get("/").get_data(as_text=True)
    courses = catalog.get("课程").string
    assert '<html lang="en"' in page
    assert f">{courses}</a>" in page
    assert catalog.get("跳到正文").string in page and "跳到正文" not in page

    client.post("/prefs", data={"lang": "zh_CN"})
    assert '<html lang="zh-CN"' in client.get("/").get_data(as_text=True)


# -- the English UI everywhere ----------------------------------------------------------------

# The authorisation matrix's world of objects (two counties, every role, plugin objects).
world = test_authz.world
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
USERNAMES = {"county_staff": "a-staff", "admin": "root", **{r: f"a1-{r}" for r in ROLES
                                                             if r not in ("county_staff", "admin")}}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, catalog) -> Path:
    """A translations directory with a .mo compiled from messages.po as it is now."""
    directory = tmp_path_factory.mktemp("translations")
    (directory / "en" / "LC_MESSAGES").mkdir(parents=True)
    with (directory / "en" / "LC_MESSAGES" / "messages.mo").open("wb") as fh:
        write_mo(fh, catalog)
    return directory


@pytest.fixture
def config(tmp_path, compiled):
    """Overrides conftest's ``config``: every app in this module reads the fresh .mo."""
    return make_config(tmp_path, BABEL_TRANSLATION_DIRECTORIES=str(compiled))


@pytest.fixture
def app(config):
    """Overrides conftest's ``app``: Flask-Babel's cache of loaded translations (per locale only,
    see english_app) is emptied before and after."""
    from kb.extensions import babel, db
    from tests.conftest import _build

    app = _build(config)
    with app.app_context():
        babel.domain_instance.cache.clear()
    yield app
    with app.app_context():
        babel.domain_instance.cache.clear()
        db.engine.dispose()


def _strings(value, out: set) -> None:
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _strings(k, out)
            _strings(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _strings(v, out)


class _Texts(HTMLParser):
    """The texts a reader sees or hears: text nodes, and the attributes read out or shown
    (title, alt, placeholder, aria-label, data-confirm, data-msg-* for scripts). Elements marked
    ``lang="zh-…"`` (the 中文 switch) are Chinese on purpose and skipped."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
            "track", "wbr"}
    READ = {"title", "alt", "placeholder", "aria-label", "data-confirm"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.texts: list[str] = []

    def _zh(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        zh = (attrs.get("lang") or "").startswith("zh") or self._zh()
        if tag not in self.VOID:
            self.stack.append((tag, zh))
        if zh:
            return
        for name, value in attrs.items():
            if value and (name in self.READ or name.startswith("data-msg")):
                self.texts.append(value)
        if tag == "input" and attrs.get("type") in ("submit", "button", "reset") and attrs.get("value"):
            self.texts.append(attrs["value"])

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if not self._zh() and data.strip():
            self.texts.append(data)


def _page_texts(html: str) -> list[str]:
    parser = _Texts()
    parser.feed(html)
    parser.close()
    return parser.texts


# Chinese that the English UI shows on purpose: examples of what to type (the content is Chinese).
TYPED_EXAMPLES = {"主席团闭会期间做什么", "代表法", "主席团 闭会期间", "主席团", "代表建议"}


def content_texts(app) -> set[str]:
    """Every Chinese text the database holds (names, titles, lesson and law text, quiz questions,
    uploaded previews): content, shown as it is in every language. Stored HTML counts with its
    text nodes."""
    from kb.extensions import db

    found: set[str] = set()
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(table.select()):
                for value in row:
                    _strings(value, found)
    for text in [t for t in found if "<" in t]:
        found.update(_page_texts(text))
    return {t.strip() for t in found if t.strip() and CJK.search(t)} | TYPED_EXAMPLES


def chinese_outside_content(html: str, content: set[str]) -> list[str]:
    """The texts of a page that still hold Chinese once the content in them is taken out."""
    ordered = None
    leaks = []
    for text in _page_texts(html):
        if not CJK.search(text):
            continue
        rest = text.strip()
        if rest in content:
            continue
        ordered = ordered or sorted(content, key=len, reverse=True)
        for piece in ordered:
            if piece in rest:
                rest = rest.replace(piece, " ")
                if not CJK.search(rest):
                    break
        if CJK.search(rest):
            leaks.append(text.strip()[:100])
    return leaks


def _english_client(app, role):
    client = app.test_client() if role is None else _login(app, USERNAMES[role])
    client.post("/prefs", data={"lang": "en"})
    return client


def test_every_page_in_english_shows_no_chinese_but_content(synced_app, world):
    """Every GET page (own objects), as every role and anonymously: no Chinese outside content.
    One test for all roles: the world is built once."""
    app = synced_app
    content = content_texts(app)
    problems = []
    for role in (None, *ROLES):
        client = _english_client(app, role)
        pages = 0
        for rule in routes(app):
            if "GET" not in rule.methods or rule.endpoint == "auth.logout":
                continue
            url, response = _request(client, app, rule, 0, world)
            if response.status_code != 200 or response.mimetype != "text/html":
                continue
            page = response.get_data(as_text=True)
            assert '<html lang="en"' in page, f"{role} {url} is not in English"
            pages += 1
            leaks = chinese_outside_content(page, content)
            if leaks:  # a page may have written content (e.g. automatic absences): look again
                content = content_texts(app)
                leaks = chinese_outside_content(page, content)
            problems += [f"{role} {url}: {leak!r}" for leak in leaks]
        assert pages >= (5 if role is None else 15), f"only {pages} pages for {role}"
    assert not problems, "Chinese in the English UI (wrap it in _() and translate it):\n" + "\n".join(problems)


def test_the_check_finds_untranslated_text():
    """The walk above can fail: Chinese UI text left in a page is reported, content is not."""
    content = {"甲一镇学习班"}
    page = ('<html lang="en"><body><p>甲一镇学习班</p><p>Class 甲一镇学习班: 已保存</p>'
            '<button lang="zh-CN">中文</button><input placeholder="搜索"></body></html>')
    assert chinese_outside_content(page, content) == ["Class 甲一镇学习班: 已保存", "搜索"]


# -- messages made outside templates ------------------------------------------------------------

def _staff_world(app) -> int:
    """County staff and three people of one township; returns the township's id."""
    from kb.extensions import db

    with app.app_context():
        county = make_org("county", "甲县")
        township = make_org("township", "甲一镇", county)
        make_user("staff", "county_staff", county)
        make_user("d1", "deputy", township, name="张三", phone="13800000001")
        make_user("d2", "presidium", township, name="李四", phone="13800000002", card="C-2")
        chair = make_user("c1", "chair", township, name="王芳", phone="13800000003")
        chair.gender, chair.ethnicity = "女", "回族"
        db.session.commit()
        return township.id


def test_roster_import_errors_and_round_trip_in_both_languages(app, catalog):
    township = _staff_world(app)
    client = _login(app, "staff")
    client.post("/prefs", data={"lang": "en"})
    bad = "Name,Mobile number,Township/organization\r\n王五,123,甲一镇\r\n,13800000009,乙镇\r\n".encode()
    response = client.post("/admin/users/import", data={"file": (BytesIO(bad), "bad.csv")},
                           content_type="multipart/form-data", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "The mobile number “123” is not valid" in page
    assert "The name must not be blank" in page and "No township “乙镇”" in page
    assert not chinese_outside_content(page, content_texts(app) | {"乙镇"})

    # The export follows the reader's language and imports back unchanged in either language.
    for lang, header in (("en", catalog.get("姓名").string), ("zh_CN", "姓名")):
        client.post("/prefs", data={"lang": lang})
        exported = client.get(f"/admin/users/export.csv?org={township}").get_data()
        text = exported.decode("utf-8-sig")
        assert text.startswith(header + ",")
        if lang == "en":
            assert "Township/organization" in text.splitlines()[0]
            assert "Presidium member" in text and "Congress chair/vice-chair" in text
            assert "Female" in text and not CJK.search(text.replace("张三", "").replace("李四", "").replace(
                "王芳", "").replace("甲一镇", "").replace("回族", ""))
        for import_lang in ("en", "zh_CN"):
            client.post("/prefs", data={"lang": import_lang})
            response = client.post("/admin/users/import",
                                   data={"file": (BytesIO(exported), f"roster-{lang}.csv")},
                                   content_type="multipart/form-data")
            token = response.headers["Location"].rsplit("/", 1)[1]
            from kb.extensions import db
            from kb.models import ImportBatch

            with app.app_context():
                payload = db.session.query(ImportBatch).filter_by(token=token).one().payload
            statuses = [o["status"] for o in payload["outcomes"]]
            assert payload["file_errors"] == [] and statuses == ["unchanged"] * 3, (lang, import_lang, payload)


def test_roster_cli_messages_follow_the_operator_locale(app, runner, tmp_path):
    from kb.i18n import locale_from_env

    assert locale_from_env({"KB_LOCALE": "en", "LANG": "zh_CN.UTF-8"}) == "en"
    assert locale_from_env({"LANG": "en_US.UTF-8"}) == "en"
    assert locale_from_env({"LC_ALL": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}) == "zh_CN"
    assert locale_from_env({"LANGUAGE": "en:zh_CN", "LANG": "zh_CN.UTF-8"}) == "en"
    assert locale_from_env({"LANG": "C.UTF-8"}) == locale_from_env({}) == "zh_CN"

    _staff_world(app)
    roster_file = tmp_path / "r.csv"
    roster_file.write_text("姓名,手机号,乡镇/单位\n王五,123,甲一镇\n", encoding="utf-8")
    result = runner.invoke(["users", "import", str(roster_file)])
    assert "手机号「123」格式不正确" in result.output
    app.config["CLI_LOCALE"] = "en"
    result = runner.invoke(["users", "import", str(roster_file)])
    assert "Row 2, “手机号”: The mobile number “123” is not valid" in result.output


def test_quiz_messages_in_english(synced_app, world, tmp_path):
    from kb.cli import run_sync

    app = synced_app
    (tmp_path / "quizzes" / "broken.yaml").write_text("title: 测验\nquestions:\n  - id: q1\n    type: essay\n",
                                                      encoding="utf-8")
    app.config["CLI_LOCALE"] = "en"
    report = run_sync(app)
    messages = [p.message for p in report.problems if p.path.endswith("broken.yaml")]
    assert messages == ["Question type 'essay' is not valid: use single | multiple | truefalse | fill"]

    client = _english_client(app, "county_staff")
    bad = "Type,Question,Option A,Option B,Answer,Explanation,Source\r\nEssay,题目,,,A,,\r\n".encode()
    page = client.post("/quizzes/admin/import", data={"file": (BytesIO(bad), "bank.csv"), "slug": "en-bank"},
                       content_type="multipart/form-data").get_data(as_text=True)
    assert "Row 2: Question type &#39;Essay&#39; is not valid: use Single choice, Multiple choice, " \
           "True/false or Fill in the blank" in page
    assert not chinese_outside_content(page, content_texts(app))

    # An English export of a bank reads back as the same questions.
    from kb.plugins.quizzes.imports import parse_file

    exported = client.get("/quizzes/admin/a-bank/export.xlsx").get_data()
    import openpyxl

    sheet = openpyxl.load_workbook(BytesIO(exported)).active
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    assert header[:3] == ["Type", "Question", "Option A"] and sheet["A2"].value == "Single choice"
    assert sheet["I3"].value == "False"
    again = parse_file("bank.xlsx", exported)
    assert not again.errors and [q["type"] for q in again.questions] == ["single", "truefalse"]

    # QuizError messages come back in the reader's language (the autosave JSON too).
    deputy = _english_client(app, "deputy")
    from kb.extensions import db
    from kb.plugins.quizzes.models import Attempt

    with app.app_context():
        attempt = db.session.query(Attempt).filter_by(user_id=world["people"]["deputy"]).first()
        attempt_id, question_id = attempt.id, attempt.question_ids[0]
    answer = deputy.post(f"/quizzes/attempt/{attempt_id}/answer", json={"question_id": question_id,
                                                                         "response": ["A"]})
    assert answer.get_json()["error"] == "This attempt has been submitted; the answers can no longer be changed"


def test_javascript_texts_come_from_the_catalogue(synced_app, world, catalog):
    app = synced_app
    deputy = _english_client(app, "deputy")
    page = deputy.get("/").get_data(as_text=True)
    assert f'data-msg-close="{catalog.get("关闭").string}"' in page
    assert 'data-msg-version=" ({date})"' in page
    start = deputy.post("/quizzes/a-bank/start")
    take = deputy.get(start.headers["Location"]).get_data(as_text=True)
    assert f'data-msg-saving="{catalog.get("保存中…").string}"' in take
    staff = _english_client(app, "county_staff")
    from kb.plugins.attendance.models import TrainingSession

    with app.app_context():
        from kb.extensions import db

        session_id = db.session.query(TrainingSession).order_by(TrainingSession.id).first().id
    projector = staff.get(f"/attendance/sessions/{session_id}/projector").get_data(as_text=True)
    assert f'data-msg-closed="{catalog.get("签到已结束").string}"' in projector


def test_stored_system_texts_are_shown_in_the_readers_language(app):
    """Audit summaries and attendance notes are stored in Chinese with their msgid; typed text
    and older rows are shown as stored."""
    from flask_babel import force_locale
    from flask_babel import lazy_gettext as _l

    from kb import audit
    from kb.extensions import db
    from kb.models import AuditLog
    from kb.plugins.attendance import service

    with app.test_request_context():
        entry = audit.record("test.action", None, _l("向「%(title)s」报名 %(n)s 人", title="学习班", n=3))
        nested = audit.record("test.nested", None, _l("必修课程 %(course)s（%(year)s）：%(roles)s", course="c",
                                                      year=2026, roles=[_l("人大代表"), _l("主席团成员")]))
        typed = audit.record("test.plain", None, "手写的说明")
        db.session.commit()
        assert entry.summary == "向「学习班」报名 3 人" and nested.summary == "必修课程 c（2026）：人大代表、主席团成员"
        with force_locale("en"):
            assert audit.summary_text(entry) == "Enrolled in “学习班”: 3"
            assert audit.summary_text(nested) == "Required course c (2026): Deputy, Presidium member"
            assert audit.summary_text(typed) == "手写的说明"
            assert audit.summary_text(AuditLog(summary="旧记录", details={})) == "旧记录"
            assert service.note_text(service.AUTO_NOTE) == "Check-in closed; marked absent automatically"
            assert service.note_text("组织者写的") == "组织者写的"
            assert service.status_name("leave") == "On leave" and service.status_name(None) == "Not checked in"
        assert service.note_text(service.AUTO_NOTE) == service.AUTO_NOTE == "签到结束，自动记为缺席"
        assert service.status_name("leave") == "请假"


def test_punctuation_helpers(app):
    from flask_babel import force_locale
    from markupsafe import Markup

    from kb.i18n import colon, join_list, parens

    with app.test_request_context():
        assert (colon("姓名"), parens("已停用"), join_list(["a", "b"])) == ("姓名：", "（已停用）", "a、b")
        with force_locale("en"):
            assert (colon("Name"), parens("retired"), join_list(["a", "b"])) == ("Name: ", " (retired)", "a, b")
            assert colon(Markup("a &amp; b")) == Markup("a &amp; b: ")
            assert str(colon("<b>")) == "<b>: "  # plain text stays plain: the template escapes it


# -- no new Chinese outside gettext --------------------------------------------------------------

ALLOWED = REPO / "tests" / "i18n_allowed_cjk.txt"
WRAPPERS = {"_", "_l", "gettext", "lazy_gettext", "ngettext", "lazy_ngettext", "pgettext",
            "lazy_pgettext", "npgettext", "N_"}


def _allowed() -> tuple[set[str], dict[str, set[str]]]:
    files: set[str] = set()
    literals: dict[str, set[str]] = {}
    import ast

    for line in ALLOWED.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        path, sep, literal = line.partition(": ")
        if sep:
            literals.setdefault(path, set()).add(ast.literal_eval(literal))
        else:
            files.add(path.strip())
    return files, literals


def python_cjk_literals(path: Path) -> list[tuple[int, str]]:
    """String literals with Chinese in a module, outside gettext calls and docstrings."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in WRAPPERS:
                skip.update(id(sub) for arg in node.args for sub in ast.walk(arg))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skip.add(id(body[0].value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CJK.search(node.value)
            and id(node) not in skip]


def test_no_chinese_in_python_outside_gettext():
    files, literals = _allowed()
    found = []
    for path in sorted((REPO / "kb").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in files:
            continue
        for line, text in python_cjk_literals(path):
            if text not in literals.get(rel, set()):
                found.append(f"  {rel}:{line}: {text!r}")
    assert not found, (
        "Chinese text outside _()/_l()/N_(): wrap UI text for translation; if it is data (a header "
        f"alias, a parsing pattern, sample content), add `path: 'text'` to {ALLOWED.name}:\n" + "\n".join(found))


TEMPLATE_STRIP = [re.compile(r"\{#.*?#\}", re.S),
                  re.compile(r"\{%-?\s*trans\b.*?endtrans\s*-?%\}", re.S),
                  re.compile(r"""\b(?:_|gettext|ngettext|pgettext)\((?:\s*(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*,?)+""")]
# Chinese in templates that is not UI text: the language switch names itself, and the stored
# true/false answers are the form values 对/错 (their labels are translated).
TEMPLATE_ALLOWED = re.compile(r'lang="zh-CN">中文<|value="[对错]"|\'[对错]\' in mine')


def test_no_chinese_in_templates_or_scripts_outside_gettext():
    found = []
    for path in sorted((REPO / "kb").rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        for pattern in TEMPLATE_STRIP:
            text = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
        for number, line in enumerate(text.splitlines(), 1):
            if CJK.search(TEMPLATE_ALLOWED.sub("", line)):
                found.append(f"  {path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    for path in sorted((REPO / "kb").rglob("*.js")):
        code = re.sub(r"//[^\n]*|/\*.*?\*/", "", path.read_text(encoding="utf-8"), flags=re.S)
        if path.name == "kb.js":  # search stop words: query words to skip when highlighting, not UI
            code = re.sub(r"var STOP = \[[^\]]*\];", "", code)
        for number, line in enumerate(code.splitlines(), 1):
            if CJK.search(line):
                found.append(f"  {path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert not found, ("Chinese outside {{ _('…') }} in templates, or in scripts (pass script texts "
                       "from the template in data-msg-* attributes):\n" + "\n".join(found))
