"""Accessibility of every page: axe-core in Debian's Chromium on each GET route, as each role.

The URLs come from the app's URL map filled with the authorisation matrix's objects
(tests/test_authz.py and tests/authz_*.py), so a new page is checked without being listed here;
a GET route that no role sees as an HTML page must be named in NOT_PAGES with its reason.
Pages the matrix's objects do not show get what they need here (_pages_needing_more: a law in
the library, a quiz attempt still open, a fresh QR token); the 503 page has a test of its own.
Each page is checked in normal and large-font mode, on a 360 px wide phone viewport.
"""

from __future__ import annotations

import pytest

from .browser_support import (
    PHONE,
    LiveServer,
    build_synced_app,
    dispose,
    require_chromium,
)
from .conftest import make_config
from .test_a11y import require_axe, violations
from .test_authz import ROLES, build_world, routes, samplers

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("a11y-pages")]

USERNAMES = {"county_staff": "a-staff", "admin": "root",
             **{r: f"a1-{r}" for r in ROLES if r not in ("county_staff", "admin")}}
# GET routes that are not HTML pages (files, JSON, redirects), with the reason.
NOT_PAGES = {
    "core.healthz": "JSON status for load balancers",
    "core.prefs": "sets a preference and redirects",
    "auth.logout": "ends the session",
    "api.openapi": "YAML API description", "api.search": "JSON API", "laws.article_api": "JSON API",
    "people.user_export": "CSV/XLSX download", "people.user_template": "CSV download",
    "attendance.class_export": "download", "attendance.report_export": "download",
    "attendance.report_org_export": "download", "attendance.session_export": "download",
    "attendance.live_json": "JSON for the live page", "attendance.projector_json": "JSON for the projector",
    "progress.report_export": "download",
    "auth.my_data_json": "JSON download", "auth.my_data_xlsx": "XLSX download",
    "quizzes.export": "XLSX download", "quizzes.template": "XLSX download",
    "people.index": "redirects to the users list",
    "progress.report_home": "redirects to the report of the viewer's organisation",
}
# A law for the law page (laws.law, the sampler's 地方组织法 and 第十九条), imported into the world.
LAW_FILE = "地方各级人民代表大会和地方各级人民政府组织法(2022-03-11).md"
LAW_MD = """# 中华人民共和国地方各级人民代表大会和地方各级人民政府组织法

2022年3月11日 第十三届全国人民代表大会第五次会议第六次修正

<!-- INFO END -->

## 第一章　总　则

第一条 为了健全地方各级人民代表大会和地方各级人民政府的组织和工作制度，制定本法。

## 第二章 地方各级人民代表大会

### 第一节 一般规定

第十八条 乡、民族乡、镇的人民代表大会设主席，并可以设副主席一人至二人。

第十九条 乡、民族乡、镇的人民代表大会主席、副主席在本级人民代表大会闭会期间负责联系本级人民代表大会代表，根据主席团的安排组织代表开展活动，反映代表和群众对本级人民政府工作的建议、批评和意见，并负责处理主席团的日常工作。

（一）听取和讨论本级人民政府的专项工作报告；

（二）组织代表开展视察、调研等活动。
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_chromium()
    require_axe()
    root = tmp_path_factory.mktemp("a11y-pages")
    # A scanned QR token stays accepted for the whole walk (the default grace is 15 s).
    app = build_synced_app(make_config(root, ATTENDANCE_TOKEN_GRACE=7200))
    world = build_world(app)
    world["endpoint_args"] = _pages_needing_more(app, world, root)
    with LiveServer(app) as server:
        server.world = world
        yield server
    dispose(app)



def _pages_needing_more(app, world, root) -> dict:
    """What the pages the matrix's objects do not show need: a law in the library, an attempt
    still being taken, a fresh QR token. Returns URL values by endpoint, over the samplers'."""
    from kb.extensions import db
    from kb.laws.library import import_paths
    from kb.models import User
    from kb.plugins.attendance import service as attendance
    from kb.plugins.quizzes import service as quizzes
    from kb.plugins.quizzes.models import Quiz

    laws = root / "laws"
    laws.mkdir()
    (laws / LAW_FILE).write_text(LAW_MD, encoding="utf-8")
    with app.app_context():
        result = import_paths([laws])
        assert result.imported and not result.errors, result
        quiz = db.session.query(Quiz).filter_by(slug="a-bank").one()
        attempt = quizzes.start_attempt(quiz, db.session.get(User, world["people"]["deputy"])).id
        db.session.commit()
        token = attendance.make_token(world["samplers"]["session_id"][0])
    return {"quizzes.take": {"attempt_id": attempt}, "attendance.checkin": {"t": token}}


def _urls(app, world):
    from flask import url_for

    known = samplers(world)
    out = []
    with app.test_request_context():
        for rule in routes(app):
            if "GET" not in rule.methods or rule.endpoint in NOT_PAGES:
                continue
            values = {a: known[a][0] for a in rule.arguments}
            values.update(world.get("endpoint_args", {}).get(rule.endpoint, {}))
            out.append((rule.endpoint, url_for(rule.endpoint, **values)))
    return out


@pytest.mark.parametrize("role", (None, *ROLES))
def test_every_page_passes_axe_as_every_role(served, browser, role):
    context = browser.new_context(**PHONE, bypass_csp=True)
    if role is not None:
        answer = context.request.post(served.url + "/login",
                                      form={"login": USERNAMES[role], "password": "pw"},
                                      max_redirects=0)
        assert answer.status == 302, f"cannot sign in as {role}"
    page = context.new_page()
    problems, errors_checked, seen = [], set(), set()
    for _endpoint, url in _urls(served.app, served.world):
        response = page.goto(served.url + url)
        if response is None or "text/html" not in (response.headers.get("content-type") or ""):
            continue
        status = response.status
        if status != 200:
            if status in errors_checked:  # the same error page: checked once per role
                continue
            errors_checked.add(status)
        else:
            seen.add(url)
        for found in violations(page):
            problems.append(f"{role} {url} ({status}): {found}")
    # large-font mode: the same pages again
    context.add_cookies([{"name": "kb_font", "value": "large", "url": served.url}])
    for _endpoint, url in _urls(served.app, served.world):
        if url not in seen:
            continue
        page.goto(served.url + url)
        assert page.evaluate("document.documentElement.classList.contains('font-large')")
        for found in violations(page):
            problems.append(f"{role} large-font {url}: {found}")
    context.close()
    assert not problems, "\n".join(problems)


def test_every_get_route_was_checked(served):
    """Each GET route (not in NOT_PAGES) is an HTML page for some role, so the walk checks it.
    Asked through the test client (the same URLs and sessions as the walk), so it does not
    depend on which xdist worker ran which walk."""
    app, seen = served.app, set()
    for role in (None, *ROLES):
        client = app.test_client()
        if role is not None:
            assert client.post("/login", data={"login": USERNAMES[role], "password": "pw"}).status_code == 302
        for endpoint, url in _urls(app, served.world):
            response = client.get(url)
            if response.status_code == 200 and response.mimetype == "text/html":
                seen.add(endpoint)
    missing = [endpoint for endpoint, _url in _urls(app, served.world) if endpoint not in seen]
    assert not missing, ("GET routes no role sees as a page (give them objects in tests/authz_*.py "
                         f"or a reason in NOT_PAGES): {missing}")


def test_the_503_page_passes_axe(browser, tmp_path):
    """The page shown while the database cannot be reached (nothing listens on its port)."""
    from kb import create_app

    from .faults_support import free_port

    app = create_app(make_config(tmp_path, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/kb"))
    problems = []
    with LiveServer(app) as server:
        context = browser.new_context(**PHONE, bypass_csp=True)
        page = context.new_page()
        for font in ("normal", "large"):
            context.add_cookies([{"name": "kb_font", "value": font, "url": server.url}])
            for path in ("/", "/courses/basics/presidium"):
                response = page.goto(server.url + path)
                assert response.status == 503 and response.headers["retry-after"] == "5"
                assert "text/html" in response.headers["content-type"]
                assert "服务暂时不可用" in page.locator("h1").inner_text()
                problems += [f"{font} {path}: {found}" for found in violations(page)]
        context.close()
    dispose(app)
    assert not problems, "\n".join(problems)
