"""The plugin host: loading, allowlist, duplicates, template slots, and one test per hook."""

from __future__ import annotations

import inspect

import click
import pytest
from flask import Blueprint

from kb import create_app, hookspecs
from kb.events import QuizPassed
from kb.pluginhost import PluginError, collect, hookimpl, make_plugin_manager
from kb.records import (
    Asset,
    Card,
    MigrationDir,
    NavItem,
    Panel,
    PersonalSection,
    ReportColumn,
    ReportScope,
)

from .conftest import make_config

HOOK_NAMES = sorted(n for n in dir(hookspecs) if n.startswith("kb_"))


class PagePlugin:
    """A plugin defined in the tests: a page, a nav item, a lesson panel and more."""

    def __init__(self):
        self.events = []
        self.inited = False
        self.synced = None

    @hookimpl
    def kb_init_app(self, app):
        self.inited = True

    @hookimpl
    def kb_blueprints(self, app):
        bp = Blueprint("testplugin", __name__)

        @bp.get("/testplugin/hello")
        def hello():
            return "hello from the test plugin"

        return [bp]

    @hookimpl
    def kb_nav_items(self, user):
        return [NavItem(key="testplugin", label="测试插件导航", url="/testplugin/hello")]

    @hookimpl
    def kb_lesson_panels(self, lesson, user):
        return [Panel(key="testpanel", title="测试面板", html=f"<p>panel for {lesson.slug}</p>")]

    @hookimpl
    def kb_dashboard_cards(self, user):
        return [Card(key="testcard", title="测试卡片", html="<p>card body</p>")]

    @hookimpl
    def kb_continue_learning(self, user):
        return Card(key="continue", title="继续学习测试", html="<p>resume here</p>", slot="continue")

    @hookimpl
    def kb_page_assets(self, endpoint, user):
        if endpoint == "core.lesson":
            return [Asset(kind="js", url="/static/testplugin.js")]
        return []

    @hookimpl
    def kb_track_event(self, event):
        self.events.append(event)

    @hookimpl
    def kb_report_columns(self, scope):
        return [ReportColumn(key="test_col", label="测试列",
                             values=lambda s: {rid: rid * 2 for rid in s.row_ids})]

    @hookimpl
    def kb_personal_data(self, user):
        return [PersonalSection(key="testplugin.notes", title="测试插件笔记", columns=("笔记", "字数"),
                                rows=((f"{user.username} 的笔记", 12),), tables=("notes_note",))]

    @hookimpl
    def kb_can_view(self, user, obj):
        if getattr(obj, "slug", None) == "status":
            return False
        return None

    @hookimpl
    def kb_cli_commands(self, app):
        @click.command("hello-test")
        def hello():
            click.echo("hello from a plugin command")

        return [hello]

    @hookimpl
    def kb_markdown_extensions(self, app):
        from markdown.extensions import Extension
        from markdown.postprocessors import Postprocessor

        class Shout(Postprocessor):
            def run(self, text):
                return text.replace("基层地方国家权力机关", "基层地方国家权力机关（已扩展）")

        class ShoutExtension(Extension):
            def extendMarkdown(self, md):
                md.postprocessors.register(Shout(md), "shout", 1)

        return [ShoutExtension()]

    @hookimpl
    def kb_content_sync(self, app, settings, report):
        self.synced = settings
        report.count("added", "testthing")
        report.problem(settings.quizzes_dir / "x.yaml", 3, "a problem from a plugin")

    @hookimpl
    def kb_search_documents(self, app):
        from kb.search import SearchDoc

        return [SearchDoc(kind="law_article", course="", lesson="law-1", anchor="art-19",
                          url="/laws/1#art-19", title="地方组织法", heading="第十九条",
                          body="乡、民族乡、镇的人民代表大会举行会议的时候，选举主席团。插件文档独有词汇")]

    @hookimpl
    def kb_migration_dirs(self):
        return []

    @hookimpl
    def kb_demo_data(self, app, users):
        self.demo_users = set(users)

    @hookimpl
    def kb_required_courses(self, user, year):
        return ["basics"] if year == 2026 else []


@pytest.fixture
def plugin():
    return PagePlugin()


@pytest.fixture
def papp(tmp_path, plugin):
    """An app with the test plugin registered; torn down with the app (no global state)."""
    from kb import dbmigrate
    from kb.extensions import db

    app = create_app(make_config(tmp_path, TEST_PLUGINS=[("testplugin", plugin)]))
    with app.app_context():
        dbmigrate.upgrade(app)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def psynced(papp):
    from kb.cli import run_sync

    run_sync(papp)
    return papp


# -- the meta-tests ---------------------------------------------------------------------------

def test_every_hook_has_a_test():
    tested = {name[len("test_hook_"):] for name in globals() if name.startswith("test_hook_")}
    missing = [h for h in HOOK_NAMES if h not in tested]
    assert not missing, f"hooks without a test_hook_<name>: {missing}"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_documented(name):
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec)
    assert doc, f"{name} has no docstring"
    for param in inspect.signature(spec).parameters:
        assert f":param {param}:" in doc, f"{name} does not document {param}"
    assert ":return:" in doc
    if spec.kb_spec.get("firstresult"):
        assert "first non-None result" in doc


def test_test_plugin_is_unregistered_after_its_test(app):
    assert not app.extensions["kb.pm"].has_plugin("testplugin")


# -- one test per hook ------------------------------------------------------------------------

def test_hook_kb_init_app(papp, plugin):
    assert plugin.inited


def test_hook_kb_blueprints(papp):
    assert papp.test_client().get("/testplugin/hello").data == b"hello from the test plugin"


def test_hook_kb_nav_items(psynced):
    page = psynced.test_client().get("/").get_data(as_text=True)
    assert "测试插件导航" in page and 'href="/testplugin/hello"' in page


def test_hook_kb_lesson_panels(psynced):
    page = psynced.test_client().get("/courses/basics/presidium").get_data(as_text=True)
    assert "测试面板" in page and "panel for presidium" in page


def test_hook_kb_dashboard_cards(psynced):
    page = psynced.test_client().get("/").get_data(as_text=True)
    assert "测试卡片" in page and "card body" in page


def test_hook_kb_continue_learning(psynced):
    from kb.extensions import db
    from kb.models import User

    with psynced.app_context():
        user = User(username="d1", name="代表甲", role="deputy")
        user.set_password("pw")
        db.session.add(user)
        db.session.commit()
    client = psynced.test_client()
    assert "继续学习测试" not in client.get("/").get_data(as_text=True)
    client.post("/login", data={"login": "d1", "password": "pw"})
    assert "继续学习测试" in client.get("/").get_data(as_text=True)


def test_hook_kb_page_assets(psynced):
    client = psynced.test_client()
    assert "/static/testplugin.js" in client.get("/courses/basics/presidium").get_data(as_text=True)
    assert "/static/testplugin.js" not in client.get("/").get_data(as_text=True)


def test_hook_kb_track_event(papp, plugin):
    from kb import emit

    event = QuizPassed(user_id=1, key="quiz:q1:1", quiz_slug="q1", quiz_title="测验",
                       attempt_id=7, score=90.0)
    with papp.app_context():
        emit(event)
    assert plugin.events == [event]


def test_hook_kb_report_columns(papp):
    columns = collect(papp.extensions["kb.pm"], "kb_report_columns",
                      scope=ReportScope(level="township", row_ids=(1, 2), year=2026))
    [column] = [c for c in columns if c.key == "test_col"]
    assert column.values(ReportScope(level="township", row_ids=(1, 2), year=2026)) == {1: 2, 2: 4}


def test_hook_kb_personal_data(papp):
    from kb.extensions import db
    from kb.models import User

    with papp.app_context():
        user = User(username="d1", name="代表甲", role="deputy")
        user.set_password("pw")
        db.session.add(user)
        db.session.commit()
    client = papp.test_client()
    client.post("/login", data={"login": "d1", "password": "pw"})
    doc = client.get("/account/data.json").get_json()
    [section] = [s for s in doc["sections"] if s["key"] == "testplugin.notes"]
    assert section == {"key": "testplugin.notes", "title": "测试插件笔记", "columns": ["笔记", "字数"],
                       "rows": [["d1 的笔记", 12]]}
    assert [s["key"] for s in doc["sections"]][0] == "core.profile"  # order 100 after the profile
    assert "测试插件笔记" in client.get("/account/data").get_data(as_text=True)


def test_hook_kb_can_view(psynced):
    client = psynced.test_client()
    assert client.get("/courses/basics/status").status_code == 404
    assert client.get("/courses/basics/presidium").status_code == 200


def test_hook_kb_cli_commands(papp):
    from click.testing import CliRunner

    from kb.cli import build_cli

    result = CliRunner().invoke(build_cli(papp), ["hello-test"])
    assert result.output.strip() == "hello from a plugin command"


def test_hook_kb_markdown_extensions(psynced):
    page = psynced.test_client().get("/courses/basics/presidium").get_data(as_text=True)
    assert page  # the extension applies to the status lesson (hidden by kb_can_view here)
    from kb import get_catalog

    with psynced.app_context():
        assert "（已扩展）" in get_catalog().lesson("basics", "status").html


def test_hook_kb_content_sync(papp, plugin):
    from kb.cli import run_sync

    report = run_sync(papp)
    assert plugin.synced.quizzes_dir.name == "quizzes"
    assert report.added["testthing"] == 1
    assert any(p.message == "a problem from a plugin" and p.line == 3 for p in report.problems)


def test_hook_kb_search_documents(psynced):
    from kb import search_index

    with psynced.app_context():
        hits = search_index().search("插件文档独有词汇").hits
    assert hits and hits[0].kind == "law_article" and hits[0].url == "/laws/1#art-19"


MIGRATION = '''
from alembic import op
import sqlalchemy as sa

revision = "tp0001"
down_revision = None
branch_labels = ("testplugin",)
depends_on = "c0001"


def upgrade():
    op.create_table("testplugin_thing", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("testplugin_thing")
'''


def test_hook_kb_migration_dirs(tmp_path):
    import sqlalchemy as sa

    from kb import dbmigrate
    from kb.extensions import db

    versions = tmp_path / "tp_versions"
    versions.mkdir()
    (versions / "tp0001_thing.py").write_text(MIGRATION)

    class TablePlugin:
        @hookimpl
        def kb_migration_dirs(self):
            return [MigrationDir(branch="testplugin", path=versions)]

    app = create_app(make_config(tmp_path, TEST_PLUGINS=[("testplugin", TablePlugin())]))
    with app.app_context():
        dbmigrate.upgrade(app)
        assert "testplugin_thing" in sa.inspect(db.engine).get_table_names()
        assert "tp0001" in dbmigrate.current(app) and not dbmigrate.needs_upgrade(app)
        db.engine.dispose()


def test_second_core_migration_branch_is_refused(tmp_path):
    class MigPlugin:
        @hookimpl
        def kb_migration_dirs(self):
            return [MigrationDir(branch="core", path=tmp_path)]

    app = create_app(make_config(tmp_path, TEST_PLUGINS=[("migplugin", MigPlugin())]))
    from kb import dbmigrate

    # A second "core" branch is refused with both plugin names.
    with pytest.raises(PluginError, match="migplugin"):
        dbmigrate.alembic_config(app)


def test_hook_kb_required_courses(papp):
    from kb.pluginhost import call_each

    results = call_each(papp.extensions["kb.pm"], "kb_required_courses", user=None, year=2026)
    assert ("testplugin", ["basics"]) in results


def test_hook_kb_demo_data(papp, plugin):
    from kb.demo import load_demo

    with papp.app_context():
        load_demo(papp, "pw")
    assert "t1-chair" in plugin.demo_users and "admin" in plugin.demo_users


# -- host behaviour ---------------------------------------------------------------------------

def test_builtin_plugins_load_from_tuple(app):
    from kb.pluginhost import plugin_names

    assert plugin_names(app.extensions["kb.pm"]) == ["quizzes", "attendance", "progress"]


def test_allowlist_limits_plugins(tmp_path):
    from kb.pluginhost import plugin_names

    app = create_app(make_config(tmp_path, PLUGINS=["progress"]))
    assert plugin_names(app.extensions["kb.pm"]) == ["progress"]


def test_allowlist_naming_a_missing_plugin_refuses_to_start(tmp_path):
    with pytest.raises(PluginError, match="not installed: nosuch"):
        create_app(make_config(tmp_path, PLUGINS=["progress", "nosuch"]))


def test_misspelled_hook_fails_loudly():
    class Typo:
        @hookimpl
        def kb_nav_itemz(self, user):
            return []

    with pytest.raises(Exception, match="kb_nav_itemz"):
        make_plugin_manager([], extra=[("typo", Typo())])


def test_duplicate_registrations_name_both_plugins(tmp_path):
    class One:
        @hookimpl
        def kb_nav_items(self, user):
            return [NavItem(key="same", label="一", url="/1")]

    class Two:
        @hookimpl
        def kb_nav_items(self, user):
            return [NavItem(key="same", label="二", url="/2")]

    pm = make_plugin_manager([], extra=[("one", One()), ("two", Two())])
    with pytest.raises(PluginError, match="'same' registered by both 'two' and 'one'"):
        collect(pm, "kb_nav_items", user=None)


def test_duplicate_blueprint_names_are_refused(tmp_path):
    class BpA:
        @hookimpl
        def kb_blueprints(self, app):
            return [Blueprint("dup", __name__)]

    class BpB:
        @hookimpl
        def kb_blueprints(self, app):
            return [Blueprint("dup", __name__)]

    with pytest.raises(PluginError, match="both"):
        create_app(make_config(tmp_path, TEST_PLUGINS=[("a", BpA()), ("b", BpB())]))


def test_external_plugins_come_from_entry_points(tmp_path, monkeypatch):
    import kb.pluginhost as host

    class FakeEntryPoint:
        name = "extplugin"
        value = "tests.ext:plugin"

        def load(self):
            class Ext:
                @hookimpl
                def kb_nav_items(self, user):
                    return [NavItem(key="ext", label="外部插件", url="/ext")]

            return Ext()

    monkeypatch.setattr(host, "entry_points", lambda group: [FakeEntryPoint()] if group == "kb.plugins" else [])
    pm = make_plugin_manager(None)
    assert "extplugin" in host.plugin_names(pm)
    assert make_plugin_manager(["progress"]).has_plugin("extplugin") is False


def test_kb_plugins_command_lists_hooks(tmp_path, plugin):
    from click.testing import CliRunner

    from kb.cli import build_cli

    app = create_app(make_config(tmp_path, TEST_PLUGINS=[("testplugin", plugin)]))
    out = CliRunner().invoke(build_cli(app), ["plugins"]).output
    assert "testplugin:" in out and "kb_nav_items" in out and "core: kb_can_view" in out
