"""Login throttling per login name and per address, on :mod:`kb.ratelimit` (database or Redis:
shared by every worker and app server either way)."""

from __future__ import annotations

from dataclasses import dataclass

from . import ratelimit
from .ratelimit import LOGIN_ACCOUNT, LOGIN_ADDRESS


@dataclass
class Verdict:
    allowed: bool
    minutes: int = 0  # how long until the person may try again


def check(login: str, address: str) -> Verdict:
    """Return whether a sign-in may be tried now (the same answer whether or not the account
    exists). A login name or an address that failed its limit within the window is refused
    until the window (which began with its first failure) ends."""
    worst = None
    for limit, identity in ((LOGIN_ACCOUNT, login), (LOGIN_ADDRESS, address)):
        usage = ratelimit.blocked(limit, identity)
        if usage is not None and (worst is None or usage.reset_in > worst.reset_in):
            worst = usage
    return Verdict(True) if worst is None else Verdict(False, worst.minutes)


def failure(login: str, address: str) -> None:
    """Count a failed sign-in against the login name and the address."""
    ratelimit.count(LOGIN_ACCOUNT, login)
    ratelimit.count(LOGIN_ADDRESS, address)


def success(login: str) -> None:
    """Forget the login name's failures after a successful sign-in (the address keeps its count)."""
    ratelimit.forget(LOGIN_ACCOUNT, login)
