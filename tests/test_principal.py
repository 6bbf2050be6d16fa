"""The signed-in person as loaded per request (kb.principal): a read-only snapshot of the user's
and org unit's columns, fresh on every request, without the password digests, with the mapped
User one call away."""

from __future__ import annotations

import pytest
from flask import Blueprint
from flask_login import current_user

from kb import principal
from kb.authz import login_required
from kb.extensions import db
from kb.models import OrgUnit, User

from .conftest import make_org, make_user


@pytest.fixture
def papp(db_app):
    with db_app.app_context():
        county = make_org("county", "甲县")
        town = make_org("township", "甲一镇", county)
        user = make_user("d1", "deputy", town, name="代表甲")
        make_user("nobody", "deputy", None, name="无单位")
        db.session.commit()
        db_app.config["IDS"] = {"d1": user.id, "town": town.id, "county": county.id}
    return db_app


def test_load_reads_columns_and_org_without_secrets(papp):
    ids = papp.config["IDS"]
    with papp.test_request_context():
        p = principal.load(ids["d1"])
        assert isinstance(p, principal.Principal)
        assert (p.id, p.username, p.name, p.role, p.org_unit_id) == (
            ids["d1"], "d1", "代表甲", "deputy", ids["town"])
        assert p.is_authenticated and p.is_active and not p.is_anonymous
        assert p.get_id() == str(ids["d1"])
        assert "password_hash" not in vars(p) and "otp_hash" not in vars(p)
        # columns outside the snapshot come from the mapped User
        assert "created_at" not in vars(p) and p.created_at == p.record().created_at is not None
        assert p.org_unit.name == "甲一镇" and p.org_unit.kind == "township"
        assert p.org_unit.path.endswith(f"/{ids['town']}/")
        # the relationship beyond the snapshot comes from the mapped OrgUnit
        assert p.org_unit.parent.name == "甲县"
        assert p.org_unit == db.session.get(OrgUnit, ids["town"])
        assert principal.load(ids["d1"] + 1000) is None


def test_person_without_org_and_inactive_person(papp):
    with papp.test_request_context():
        nobody = db.session.scalar(db.select(User).where(User.username == "nobody"))
        p = principal.load(nobody.id)
        assert p.org_unit is None
        nobody.active = False
        db.session.commit()
        p = principal.load(nobody.id)
        assert not p.is_active and not p.is_authenticated


def test_read_only_and_record(papp):
    ids = papp.config["IDS"]
    with papp.test_request_context():
        p = principal.load(ids["d1"])
        with pytest.raises(AttributeError, match="read-only"):
            p.role = "admin"
        with pytest.raises(AttributeError, match="read-only"):
            p.org_unit.path = "/"
        with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
            p.nonsense  # noqa: B018
        record = p.record()
        assert isinstance(record, User) and record.id == p.id
        assert record.record() is record and p.org_unit.record().record() is p.org_unit.record()
        # User's methods work through the record; equality is by id, both ways
        assert p.check_password("pw") and not p.check_password("wrong")
        assert p == record and record == p and p != principal.load(ids["d1"] + 1000)
        assert p == principal.load(ids["d1"])


def test_current_user_is_a_fresh_principal_each_request(papp):
    """What the loader gives routes, and that a change made between requests shows."""
    seen = []
    bp = Blueprint("probe", __name__)

    @bp.get("/_probe")
    @login_required
    def probe():
        seen.append((type(current_user._get_current_object()), current_user.role,
                     current_user.org_unit.name))
        return "ok"

    papp.register_blueprint(bp)

    client = papp.test_client()
    assert client.post("/login", data={"login": "d1", "password": "pw"}).status_code == 302
    assert client.get("/_probe").status_code == 200
    with papp.app_context():
        user = db.session.get(User, papp.config["IDS"]["d1"])
        user.role = "chair"
        user.org_unit.name = "甲一镇（改）"
        db.session.commit()
    assert client.get("/_probe").status_code == 200
    assert seen == [(principal.Principal, "deputy", "甲一镇"),
                    (principal.Principal, "chair", "甲一镇（改）")]


def test_password_change_goes_through_the_record(papp):
    client = papp.test_client()
    assert client.post("/login", data={"login": "d1", "password": "pw"}).status_code == 302
    response = client.post("/account/password", data={
        "current": "pw", "new": "a-new-secret-9", "confirm": "a-new-secret-9"})
    assert response.status_code == 302
    with papp.app_context():
        user = db.session.get(User, papp.config["IDS"]["d1"])
        assert user.check_password("a-new-secret-9") and not user.must_change_password
