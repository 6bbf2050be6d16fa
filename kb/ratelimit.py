"""Rate limits: fixed-window counters in the database (default) or in Redis (``KB_REDIS_URL``).

Every limit the app enforces is listed in :data:`LIMITS` with its reason. A limit counts hits
of one identity (a login name, an address, a person) in a window that starts with the first hit
and lasts ``window`` seconds; once ``allowed`` hits are counted the identity is refused until the
window ends. Both stores do the counting in one atomic operation, so two workers or two app
servers counting at the same moment never lose a hit:

* :class:`DatabaseStore` — one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` on the
  ``rate_counter`` table (SQLite ≥ 3.35 and PostgreSQL run the same statement), in its own
  short transaction, so a count survives the request's rollback and never commits the request's
  half-done work. Shared by every worker and every app server through the database.
* :class:`RedisStore` — one Lua script (``INCRBY`` + ``PEXPIRE`` on the first hit), keys under
  ``KB_REDIS_PREFIX``. Recommended when several app servers run: the counters leave the database.

When Redis is configured but does not answer, each limit does what its ``when_redis_down`` says
(see :data:`LIMITS`): the security limits (sign-in, one-time codes, password checks, check-in
codes) count in the database instead — neither a free-for-all nor everyone locked out — and
the load limits are not enforced until Redis is back. Either way an error is logged (at most
once a minute per process) and Redis is tried again after :data:`RETRY_AFTER` seconds.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import text

log = logging.getLogger(__name__)

# After a Redis failure, go straight to the fallback for this many seconds (no connect timeout
# per request while Redis is down), then try Redis again.
RETRY_AFTER = 5.0
LOG_EVERY = 60.0
REDIS_TIMEOUT = 0.5  # seconds: connect and reply; a healthy Redis answers in well under 1 ms


@dataclass(frozen=True)
class Limit:
    name: str
    allowed: int  # hits a window allows
    window: int  # seconds
    when_redis_down: str  # "database": count there instead; "open": not enforced meanwhile
    why: str


LOGIN_ACCOUNT = Limit("login-account", 5, 15 * 60, "database",
                      "failed sign-ins (password or one-time code) per login name: guessing one "
                      "person's password")
LOGIN_ADDRESS = Limit("login-address", 30, 15 * 60, "database",
                      "failed sign-ins per client address: trying many accounts from one place")
PASSWORD_CHECK = Limit("password-check", 5, 15 * 60, "database",
                       "wrong current passwords on the change-password form per person: guessing "
                       "the password from a session left open")
CHECKIN_CODE = Limit("checkin-code", 10, 10 * 60, "database",
                     "wrong 6-digit check-in codes per person: guessing the projector's code to "
                     "check in without being in the room")
QUIZ_START = Limit("quiz-start", 30, 10 * 60, "open",
                   "quiz attempts started per person: a script starting attempts of a quiz "
                   "without an attempt limit would fill the attempt tables")
UPLOAD = Limit("upload", 20, 10 * 60, "open",
               "uploaded files parsed per person (rosters, question banks, law texts, "
               "enrolment lists): each costs seconds of CPU")

LIMITS = (LOGIN_ACCOUNT, LOGIN_ADDRESS, PASSWORD_CHECK, CHECKIN_CODE, QUIZ_START, UPLOAD)


@dataclass
class Usage:
    hits: int
    reset_in: float  # seconds until the window ends (0 when there is no window)

    @property
    def minutes(self) -> int:
        """Whole minutes until the window ends, at least 1 (for "try again in N minutes")."""
        return max(1, int(-(-self.reset_in // 60)))


class StoreUnavailable(RuntimeError):
    """The store did not answer (Redis down, timed out, refused)."""


def _ident(value) -> str:
    return str(value).strip().lower()[:140]


# -- stores -------------------------------------------------------------------------------------

class DatabaseStore:
    """Counters in the ``rate_counter`` table of the app's database."""

    name = "database"
    _HIT = text(
        "INSERT INTO rate_counter (key, hits, expires_at) VALUES (:key, :amount, :ends) "
        "ON CONFLICT (key) DO UPDATE SET "
        "hits = CASE WHEN rate_counter.expires_at <= :now THEN excluded.hits "
        "ELSE rate_counter.hits + excluded.hits END, "
        "expires_at = CASE WHEN rate_counter.expires_at <= :now THEN excluded.expires_at "
        "ELSE rate_counter.expires_at END "
        "RETURNING hits, expires_at")
    _PEEK = text("SELECT hits, expires_at FROM rate_counter WHERE key = :key AND expires_at > :now")
    _CLEAR = text("DELETE FROM rate_counter WHERE key = :key")
    _PURGE = text("DELETE FROM rate_counter WHERE expires_at <= :now")

    @property
    def engine(self):
        from .extensions import db

        return db.engine  # the current app's (every call runs in an app context)

    def hit(self, key: str, window: int, amount: int = 1) -> Usage:
        now = time.time()
        with self.engine.begin() as conn:
            hits, ends = conn.execute(self._HIT, {"key": key, "amount": amount, "now": now,
                                                  "ends": now + window}).one()
            if random.random() < 0.01:  # forget windows that ended (nobody reads them again)
                conn.execute(self._PURGE, {"now": now - 60})
        return Usage(int(hits), max(0.0, ends - now))

    def peek(self, key: str) -> Usage:
        now = time.time()
        with self.engine.connect() as conn:
            row = conn.execute(self._PEEK, {"key": key, "now": now}).first()
        return Usage(int(row.hits), row.expires_at - now) if row else Usage(0, 0.0)

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._CLEAR, {"key": key})

    def describe(self) -> str:
        return "database (shared by every worker and app server through the database)"


class RedisStore:
    """Counters in Redis, one key per identity and limit, expiring with its window."""

    name = "redis"
    # The first hit of a window creates the key (no TTL yet) and sets its expiry; a key that
    # somehow lost its TTL gets one again instead of counting forever.
    _HIT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {n, ttl}
"""

    def __init__(self, url: str, prefix: str = "kb:"):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.prefix = prefix + "ratelimit:"
        self._errors = (redis.exceptions.RedisError, OSError)
        # One attempt per call (redis-py retries connection errors by default): when Redis is
        # down the limiter falls back at once and tries Redis again after RETRY_AFTER.
        self.client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT,
                                           socket_connect_timeout=REDIS_TIMEOUT,
                                           retry=Retry(NoBackoff(), 0))
        self._script = self.client.register_script(self._HIT)

    def _call(self, fn):
        try:
            return fn()
        except self._errors as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def hit(self, key: str, window: int, amount: int = 1) -> Usage:
        hits, ttl_ms = self._call(lambda: self._script(keys=[self.prefix + key],
                                                      args=[amount, int(window * 1000)]))
        return Usage(int(hits), int(ttl_ms) / 1000.0)

    def peek(self, key: str) -> Usage:
        def read():
            pipe = self.client.pipeline(transaction=True)
            pipe.get(self.prefix + key)
            pipe.pttl(self.prefix + key)
            return pipe.execute()

        value, ttl_ms = self._call(read)
        if value is None or ttl_ms is None or int(ttl_ms) <= 0:
            return Usage(0, 0.0)
        return Usage(int(value), int(ttl_ms) / 1000.0)

    def clear(self, key: str) -> None:
        self._call(lambda: self.client.delete(self.prefix + key))

    def ping(self) -> float:
        """Round-trip seconds of PING (raises StoreUnavailable)."""
        started = time.perf_counter()
        self._call(self.client.ping)
        return time.perf_counter() - started

    def describe(self) -> str:
        from redis.connection import parse_url

        try:
            parts = parse_url(self.url)
        except ValueError:
            return "redis"
        where = parts.get("path") or f"{parts.get('host', 'localhost')}:{parts.get('port', 6379)}"
        return f"redis at {where} db {parts.get('db', 0)}, keys {self.prefix}*"


# -- the limiter --------------------------------------------------------------------------------

class RateLimiter:
    """The app's limits over its store, with the database as the fallback for Redis."""

    def __init__(self, app):
        self.database = DatabaseStore()
        url = app.config.get("REDIS_URL")
        self.redis = RedisStore(url, app.config.get("REDIS_PREFIX") or "kb:") if url else None
        self._down_until = 0.0
        self._logged_at = 0.0
        self._lock = threading.Lock()

    @property
    def store(self):
        return self.redis or self.database

    def _run(self, limit: Limit, op, *args):
        """Run ``op`` ("hit", "peek", "clear") on the store this limit uses now; None when the
        limit is not enforced (Redis down and the limit fails open)."""
        if self.redis is not None and time.monotonic() >= self._down_until:
            try:
                return getattr(self.redis, op)(*args)
            except StoreUnavailable as exc:
                self._redis_failed(exc)
        if self.redis is not None and limit.when_redis_down == "open":
            return None
        return getattr(self.database, op)(*args)

    def _redis_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self._down_until = now + RETRY_AFTER
            if now - self._logged_at < LOG_EVERY and self._logged_at:
                return
            self._logged_at = now
        log.error("rate limits: Redis (%s) is not answering: %s. Until it is back, sign-in, "
                  "password and check-in-code limits count in the database; quiz-start and "
                  "upload limits are not enforced. Retrying every %.0f s.",
                  self.redis.describe(), exc, RETRY_AFTER)

    @staticmethod
    def key(limit: Limit, identity) -> str:
        return f"{limit.name}:{_ident(identity)}"

    def hit(self, limit: Limit, identity, amount: int = 1) -> Usage:
        usage = self._run(limit, "hit", self.key(limit, identity), limit.window, amount)
        return usage if usage is not None else Usage(0, 0.0)

    def peek(self, limit: Limit, identity) -> Usage:
        usage = self._run(limit, "peek", self.key(limit, identity))
        return usage if usage is not None else Usage(0, 0.0)

    def clear(self, limit: Limit, identity) -> None:
        self._run(limit, "clear", self.key(limit, identity))
        if self.redis is not None and limit.when_redis_down == "database":
            # A count made in the database while Redis was down must not outlive a success.
            self.database.clear(self.key(limit, identity))


def limiter(app=None) -> RateLimiter:
    """This process's limiter for ``app`` (default: the current app), made on first use."""
    app = app or current_app._get_current_object()
    found = app.extensions.get("kb.ratelimit")
    if found is None:
        found = app.extensions["kb.ratelimit"] = RateLimiter(app)
    return found


# -- what the views call ------------------------------------------------------------------------

def blocked(limit: Limit, identity) -> Usage | None:
    """The usage when ``identity`` has used up ``limit`` (refuse the request), else None.
    Reads only: for limits that count failures (call :func:`count` on each failure)."""
    usage = limiter().peek(limit, identity)
    return usage if usage.hits >= limit.allowed else None


def count(limit: Limit, identity) -> Usage:
    """Count one hit (a failure, for failure-counting limits)."""
    return limiter().hit(limit, identity)


def take(limit: Limit, identity) -> Usage | None:
    """Count this request and return the usage if it is over the limit (refuse it), else None.
    For limits that count every attempt."""
    usage = limiter().hit(limit, identity)
    return usage if usage.hits > limit.allowed else None


def message(usage: Usage) -> str:
    """The message for a refused request (UI text)."""
    from flask_babel import gettext as _

    return _("操作太频繁，请 %(n)s 分钟后再试。", n=usage.minutes)


def forget(limit: Limit, identity) -> None:
    """Drop the identity's count (after a successful sign-in)."""
    limiter().clear(limit, identity)
