"""The authorisation matrix: every route, as every role, for own and other organisations.

Routes are discovered from the URL map (core and plugins). A route without an access rule
fails the test, and so does a URL argument the test does not know how to fill.
"""

from __future__ import annotations

import re

import pytest

from kb.authz import access_rule
from kb.extensions import db
from kb.models import ImportBatch

from .conftest import make_org as _org
from .conftest import make_user as _user

INLINE_RE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\sstyle=\"|\son[a-z]+=\"", re.I)
# URL arguments that name an object with an owner; "other" values lie outside county A.
SCOPED_ARGS = {"user_id", "org_id", "token"}
ROLES = ("deputy", "presidium", "chair", "secretary", "county_staff", "admin")
# Names that must never appear in a page shown to someone whose scope excludes them.
OTHER_COUNTY_MARK = "外县甲某"
OTHER_TOWNSHIP_MARK = "邻镇乙某"






@pytest.fixture
def world(synced_app):
    """Two counties; the people under test live in county A, township A1."""
    return build_world(synced_app)


def build_world(synced_app) -> dict:
    """The objects of :func:`world` (also used by the module-wide browser walk in test_a11y)."""
    with synced_app.app_context():
        province = _org("province", "测试省")
        county_a, county_b = _org("county", "甲县", province), _org("county", "乙县", province)
        a1, a2 = _org("township", "甲一镇", county_a), _org("township", "甲二镇", county_a)
        b1 = _org("township", "乙一镇", county_b)
        people = {role: _user(f"a1-{role}", role, a1) for role in ROLES if role not in ("county_staff", "admin")}
        people["county_staff"] = _user("a-staff", "county_staff", county_a)
        people["admin"] = _user("root", "admin", province)
        own_user = _user("a1-someone", "deputy", a1, name="本镇丙某")
        neighbour = _user("a2-deputy", "deputy", a2, name=OTHER_TOWNSHIP_MARK)
        stranger = _user("b1-deputy", "deputy", b1, name=OTHER_COUNTY_MARK)
        b_staff = _user("b-staff", "county_staff", county_b, name=OTHER_COUNTY_MARK + "员")
        own_batch = ImportBatch(token="own-token", actor_id=people["county_staff"].id, filename="a.csv",
                                payload={"filename": "a.csv", "outcomes": [], "file_errors": []})
        other_batch = ImportBatch(token="other-token", actor_id=b_staff.id, filename="b.csv",
                                  payload={"filename": "b.csv", "outcomes": [], "file_errors": []})
        db.session.add_all([own_batch, other_batch])
        db.session.commit()
        ids = {"people": {r: u.id for r, u in people.items()}, "own_user": own_user.id,
               "neighbour": neighbour.id, "stranger": stranger.id, "a1": a1.id, "a2": a2.id,
               "b1": b1.id, "county_a": county_a.id, "county_b": county_b.id,
               "b_staff": b_staff.id, "samplers": {}}
        # Each plugin's tests/authz_<plugin>.py adds its objects and URL argument samplers.
        for module in plugin_world_builders():
            ids["samplers"].update(module.build(synced_app, ids))
            db.session.commit()
    return ids


def _scoped(arg, world) -> bool:
    """An argument names an owned object when its own and other samples differ."""
    if arg in SCOPED_ARGS:
        return True
    sample = world["samplers"].get(arg)
    return sample is not None and sample[0] != sample[1]


def plugin_world_builders():
    """Import tests/authz_*.py: each has ``build(app, world) -> {url arg: (own, other)}``.

    ``own`` lies in township A1 (or belongs to ``world["people"]["deputy"]``), ``other`` in
    county B; give the same value twice for arguments that are not owned (a quiz slug).
    """
    import importlib
    from pathlib import Path

    here = Path(__file__).parent
    return [importlib.import_module(f"tests.{p.stem}") for p in sorted(here.glob("authz_*.py"))]


def samplers(world):
    """URL argument -> (value inside county A township A1, value in county B)."""
    return {
        "user_id": (world["own_user"], world["stranger"]),
        "org_id": (world["a1"], world["b1"]),
        "course_slug": ("basics", "basics"),
        "lesson_slug": ("status", "status"),
        "token": ("own-token", "other-token"),
        "fmt": ("csv", "csv"),
        "filename": ("kb.css", "kb.css"),
        "law_slug": ("地方组织法", "地方组织法"),
        "article": ("第十九条", "第十九条"),
        **world["samplers"],
    }


def routes(app):
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        out.append(rule)
    return out


def test_every_route_declares_its_access(synced_app):
    missing = [r.rule for r in routes(synced_app)
               if access_rule(synced_app.view_functions[r.endpoint]) is None]
    assert not missing, f"routes without an access rule (use kb.authz.public/login_required/roles_required): {missing}"


def test_every_route_argument_has_a_sampler(synced_app, world):
    known = samplers(world)
    unknown = sorted({(r.rule, a) for r in routes(synced_app) for a in r.arguments if a not in known})
    assert not unknown, f"add samplers to tests/test_authz.py for: {unknown}"


def _request(client, app, rule, which, world):
    values = {a: samplers(world)[a][which] for a in rule.arguments}
    with app.test_request_context():
        from flask import url_for

        url = url_for(rule.endpoint, **values)
    method = "GET" if "GET" in rule.methods else sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
    return url, client.open(url, method=method, data={})


def _login(app, username):
    client = app.test_client()
    response = client.post("/login", data={"login": username, "password": "pw"})
    assert response.status_code == 302, f"cannot log in as {username}"
    return client


@pytest.mark.parametrize("role", (None, *ROLES))
def test_matrix(synced_app, world, role):
    app = synced_app
    client = app.test_client() if role is None else _login(app, f"{'a1-' + role if role not in ('county_staff', 'admin') else ('a-staff' if role == 'county_staff' else 'root')}")
    problems = []
    for rule in routes(app):
        if rule.endpoint == "auth.logout":
            continue  # would end the session under test; covered in test_views
        kind, allowed = access_rule(app.view_functions[rule.endpoint])
        for which in (0, 1):
            if which == 1 and not rule.arguments:
                continue
            url, response = _request(client, app, rule, which, world)
            code = response.status_code
            body = response.get_data(as_text=True) if response.mimetype.startswith(("text/", "application/json")) else ""
            if code >= 500:
                problems.append(f"{role} {url}: {code}")
                continue
            if kind == "public":
                pass
            elif role is None:
                if code not in (302, 401, 403):
                    problems.append(f"anonymous {url}: {code} (expected a redirect to sign in)")
                continue
            elif kind == "roles" and role not in allowed:
                if code != 403:
                    problems.append(f"{role} {url}: {code} (role not allowed: expected 403)")
                continue
            elif which == 1 and role != "admin" and any(_scoped(a, world) for a in rule.arguments):
                if code not in (403, 404):
                    problems.append(f"{role} {url}: {code} (object outside scope: expected 403/404)")
                continue
            # The CSP forbids inline script and style: no page may rely on them.
            if response.mimetype == "text/html" and INLINE_RE.search(body):
                problems.append(f"{role} {url}: inline script/style/handler: {INLINE_RE.search(body).group(0)[:60]}")
            # Whatever was returned must not name people outside the viewer's scope.
            if role != "admin" and OTHER_COUNTY_MARK in body:
                problems.append(f"{role} {url}: shows a person of another county")
            if role not in ("admin", "county_staff") and OTHER_TOWNSHIP_MARK in body:
                problems.append(f"{role} {url}: shows a person of another township")
    assert not problems, "\n".join(problems)


def test_matrix_covers_admin_pages(synced_app, world):
    """Sanity: the admin pages exist and an allowed role can open them in scope."""
    client = _login(synced_app, "a-staff")
    page = client.get("/admin/users?active=all").get_data(as_text=True)
    assert OTHER_TOWNSHIP_MARK in page and "本镇丙某" in page and OTHER_COUNTY_MARK not in page
    assert client.get(f"/admin/users/{world['own_user']}").status_code == 200
    assert client.get(f"/admin/users/{world['stranger']}").status_code == 404
    admin = _login(synced_app, "root")
    assert OTHER_COUNTY_MARK in admin.get("/admin/users?active=all").get_data(as_text=True)
