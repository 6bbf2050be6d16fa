"""Reads on the driver's cursor (kb.hotread): the same rows, types and errors as
``Connection.execute``, on SQLite and PostgreSQL; observed reads take the normal path."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, event, exc, select
from sqlalchemy.engine import Connection
from sqlalchemy.engine.default import DefaultDialect

from kb.extensions import db
from kb.hotread import HotRead
from kb.models import User

from .conftest import make_org, make_user


@pytest.fixture
def happ(db_app):
    with db_app.app_context():
        town = make_org("township", "热读镇")
        make_user("h1", "deputy", town, name="代表一")
        make_user("h2", "deputy", town, name="代表二").must_change_password = True
        make_user("h3", "chair", None, name="主席三").active = False
        db.session.commit()
    return db_app


def _users():
    u = User.__table__
    return (select(u.c.id, u.c.username, u.c.role, u.c.active, u.c.must_change_password,
                   u.c.created_at, u.c.org_unit_id)
            .where(u.c.username.like("h%"), u.c.role != bindparam("not_role"))
            .order_by(u.c.username))


def _normal(statement, params):
    return [tuple(r) for r in db.session.connection().execute(statement, params)]


def test_rows_and_types_are_those_of_connection_execute(happ):
    read = HotRead(_users)
    with happ.test_request_context():
        expected = _normal(read.statement, {"not_role": "admin"})
        assert len(expected) == 3
        got = read.all({"not_role": "admin"})
        assert [tuple(r) for r in got] == expected
        for row, want in zip(got, expected, strict=True):
            assert [type(v) for v in row] == [type(v) for v in want]
        assert isinstance(got[0].created_at, datetime)  # a string on SQLite without processing
        assert (got[0].active, got[1].must_change_password, got[2].active) == (True, True, False)
        assert got[2].org_unit_id is None
        assert read.first({"not_role": "chair"}).username == "h1"
        assert read.first({"not_role": "deputy"}).username == "h3"  # the literal LIKE and the bound !=
        assert HotRead(lambda: select(User.id).where(User.id == -1)).first({}) is None
        assert HotRead(lambda: select(User.id).where(User.id == -1)).all({}) == []


def test_unobserved_reads_do_not_go_through_connection_execute(happ, monkeypatch):
    read = HotRead(_users)
    with happ.test_request_context():
        db.session.connection()  # the session's own begin may use execute: not this read

        def refuse(*args, **kwargs):
            raise AssertionError("Connection.execute was used")

        monkeypatch.setattr(Connection, "execute", refuse)
        assert len(read.all({"not_role": "admin"})) == 3


def test_observed_reads_are_seen_by_cursor_listeners(happ):
    read = HotRead(_users)
    seen = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    with happ.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with happ.test_request_context():
            assert len(read.all({"not_role": "admin"})) == 3
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert any("FROM " in s and "username" in s for s in seen)
    with happ.test_request_context():
        seen.clear()
        read.all({"not_role": "admin"})
        assert seen == []


def test_driver_errors_are_the_errors_of_the_normal_path(happ):
    missing = Table("no_such_table", MetaData(), Column("id", Integer))
    read = HotRead(lambda: select(missing.c.id).where(missing.c.id == bindparam("id")))
    with happ.test_request_context():
        with pytest.raises(exc.DBAPIError) as normal:
            _normal(read.statement, {"id": 1})
        normal_type = type(normal.value)
        db.session.rollback()
        with pytest.raises(exc.DBAPIError) as fast:
            read.first({"id": 1})
        assert type(fast.value) is normal_type
        assert "no_such_table" in str(fast.value) and fast.value.orig is not None
        assert not fast.value.connection_invalidated


def test_a_lost_connection_is_invalidated_and_the_next_request_reconnects(happ, monkeypatch):
    read = HotRead(_users)
    with happ.app_context():
        dialect = db.engine.dialect
    monkeypatch.setattr(dialect, "is_disconnect", lambda e, connection, cursor: True)

    def gone(self, cursor, statement, parameters, context=None):
        raise dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly")

    with happ.test_request_context():
        with monkeypatch.context() as patch:
            patch.setattr(DefaultDialect, "do_execute", gone)
            with pytest.raises(exc.OperationalError) as info:
                read.all({"not_role": "admin"})
        assert info.value.connection_invalidated
        assert db.session.connection().invalidated
    with happ.test_request_context():
        assert len(read.all({"not_role": "admin"})) == 3


def test_statements_it_cannot_run_are_refused_on_first_use(happ):
    expanding = HotRead(lambda: select(User.id).where(User.id.in_(bindparam("ids", expanding=True))))
    with happ.test_request_context(), pytest.raises(ValueError, match="expanded"):
        expanding.all({"ids": [1, 2]})
