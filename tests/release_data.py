"""Release fixtures (tests/fixtures/releases/*.json): load them into a database, compare."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
import sqlalchemy as sa

from .conftest import FIXTURES

RELEASES_DIR = FIXTURES / "releases"
# A migration that rewrites existing values lists them here: {(release, table, column): fn}
# where fn(old fixture value) is the value expected after `upgrade heads`. None so far.
CHANGED_BY_MIGRATIONS: dict[tuple[str, str, str], object] = {}
# Rows a migration adds to a table that had rows in the release: {(release, table): count}.
ADDED_BY_MIGRATIONS: dict[tuple[str, str], int] = {}
# Tables a migration drops with their rows, on purpose: {table: why}. After `upgrade heads`
# they are gone; a downgrade below that migration brings them back empty.
DROPPED_BY_MIGRATIONS: dict[str, str] = {
    "login_throttle": "c0004: failed sign-ins of the last 15 minutes, replaced by rate_counter",
}


def read_fixture(name: str) -> dict:
    return json.loads((RELEASES_DIR / f"{name}.json").read_text(encoding="utf-8"))


def jsonable(value):
    """Like make_fixture.jsonable: the form a value takes in a fixture."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _from_json(column: sa.Column, value):
    if value is None:
        return None
    if isinstance(column.type, sa.DateTime):
        return dt.datetime.fromisoformat(value)
    if isinstance(column.type, sa.Date):
        return dt.date.fromisoformat(value)
    if isinstance(column.type, sa.LargeBinary):
        return base64.b64decode(value)
    return value


def reflect(conn) -> sa.MetaData:
    meta = sa.MetaData()
    meta.reflect(conn)
    return meta


def load_fixture(conn, fixture: dict) -> None:
    """Insert the fixture's rows into a database at the fixture's revisions."""
    meta = reflect(conn)
    missing = set(fixture["tables"]) - set(meta.tables)
    assert not missing, f"tables of the release not created by its revisions: {missing}"
    for table in meta.sorted_tables:  # parents before children
        data = fixture["tables"].get(table.name)
        if not data or not data["rows"]:
            continue
        columns = [table.c[name] for name in data["columns"]]
        conn.execute(table.insert(), [
            {c.name: _from_json(c, v) for c, v in zip(columns, row, strict=True)}
            for row in data["rows"]])
    if conn.dialect.name == "postgresql":  # rows came with their ids: move the sequences on
        for table in meta.sorted_tables:
            if "id" in table.c and table.c.id.primary_key and isinstance(table.c.id.type, sa.Integer):
                quoted = conn.dialect.identifier_preparer.quote(table.name)
                conn.execute(sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{quoted}', 'id'), "
                    f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {quoted}"))


def assert_fixture_data(conn, fixture: dict, *, release: str = "", upgraded: bool = False,
                        meta: sa.MetaData | None = None, round_trip: bool = False) -> None:
    """Every row of the fixture is in the database with the same values; no row is extra.

    ``upgraded``: the database is at the heads (tables in DROPPED_BY_MIGRATIONS are gone);
    ``round_trip``: it went up to the heads and down again (those tables are back, empty).
    ``meta``: the tables as they are (default: reflected from the database; at the heads the
    models' metadata will do, once the schema is known to equal it)."""
    meta = meta if meta is not None else reflect(conn)
    for name, data in fixture["tables"].items():
        if name in DROPPED_BY_MIGRATIONS and (upgraded or round_trip):
            if upgraded:
                assert name not in meta.tables, f"{name} should have been dropped"
            else:
                count = conn.execute(sa.select(sa.func.count()).select_from(meta.tables[name]))
                assert count.scalar() == 0, name
            continue
        table = meta.tables[name]
        key = [c.name for c in table.primary_key.columns] or data["columns"]
        positions = {c: i for i, c in enumerate(data["columns"])}
        found = [tuple(jsonable(v) for v in row)
                 for row in conn.execute(sa.select(*[table.c[c] for c in data["columns"]]))]
        by_key = {_hashable(tuple(row[positions[k]] for k in key)): row for row in found}
        expected_count = len(data["rows"]) + (ADDED_BY_MIGRATIONS.get((release, name), 0)
                                              if upgraded else 0)
        assert len(by_key) == expected_count, (name, len(by_key), expected_count)
        for row in data["rows"]:
            row_key = _hashable(tuple(row[positions[k]] for k in key))
            assert row_key in by_key, f"{name}: row {row_key} is gone"
            now = by_key[row_key]
            for column, before, after in zip(data["columns"], row, now, strict=True):
                change = CHANGED_BY_MIGRATIONS.get((release, name, column)) if upgraded else None
                wanted = change(before) if change else before
                if isinstance(wanted, float) or isinstance(after, float):
                    assert after == pytest.approx(wanted), (name, row_key, column)
                else:
                    assert after == wanted, (name, row_key, column, wanted, after)


def _hashable(key: tuple) -> tuple:
    return tuple(json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v for v in key)


def load_release(app, name: str) -> dict:
    """A database of release ``name`` with its data, upgraded to the heads; returns the fixture.
    Call in an app context."""
    from kb import dbmigrate
    from kb.extensions import db

    fixture = read_fixture(name)
    for revision in fixture["revisions"]:
        dbmigrate.upgrade(app, revision)
    with db.engine.begin() as conn:
        load_fixture(conn, fixture)
    dbmigrate.upgrade(app)
    return fixture
