"""Core pages, search page and API, health, preferences, sign-in and security headers."""

from __future__ import annotations

import pytest

from kb.extensions import db
from kb.models import User

from .conftest import login


@pytest.fixture
def client(synced_app):
    return synced_app.test_client()


def add_user(app, username, role, password="pw", active=True):
    with app.app_context():
        user = User(username=username, name=username, role=role, active=active)
        user.set_password(password)
        db.session.add(user)
        db.session.commit()


def text(response):
    return response.get_data(as_text=True)


def test_home_lists_courses_and_search_box(client):
    page = text(client.get("/"))
    assert "乡镇人大基础（测试）" in page and "代表履职（测试）" in page
    assert 'action="/search"' in page and 'name="q"' in page


def test_course_page_lists_lessons_in_order(client):
    page = text(client.get("/courses/basics"))
    assert page.index("乡镇人大的性质和地位") < page.index("主席团和主席")
    assert "这是测试课程的介绍" in page


def test_lesson_page_has_breadcrumbs_toc_pager_and_sources(client):
    page = text(client.get("/courses/basics/status"))
    assert 'href="/courses/basics"' in page  # breadcrumb
    assert 'href="#第一章-总则"' in page and 'href="#代表的任期"' in page  # TOC
    assert 'rel="next" href="/courses/basics/presidium"' in page
    assert "地方组织法(2022) 第十九条" not in page and "地方组织法(2022) 第二条" in page
    prev_page = text(client.get("/courses/basics/presidium"))
    assert 'rel="prev" href="/courses/basics/status"' in prev_page


def test_unknown_pages_are_404(client):
    assert client.get("/courses/nope").status_code == 404
    assert client.get("/courses/basics/nope").status_code == 404
    assert "页面不存在" in text(client.get("/courses/nope"))


def test_audience_lessons_are_hidden_from_others(synced_app, client):
    assert client.get("/courses/duties/chair-only").status_code == 404
    assert "主席的年度工作计划" not in text(client.get("/courses/duties"))
    add_user(synced_app, "chair", "chair")
    add_user(synced_app, "dep", "deputy")
    chair = synced_app.test_client()
    login(chair, "chair")
    assert chair.get("/courses/duties/chair-only").status_code == 200
    deputy = synced_app.test_client()
    login(deputy, "dep")
    assert deputy.get("/courses/duties/chair-only").status_code == 404
    # search respects the audience too
    assert "chair-only" not in text(deputy.get("/api/v1/search?q=年度计划"))
    assert "chair-only" in text(chair.get("/api/v1/search?q=年度计划"))


def test_search_page_finds_the_section(client):
    page = text(client.get("/search?q=主席团闭会期间做什么"))
    first = page.index('class="hit"')
    assert "/courses/basics/presidium?hl=" in page[first:first + 400]
    assert "#闭会期间主席团做什么" in page[first:first + 400]
    assert "<mark>" in page


def test_search_filters_and_empty_result(client):
    assert "presidium" not in text(client.get("/search?q=主席团&course=duties"))
    page = text(client.get("/search?q=量子纠缠超导体"))
    assert "没有找到" in page


def test_search_api(client):
    data = client.get("/api/v1/search?q=代表建议&limit=1").get_json()
    assert data["query"] == "代表建议" and len(data["results"]) == 1
    hit = data["results"][0]
    assert set(hit) == {"url", "kind", "course", "lesson", "title", "heading", "snippet", "score"}
    assert hit["course"] == "duties"
    assert client.get("/api/v1/search?q=").get_json()["results"] == []
    assert client.get("/api/v1/search?q=代表&limit=abc&page=-3").status_code == 200


HOSTILE = ['"', "'", '"主席团', "主席团 AND OR NOT", "(((", "title:主席团", "*", "?", "~2",
           "'; DROP TABLE lesson; --", "主" * 5000, "😀👍🏽", "\x00\x01", "<script>alert(1)</script>",
           "%", "\\", "a" * 300, "主席团^10", "[1 TO 5]", "{}", "-", "NOT", "代表 -建议"]


@pytest.mark.parametrize("q", HOSTILE)
def test_any_query_never_500s(client, q):
    for url in ("/search", "/api/v1/search"):
        response = client.get(url, query_string={"q": q})
        assert response.status_code == 200
    assert "<script>alert" not in text(client.get("/search", query_string={"q": q}))


def test_openapi_file_is_served(client):
    import yaml

    response = client.get("/api/v1/openapi.yaml")
    spec = yaml.safe_load(response.data)
    assert "/search" in spec["paths"]


def test_healthz(client):
    data = client.get("/healthz").get_json()
    assert data["status"] == "ok" and data["database"]["ok"] and data["index"]["documents"] > 0


def test_healthz_without_index_is_degraded(app):
    data = app.test_client().get("/healthz").get_json()
    assert data["status"] == "degraded" and data["index"]["ok"] is False


def test_search_without_index_says_so(app):
    page = text(app.test_client().get("/search?q=主席团"))
    assert "搜索索引正在重建" in page


def test_security_headers(client):
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_no_inline_scripts_in_pages(client):
    import re

    for url in ("/", "/courses/basics", "/courses/basics/status", "/search?q=代表", "/login"):
        for tag in re.findall(r"<script[^>]*>", text(client.get(url))):
            assert "src=" in tag, f"inline script on {url}"


def test_large_font_preference(client):
    response = client.post("/prefs", data={"font": "large", "next": "/courses/basics"})
    assert response.status_code == 302 and response.headers["Location"] == "/courses/basics"
    assert 'class="font-large"' in text(client.get("/"))
    client.post("/prefs", data={"font": "normal"})
    assert 'class="font-large"' not in text(client.get("/"))


def test_prefs_refuses_open_redirect(client):
    response = client.post("/prefs", data={"font": "large", "next": "//evil.example/"})
    assert response.headers["Location"] == "/"


def test_english_ui(client):
    client.post("/prefs", data={"lang": "en"})
    page = text(client.get("/"))
    assert 'lang="en"' in page


def test_login_logout_and_no_user_enumeration(synced_app, client):
    add_user(synced_app, "dep", "deputy")
    add_user(synced_app, "gone", "deputy", active=False)
    wrong_pw = text(client.post("/login", data={"login": "dep", "password": "x"}))
    no_user = text(client.post("/login", data={"login": "nobody", "password": "x"}))
    inactive = text(client.post("/login", data={"login": "gone", "password": "pw"}))
    msg = "手机号/用户名或密码不正确。"
    assert msg in wrong_pw and msg in no_user and msg in inactive
    response = login(client, "dep")
    assert response.status_code == 302
    assert "退出" in text(client.get("/"))
    client.post("/logout")
    assert "退出" not in text(client.get("/"))


def test_login_redirect_is_local_only(synced_app, client):
    add_user(synced_app, "dep", "deputy")
    response = client.post("/login?next=https://evil.example/", data={"login": "dep", "password": "pw"})
    assert response.headers["Location"] == "/"


def test_forms_need_csrf_when_enabled(tmp_path):
    from kb import create_app, dbmigrate

    from .conftest import make_config

    app = create_app(make_config(tmp_path, WTF_CSRF_ENABLED=True))
    with app.app_context():
        dbmigrate.upgrade(app)
    client = app.test_client()
    assert client.post("/prefs", data={"font": "large"}).status_code == 400
    assert client.post("/login", data={"login": "a", "password": "b"}).status_code == 400
    assert 'name="csrf_token"' in text(client.get("/login"))


def test_production_refuses_default_secret(tmp_path):
    from kb import create_app
    from kb.app import ConfigurationError

    from .conftest import make_config

    with pytest.raises(ConfigurationError, match="KB_SECRET_KEY"):
        create_app(make_config(tmp_path, ENV="production", SECRET_KEY="dev-insecure-change-me"))
    app = create_app(make_config(tmp_path, ENV="production", SECRET_KEY="x" * 40))
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_config_from_environment(tmp_path, monkeypatch):
    from kb import create_app

    monkeypatch.setenv("KB_INDEX_DIR", str(tmp_path / "idx-from-env"))
    monkeypatch.setenv("KB_PLUGINS", "progress")
    monkeypatch.setenv("KB_CATALOG_TTL", "5")
    app = create_app({"INSTANCE_DIR": str(tmp_path / "i"), "TESTING": True})
    assert app.config["INDEX_DIR"] == str(tmp_path / "idx-from-env")
    assert app.config["PLUGINS"] == ["progress"] and app.config["CATALOG_TTL"] == 5.0
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")


def test_catalog_is_not_read_per_request(synced_app, client):
    """Lesson pages come from the in-memory catalog: no lesson query per request."""
    from sqlalchemy import event

    synced_app.config["CATALOG_TTL"] = 60
    synced_app.extensions["kb.catalog"].ttl = 60
    client.get("/courses/basics/status")
    statements = []
    with synced_app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    client.get("/courses/basics/status")
    client.get("/courses/basics/presidium")
    assert not [s for s in statements if "lesson" in s.lower()]


def test_database_outage_is_a_clear_503(synced_app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def boom(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    client = synced_app.test_client()
    add_user(synced_app, "dep", "deputy")
    login(client, "dep")
    monkeypatch.setattr(db.session, "get", boom)  # the user loader's query fails
    response = client.get("/")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    page = text(response)
    assert "服务暂时不可用" in page and "Traceback" not in page
    monkeypatch.undo()
    assert client.get("/").status_code == 200  # recovers by itself


def test_anonymous_reading_creates_no_session(client):
    for url in ("/", "/courses/basics", "/courses/basics/presidium", "/search?q=主席团"):
        assert "Set-Cookie" not in client.get(url).headers, url


def test_prefs_by_get_from_another_site_changes_nothing(client):
    response = client.get("/prefs?font=large&next=/", headers={"Sec-Fetch-Site": "cross-site"})
    assert "kb_font=large" not in response.headers.get("Set-Cookie", "")
    same = client.get("/prefs?font=large&next=/", headers={"Sec-Fetch-Site": "same-origin"})
    assert "kb_font=large" in same.headers.get("Set-Cookie", "")


def test_cached_lesson_pages_follow_the_viewer(synced_app, client):
    """The cached anonymous page never leaks to a signed-in reader, and vice versa."""
    add_user(synced_app, "dep", "deputy")
    assert "退出" not in text(client.get("/courses/basics/presidium"))
    login(client, "dep")
    assert "退出" in text(client.get("/courses/basics/presidium"))
    other = synced_app.test_client()
    assert "退出" not in text(other.get("/courses/basics/presidium"))


def test_session_cookie_follows_a_secret_key_rotation(synced_app):
    """The session serializer is made once per key set (kb.app.CookieSessions): a new
    SECRET_KEY signs out everyone, unless the old key is listed in SECRET_KEY_FALLBACKS."""
    add_user(synced_app, "rot", "deputy")
    client = synced_app.test_client()
    login(client, "rot")
    assert b'action="/logout"' in client.get("/").data
    old = synced_app.config["SECRET_KEY"]
    synced_app.config["SECRET_KEY"] = old + "-new"
    assert b'action="/logout"' not in client.get("/").data
    synced_app.config["SECRET_KEY_FALLBACKS"] = [old]
    assert b'action="/logout"' in client.get("/").data
    synced_app.config["SECRET_KEY_FALLBACKS"] = []
    assert b'action="/logout"' not in client.get("/").data


def test_core_nav_links_follow_the_url_prefix(synced_app):
    """Served under a prefix (SCRIPT_NAME, e.g. behind a proxy at /kb/), the core's nav links
    point inside it, like every other link; the same worker still serves unprefixed pages."""
    add_user(synced_app, "navstaff", "county_staff")
    client = synced_app.test_client()
    login(client, "navstaff")
    prefixed = text(client.get("/", base_url="http://localhost/kb/"))
    assert 'href="/kb/laws"' in prefixed and 'href="/kb/admin/users"' in prefixed
    assert 'href="/laws"' not in prefixed
    plain = text(client.get("/"))
    assert 'href="/laws"' in plain and 'href="/admin/users"' in plain
