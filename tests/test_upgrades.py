"""Upgrades from every released schema, with data in it, on SQLite and PostgreSQL.

Each release fixture (tests/fixtures/releases/NAME.json, made by make_fixture.py in that folder
with that release's own code) holds every row of a database of that release. For each one: an
empty database is upgraded to the release's revisions, the rows are loaded, ``upgrade heads``
runs, and then every row must still be there with every value unchanged (or changed as a
migration says, in tests/release_data.py), the schema must equal the models, and the app must
work on the data (sign in, pages, a new write). The migrations' downgrade functions are
checked too: back down to the release's revisions keeps its data, and up again is clean.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from kb import create_app, dbmigrate
from kb.extensions import db

from .conftest import login, make_config
from .release_data import (
    RELEASES_DIR,
    assert_fixture_data,
    jsonable,
    load_fixture,
    read_fixture,
    reflect,
)

# Oldest first. Each landed state whose schema changed (git log --stat -- kb/migrations
# kb/plugins/*/migrations); 0.1.0 is the schema at the end of session 1 (stop 9).
RELEASES = ["r1-foundation", "r2-people", "r3-laws", "r4-attendance", "r5-progress", "0.1.0"]
PASSWORD = "pw"  # make_fixture.py's demo password


def _branches(app) -> dict[str, list[str]]:
    """Each branch label and its revisions, newest first."""
    script = ScriptDirectory.from_config(dbmigrate.alembic_config(app))
    out: dict[str, list[str]] = {}
    for rev in script.walk_revisions():
        (label,) = rev.branch_labels
        out.setdefault(label, []).append(rev.revision)
    return out


def downgrade_to(app, revisions: list[str]) -> None:
    """From the heads back down to a release's revisions: plugin branches first."""
    branches = _branches(app)
    with db.engine.begin() as conn:
        cfg = dbmigrate.alembic_config(app, conn)
        for label in sorted(branches, key=lambda b: b == "core"):
            mine = [r for r in revisions if r in branches[label]]
            command.downgrade(cfg, mine[0] if mine else f"{label}@base")


def fixture_clock(fixture: dict) -> dt.datetime | None:
    """The moment the fixture was made, as its training sessions show it: after every closed
    session, before the first open one. The app runs on the fixture at that moment, so that
    time passing does not close its sessions (which would write rows the round trip does not
    expect)."""
    table = fixture["tables"].get("attendance_session")
    if not table or not table["rows"]:
        return None
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["rows"]]
    open_starts = [dt.datetime.fromisoformat(r["starts_at"]) for r in rows if r["closed_at"] is None]
    closed = [dt.datetime.fromisoformat(r["closed_at"]) for r in rows if r["closed_at"]]
    moment = min(open_starts) - dt.timedelta(minutes=1) if open_starts else max(closed)
    assert not closed or moment >= max(closed)
    return moment


def schema_diff(app) -> list:
    with db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                db.metadata)


def check_the_app_works_on_the_data(app, fixture: dict) -> None:
    """Sign in as a demo person and use the pages their data feeds; write something new."""
    tables = fixture["tables"]
    client = app.test_client()
    assert login(client, "t1-d01", PASSWORD).status_code == 302
    lesson = tables["lesson"]["rows"][0]
    cols = tables["lesson"]["columns"]
    course_slug = dict(zip(tables["course"]["columns"], tables["course"]["rows"][0], strict=True))
    lesson_page = client.get(f"/courses/{course_slug['slug']}/{lesson[cols.index('slug')]}")
    assert lesson_page.status_code in (200, 404)  # the first lesson may be in the other course
    assert client.get("/courses/basics/status").status_code == 200
    progress = client.get("/progress/")
    assert progress.status_code == 200
    if tables.get("progress_claim", {}).get("rows"):
        title = tables["progress_claim"]["rows"][0][tables["progress_claim"]["columns"].index("title")]
        assert title in progress.get_data(as_text=True)
    if tables.get("law", {}).get("rows"):
        law = dict(zip(tables["law"]["columns"], tables["law"]["rows"][0], strict=True))
        page = client.get(f"/laws/{law['slug']}")
        assert page.status_code == 200 and law["title"] in page.get_data(as_text=True)
    if tables.get("attendance_class", {}).get("rows"):
        klass = dict(zip(tables["attendance_class"]["columns"], tables["attendance_class"]["rows"][0],
                         strict=True))
        assert klass["title"] in client.get("/attendance/").get_data(as_text=True)
    users = {row[tables["user"]["columns"].index("username")]: row[0]
             for row in tables["user"]["rows"]}
    if tables.get("quiz_attempt", {}).get("rows"):
        cols = tables["quiz_attempt"]["columns"]
        mine = [r for r in tables["quiz_attempt"]["rows"]
                if r[cols.index("user_id")] == users["t1-d01"] and r[cols.index("status")] == "submitted"]
        for attempt in mine[:1]:
            assert client.get(f"/quizzes/attempt/{attempt[0]}/result").status_code == 200
    # A new write on the upgraded data (new ids after the fixture's).
    claim = {"title": "升级后的申报", "held_on": dt.date.today().isoformat(), "hours": "2"}
    assert client.post("/progress/claims/new", data=claim).status_code == 302
    with app.app_context():
        from kb.plugins.progress.models import Claim, LedgerEntry, UserYear

        assert db.session.scalar(sa.select(Claim.user_id).where(Claim.title == "升级后的申报")) == \
            users["t1-d01"]
        # The report totals agree with the ledger (p0002 filled them from it).
        sums = dict(((u, y), h) for u, y, h in db.session.execute(
            sa.select(LedgerEntry.user_id, LedgerEntry.year, sa.func.sum(LedgerEntry.hours))
            .group_by(LedgerEntry.user_id, LedgerEntry.year)))
        totals = {(r.user_id, r.year): r.hours for r in db.session.scalars(sa.select(UserYear))}
        assert totals == pytest.approx(sums)


def test_every_release_fixture_is_tested_and_in_order():
    on_disk = {p.stem for p in RELEASES_DIR.glob("*.json")}
    assert on_disk == set(RELEASES)
    fixtures = [read_fixture(name) for name in RELEASES]
    assert all(f["release"] == name for f, name in zip(fixtures, RELEASES, strict=True))
    assert all(f["tables"] and f["revisions"] for f in fixtures)


@pytest.mark.parametrize("release", RELEASES)
def test_upgrade_from_release_with_data(release, tmp_path, db_url, monkeypatch):
    fixture = read_fixture(release)
    moment = fixture_clock(fixture)
    if moment is not None:
        from kb.plugins.attendance import service as attendance

        monkeypatch.setattr(attendance, "now", lambda: moment)
    app = create_app(make_config(tmp_path, DATABASE_URL=db_url))
    try:
        with app.app_context():
            for revision in fixture["revisions"]:
                dbmigrate.upgrade(app, revision)
            assert dbmigrate.current(app) == set(fixture["revisions"])
            with db.engine.begin() as conn:
                load_fixture(conn, fixture)

            dbmigrate.upgrade(app)
            assert not dbmigrate.needs_upgrade(app)
            assert schema_diff(app) == []
            with db.engine.connect() as conn:
                assert_fixture_data(conn, fixture, release=release, upgraded=True,
                                    meta=db.metadata)
            heads = dbmigrate.current(app)
            dbmigrate.upgrade(app)  # idempotent: a second run changes nothing
            assert dbmigrate.current(app) == heads
        check_the_app_works_on_the_data(app, fixture)

        with app.app_context():
            db.session.remove()
            with db.engine.begin() as conn:  # undo what signing in and the claim wrote
                conn.execute(sa.text("DELETE FROM progress_claim WHERE title = '升级后的申报'"))
                users = fixture["tables"]["user"]
                row = next(r for r in users["rows"]
                           if r[users["columns"].index("username")] == "t1-d01")
                if "last_login_at" in users["columns"]:
                    before = row[users["columns"].index("last_login_at")]
                    user = db.metadata.tables["user"]
                    conn.execute(user.update().where(user.c.id == row[0]).values(
                        last_login_at=before and dt.datetime.fromisoformat(before)))
            downgrade_to(app, fixture["revisions"])
            assert dbmigrate.current(app) == set(fixture["revisions"])
            with db.engine.connect() as conn:
                down = reflect(conn)
                assert set(down.tables) - {"alembic_version"} == set(fixture["tables"])
                assert_fixture_data(conn, fixture, release=release, meta=down, round_trip=True)
            dbmigrate.upgrade(app)
            assert schema_diff(app) == []
            with db.engine.connect() as conn:
                assert_fixture_data(conn, fixture, release=release, upgraded=True,
                                    meta=db.metadata)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_fixtures_are_not_database_files():
    for path in RELEASES_DIR.iterdir():
        assert path.suffix in (".json", ".py", ".md"), path
        assert not path.read_bytes().startswith(b"SQLite format 3"), path


def test_make_fixture_writes_what_the_loader_reads(tmp_path):
    """The fixture writer and the test's loader agree (value forms, one row per line)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixture", RELEASES_DIR / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fixture = {"release": "x", "commit": "c", "revisions": ["c0001"], "made_by": "t",
               "tables": {"kb_meta": {"columns": ["key", "value"],
                                      "rows": [["a", "多行\n文本 'quoted'"], ["b", "2"]]}}}
    out = Path(tmp_path) / "x.json"
    module.write(fixture, out)
    assert json.loads(out.read_text(encoding="utf-8")) == fixture
    assert module.jsonable(dt.datetime(2026, 1, 2, 3, 4, 5, 6)) == jsonable(
        dt.datetime(2026, 1, 2, 3, 4, 5, 6))
