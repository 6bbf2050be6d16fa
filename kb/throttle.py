"""Login throttling per account and per address, kept in the database (works across workers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import LoginThrottle, utcnow

WINDOW = timedelta(minutes=15)
LOCK = timedelta(minutes=15)
ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 30


@dataclass
class Verdict:
    allowed: bool
    minutes: int = 0  # how long until the person may try again


def _keys(login: str, address: str) -> list[tuple[str, int]]:
    return [(f"acct:{login.strip().lower()[:140]}", ACCOUNT_LIMIT), (f"addr:{address[:140]}", ADDRESS_LIMIT)]


def check(login: str, address: str) -> Verdict:
    """Return whether a sign-in may be tried now (the same answer whether or not the account exists)."""
    now = utcnow()
    worst = None
    for key, _limit in _keys(login, address):
        row = db.session.get(LoginThrottle, key)
        if row is not None and row.locked_until and row.locked_until > now:
            if worst is None or row.locked_until > worst:
                worst = row.locked_until
    if worst is None:
        return Verdict(True)
    return Verdict(False, max(1, int((worst - now).total_seconds() // 60) + 1))


def failure(login: str, address: str) -> None:
    """Count a failed sign-in; lock the key for ``LOCK`` once it reaches its limit."""
    now = utcnow()
    for key, limit in _keys(login, address):
        row = db.session.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, window_start=now, failures=0)
            db.session.add(row)
        if now - row.window_start > WINDOW:
            row.window_start, row.failures, row.locked_until = now, 0, None
        row.failures += 1
        if row.failures >= limit:
            row.locked_until = now + LOCK
    try:
        db.session.commit()
    except IntegrityError:  # two workers created the same key at once: one count is enough
        db.session.rollback()


def success(login: str) -> None:
    """Forget the account's failures after a successful sign-in (the address keeps its count)."""
    row = db.session.get(LoginThrottle, _keys(login, "")[0][0])
    if row is not None:
        db.session.delete(row)
        db.session.commit()
