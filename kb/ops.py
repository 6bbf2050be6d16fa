"""Operations: ``kb doctor`` (is this deployment healthy?) and ``kb backup`` / ``kb restore``."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from . import config as kb_config
from .extensions import db

INDEX_STAMP = "kb-content-version"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    severity: str = "error"  # what a failure means: error (broken) or warning


def content_version() -> str:
    """The catalog and law-library versions the search index should reflect."""
    from .laws.library import library_version
    from .models import KbMeta

    meta = db.session.get(KbMeta, "catalog_version")
    return f"catalog={meta.value if meta else 0};laws={library_version()}"


def index_manifest() -> dict:
    """What a current search index holds: the content version, and the content hash of every
    active lesson and every current law version (their documents)."""
    from .models import Course, Law, Lesson

    lessons = db.session.execute(
        select(Course.slug, Lesson.slug, Lesson.content_hash).join(Course, Lesson.course_id == Course.id)
        .where(Lesson.is_active.is_(True)))
    laws = db.session.execute(select(Law.slug, Law.content_hash).where(Law.is_current.is_(True)))
    return {"version": content_version(),
            "lessons": {f"{course}/{lesson}": digest for course, lesson, digest in lessons},
            "laws": {slug: digest for slug, digest in laws}}


def stamp_index(app) -> None:
    """Record in the index folder which content it was built from (read by ``kb doctor``, and
    by ``kb sync`` on another app server to catch up with what this one synced)."""
    folder = Path(app.config["INDEX_DIR"])
    if folder.is_dir():
        tmp = folder / (INDEX_STAMP + ".tmp")
        try:
            tmp.write_text(json.dumps(index_manifest(), ensure_ascii=False, sort_keys=True),
                           encoding="utf-8")
            os.replace(tmp, folder / INDEX_STAMP)
        except BaseException:  # a full disk: the old stamp stays; the next sync catches up
            tmp.unlink(missing_ok=True)
            raise


def read_stamp(app) -> dict | None:
    """The manifest the index was stamped with; None without a stamp. A stamp of an older
    release (the version alone, as text) gives only ``version``."""
    path = Path(app.config["INDEX_DIR"]) / INDEX_STAMP
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return {"version": raw.strip()}
    return found if isinstance(found, dict) else None


@dataclass
class IndexLag:
    """What this server's index misses of what is in the database (another server synced it)."""

    lessons: set[tuple[str, str]]  # (course, lesson) whose documents are stale or missing
    laws: set[str]  # law slugs whose article documents are stale or missing

    def __bool__(self) -> bool:
        return bool(self.lessons or self.laws)


def index_lag(app) -> IndexLag | None:
    """Compare the index's stamp with the database: the lessons and laws to re-index here, or
    None when the stamp cannot tell (missing, or of an older release) and only a rebuild is sure.

    Each app server keeps its own index but all share the database: when server A's ``kb sync``
    stores an edited lesson, server B's ``kb sync`` finds the lesson unchanged in the database
    and must learn from its stamp that its own index still holds the old text."""
    stamp = read_stamp(app)
    if stamp is None:
        return None
    now = index_manifest()
    if "lessons" not in stamp or "laws" not in stamp:  # an older release's stamp: version only
        return IndexLag(set(), set()) if stamp.get("version") == now["version"] else None
    if stamp.get("version") == now["version"] and stamp["lessons"] == now["lessons"] \
            and stamp["laws"] == now["laws"]:
        return IndexLag(set(), set())

    def differ(old: dict, new: dict) -> set[str]:
        return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}

    lessons = {tuple(k.split("/", 1)) for k in differ(stamp["lessons"], now["lessons"])}
    return IndexLag(lessons, differ(stamp["laws"], now["laws"]))


def catch_up_index(app, lag: IndexLag) -> None:
    """Re-index what :func:`index_lag` found (lessons from the catalog, laws from the library)."""
    from . import searching
    from .catalog import load_lessons
    from .laws.library import law_article_documents
    from .models import Law

    if lag.lessons:
        searching.update_lessons(app, load_lessons(lag.lessons), sorted(lag.lessons))
    if lag.laws:
        keys, docs = set(), []
        for law in db.session.scalars(select(Law).where(Law.slug.in_(sorted(lag.laws)))):
            keys.update((law.slug, a.label) for a in law.articles)  # every version's articles
            if law.is_current:
                docs.extend(law_article_documents(law))
        searching.get_index(app).update_lessons(sorted(keys), docs)


def doctor(app) -> list[Check]:
    """Check configuration, database, migrations, search index, content and plugins."""
    from . import dbmigrate, searching
    from .pluginhost import plugin_names

    checks: list[Check] = []
    secret = app.config.get("SECRET_KEY") or ""
    production = app.config.get("ENV") == "production"
    weak = secret == kb_config.DEFAULT_SECRET_KEY or len(secret) < 32
    checks.append(Check("secret key", not weak,
                        "set" if not weak else "KB_SECRET_KEY is the default or shorter than 32 characters",
                        "error" if production else "warning"))
    try:
        db.session.execute(text("SELECT 1"))
        checks.append(Check("database", True, make_url(app.config["SQLALCHEMY_DATABASE_URI"])
                            .render_as_string(hide_password=True)))
        pending = dbmigrate.needs_upgrade(app)
        checks.append(Check("migrations", not pending,
                            "at " + ", ".join(sorted(dbmigrate.current(app))) if not pending
                            else "the database is not at the newest schema: run `kb db upgrade`"))
        state, detail = searching.get_index(app).check()
        if state == "missing":
            checks.append(Check("search index", False, f"missing at {app.config['INDEX_DIR']}: run `kb sync`"))
        elif state == "unreadable":
            checks.append(Check("search index", False,
                                f"unreadable ({detail}): search is down; run `kb sync` to rebuild it"))
        else:
            fresh = (read_stamp(app) or {}).get("version") == content_version()
            documents = detail.rsplit(": ", 1)[-1]
            checks.append(Check("search index", fresh,
                                f"{documents}, up to date" if fresh else
                                "older than the content in the database: run `kb sync`"))
    except Exception as exc:  # report every failure, never crash the doctor
        db.session.rollback()
        checks.append(Check("database", False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))
    checks.append(_rate_limit_check(app))
    courses = Path(app.config["COURSES_DIR"])
    checks.append(Check("courses folder", courses.is_dir(), str(courses), "warning"))
    names = plugin_names(app.extensions["kb.pm"])
    checks.append(Check("plugins", True, ", ".join(names) or "none"))
    return checks


def _rate_limit_check(app) -> Check:
    """Where rate limits are counted; with Redis configured, whether it answers."""
    from .ratelimit import StoreUnavailable, limiter

    store = limiter(app).store
    if store.name != "redis":
        return Check("rate limits", True, store.describe())
    try:
        seconds = store.ping()
        usage = store.hit("doctor:round-trip", 5)  # the Lua script runs and expires
        store.clear("doctor:round-trip")
    except StoreUnavailable as exc:
        return Check("rate limits", False,
                     f"KB_REDIS_URL is set but Redis does not answer ({exc}); sign-in limits fall "
                     "back to the database, quiz-start and upload limits are off until it is back")
    return Check("rate limits", usage.hits >= 1,
                 f"{store.describe()}, PING {seconds * 1000:.1f} ms")


# -- backups ----------------------------------------------------------------------------------

class BackupError(RuntimeError):
    pass


def _sqlite_path(app) -> Path | None:
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _pg_args(app) -> tuple[list[str], dict]:
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    args = ["-h", url.host or "localhost", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    options = url.query.get("options")
    if options:
        env["PGOPTIONS"] = options if isinstance(options, str) else " ".join(options)
    return args + ["-d", url.database or "postgres"], env


def default_backup_path(app) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    suffix = ".sqlite3" if _sqlite_path(app) else ".pgdump"
    return Path(app.instance_path) / "backups" / f"kb-{stamp}{suffix}"


def backup(app, target: Path | None = None) -> Path:
    """Write a consistent copy of the database while the app keeps running."""
    target = Path(target or default_backup_path(app))
    target.parent.mkdir(parents=True, exist_ok=True)
    path = _sqlite_path(app)
    if path is not None:
        try:
            src = sqlite3.connect(path)
            dst = sqlite3.connect(target)
            try:
                with dst:
                    src.backup(dst)  # SQLite's online backup: readers and writers carry on
            finally:
                src.close()
                dst.close()
        except (sqlite3.Error, OSError) as exc:  # e.g. the backup disk is full
            target.unlink(missing_ok=True)  # never leave a partial file that looks like a backup
            raise BackupError(f"backup to {target} failed: {exc}") from exc
        return target
    if shutil.which("pg_dump") is None:
        raise BackupError("pg_dump is not installed (Debian: apt-get install postgresql-client)")
    args, env = _pg_args(app)
    schema = _pg_schema(env)
    cmd = ["pg_dump", "--format=custom", "--no-owner", f"--file={target}", *args]
    if schema:
        cmd.append(f"--schema={schema}")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {result.stderr.strip()[:500]}")
    return target


def _pg_schema(env: dict) -> str | None:
    options = env.get("PGOPTIONS", "")
    for part in options.split():
        if part.startswith("-csearch_path="):
            return part.split("=", 1)[1]
    return None


def restore(app, source: Path) -> None:
    """Replace the database's contents with a backup made by :func:`backup`."""
    source = Path(source)
    if not source.is_file():
        raise BackupError(f"{source}: no such backup file")
    path = _sqlite_path(app)
    db.session.remove()
    db.engine.dispose()
    if path is not None:
        with open(source, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise BackupError(f"{source}: not a SQLite backup")
        src = sqlite3.connect(source)
        dst = sqlite3.connect(path)
        try:
            with dst:
                src.backup(dst)
        finally:
            src.close()
            dst.close()
        return
    if shutil.which("pg_restore") is None:
        raise BackupError("pg_restore is not installed (Debian: apt-get install postgresql-client)")
    args, env = _pg_args(app)
    result = subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner",
                             "--single-transaction", *args, str(source)],
                            env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()[:500]}")
