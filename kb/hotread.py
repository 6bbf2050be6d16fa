"""Reads made on nearly every signed-in page, run on the database driver's cursor.

A signed-in lesson page makes three small SELECTs (the person, the progress panel's row, the
quizzes panel's rows). Through SQLAlchemy's ``Connection.execute`` each costs about three times
what the driver spends on it (an execution context, parameter and result set-up per call), and
that is a tenth of the page's CPU time. A :class:`HotRead` keeps the same SQLAlchemy statement,
compiles it once per dialect, and runs the compiled SQL on the cursor of the request's session
connection (so it shares its transaction), applying the column types' bind and result
processors as SQLAlchemy would (a SQLite ``DateTime`` or ``Boolean`` comes back as on the
normal path).

What stays as on the normal path:

* errors: a driver error becomes the SQLAlchemy exception of the normal path
  (``OperationalError`` and so on, from :meth:`sqlalchemy.exc.DBAPIError.instance`), and a lost
  connection is invalidated first, so a dead database is still the 503 page;
* the dialect's ``do_execute`` runs the statement (what tests patch to simulate failures);
* when anything listens to cursor executions (``before_cursor_execute``, ``handle_error``:
  query counters in tests, Flask-SQLAlchemy's recorded queries) or the engine echoes SQL, the
  read goes through ``Connection.execute`` instead, so it is seen and logged like any other.

Only plain SELECTs with scalar bound parameters qualify (no expanding ``IN`` lists, no
post-compile parameters); anything else is refused when the statement is first compiled.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc

from .extensions import db


class _Plan:
    __slots__ = ("sql", "names", "defaults", "bind", "positional", "result")

    def __init__(self, statement, dialect):
        compiled = statement.compile(dialect=dialect)
        for name, param in compiled.binds.items():
            if param.expanding or param.literal_execute:
                raise ValueError(f"HotRead: bound parameter {name!r} is expanded at execution")
        escaped = getattr(compiled, "escaped_bind_names", None) or {}
        if escaped:
            raise ValueError(f"HotRead: bound parameter names need escaping: {sorted(escaped)}")
        self.sql = compiled.string
        self.positional = dialect.positional
        self.names = tuple(compiled.positiontup) if dialect.positional else tuple(compiled.binds)
        binds = compiled.binds
        # Literal values in the statement (``status == "submitted"``) are anonymous bound
        # parameters: their values are fixed when the statement is built.
        self.defaults = {n: binds[n].effective_value for n in self.names
                         if not binds[n].required}
        self.bind = tuple(
            (n, p) for n in self.names
            if (p := binds[n].type.dialect_impl(dialect).bind_processor(dialect)) is not None)
        self.result = None  # per column, from the first cursor description

    def arguments(self, params: dict):
        values = {**self.defaults, **params} if self.defaults else dict(params)
        for name, process in self.bind:
            values[name] = process(values[name])
        if self.positional:
            return tuple(values[n] for n in self.names)
        return values


class HotRead:
    """A SELECT built by ``build()`` (once, on first use), run as described in the module."""

    def __init__(self, build: Callable[[], Any]):
        self._build = build
        self._statement = None
        self._row = None
        self._plans: dict[tuple, _Plan] = {}

    @property
    def statement(self):
        if self._statement is None:
            self._statement = self._build()
        return self._statement

    @property
    def row_type(self):
        """Rows are named tuples of the statement's column keys (``row.completed_at``)."""
        if self._row is None:
            self._row = namedtuple("HotRow", [c.key for c in self.statement.selected_columns],
                                   rename=True)
        return self._row

    def all(self, params: dict) -> list[tuple]:
        """Every row."""
        return self._run(params, first=False)

    def first(self, params: dict) -> tuple | None:
        """The first row, or None."""
        rows = self._run(params, first=True)
        return rows[0] if rows else None

    def _run(self, params: dict, first: bool) -> list[tuple]:
        conn = db.session.connection()
        if _observed(conn):
            result = conn.execute(self.statement, params)
            rows = [result.first()] if first else result.all()
            return [self.row_type._make(r) for r in rows if r is not None]
        dialect = conn.dialect
        key = (dialect.name, dialect.driver, dialect.paramstyle, dialect.server_version_info)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self.statement, dialect)
        arguments = plan.arguments(params)
        fairy = conn.connection
        try:
            cursor = fairy.cursor()
            try:
                dialect.do_execute(cursor, plan.sql, arguments, None)
                if plan.result is None:
                    plan.result = _result_processors(self.statement, dialect, cursor.description)
                rows = [cursor.fetchone()] if first else cursor.fetchall()
            finally:
                cursor.close()
        except dialect.loaded_dbapi.Error as error:
            raise _translate(conn, fairy, plan.sql, arguments, error) from error
        if first and rows[0] is None:
            return []
        make = self.row_type._make
        processors = plan.result
        if not any(processors):
            return [make(r) for r in rows]
        return [make(v if p is None else p(v) for p, v in zip(processors, r, strict=True))
                for r in rows]


def _observed(conn) -> bool:
    """Whether something listens to this connection's cursor executions or errors (on the
    connection or its engine, whenever added), or the engine echoes its SQL."""
    engine = conn.engine
    return bool(engine.echo or conn.dialect.dispatch.handle_error
                or any(d.before_cursor_execute or d.after_cursor_execute
                       for d in (conn.dispatch, engine.dispatch)))


def _result_processors(statement, dialect, description) -> tuple:
    columns = list(statement.selected_columns)
    if description is None or len(description) != len(columns):
        raise ValueError("HotRead: the cursor's columns do not match the statement's")
    return tuple(c.type.dialect_impl(dialect).result_processor(dialect, d[1])
                 for c, d in zip(columns, description, strict=True))


def _translate(conn, fairy, statement: str, arguments, error: Exception) -> exc.DBAPIError:
    """The SQLAlchemy exception for a driver error, as ``Connection.execute`` would raise it
    (a lost connection invalidated first, so the pool replaces it)."""
    dialect = conn.dialect
    try:
        lost = bool(dialect.is_disconnect(error, fairy, None))
    except Exception:  # noqa: BLE001 - deciding must never hide the error itself
        lost = False
    if lost and not conn.invalidated:
        try:
            conn.invalidate(error)
        except Exception:  # noqa: BLE001, S110 - already failing; the error below says why
            pass
    return exc.DBAPIError.instance(
        statement, arguments, error, dialect.loaded_dbapi.Error,
        hide_parameters=conn.engine.hide_parameters, dialect=dialect,
        connection_invalidated=lost)
