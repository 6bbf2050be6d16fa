"""Faults in the search index: deleted or damaged files, a full disk while writing it.

What must hold in every case: lessons and every other page are still served; /search and
/api/v1/search answer 503 with Retry-After and say the index is being rebuilt (never a 500);
/healthz and ``kb doctor`` report the index state; ``kb sync`` restores the index. A write that
fails for lack of space leaves the live index answering, nothing half-written in use and no
leftover files; ``kb sync`` says so and exits non-zero; a later sync with space succeeds.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from .conftest import make_config
from .faults_support import Filler, mounted_small_disk


def _gen(app) -> Path:
    root = Path(app.config["INDEX_DIR"])
    return root / (root / "CURRENT").read_text(encoding="utf-8").strip()


def _segment(app) -> Path:
    """The largest file of a segment (segments are written as separate files, not .seg)."""
    files = [p for p in _gen(app).iterdir()
             if p.is_file() and p.suffix != ".toc" and not p.name.endswith("WRITELOCK")]
    return max(files, key=lambda p: p.stat().st_size)


def _truncate_segment(app):
    seg = _segment(app)
    os.truncate(seg, seg.stat().st_size // 2)


DAMAGE = {
    "index folder deleted": lambda app: shutil.rmtree(app.config["INDEX_DIR"]),
    "generation deleted": lambda app: shutil.rmtree(_gen(app)),
    "files deleted": lambda app: [p.unlink() for p in _gen(app).iterdir()],
    "segment truncated": _truncate_segment,
    "garbage in the TOC": lambda app: next(_gen(app).glob("_MAIN_*.toc")).write_bytes(b"x" * 400),
    "CURRENT names a missing generation": lambda app: (
        Path(app.config["INDEX_DIR"]) / "CURRENT").write_text("gen-20000101T000000-00000000\n"),
    "CURRENT is garbage": lambda app: (
        Path(app.config["INDEX_DIR"]) / "CURRENT").write_bytes(b"\xff\xfe\x00garbage"),
}
MISSING = {"index folder deleted"}  # no index at all; every other case is a damaged one


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_index_keeps_the_site_up_and_sync_restores_it(synced_app, runner, damage):
    client = synced_app.test_client()
    assert client.get("/search?q=主席团").status_code == 200  # the worker's searcher is open
    DAMAGE[damage](synced_app)

    for url in ("/", "/courses/basics", "/courses/basics/presidium", "/laws"):
        assert client.get(url).status_code == 200, url
    page = client.get("/search?q=闭会期间")
    body = page.get_data(as_text=True)
    assert page.status_code == 503 and page.headers["Retry-After"]
    assert "搜索索引正在重建" in body and "Traceback" not in body
    api = client.get("/api/v1/search?q=闭会期间")
    assert api.status_code == 503 and api.headers["Retry-After"]
    assert api.get_json()["index_missing"] is True and api.get_json()["status"] == 503
    health = client.get("/healthz").get_json()
    assert health["status"] == "degraded" and health["index"]["ok"] is False
    assert health["index"]["state"] == ("missing" if damage in MISSING else "unreadable")
    doctor = json.loads(runner.invoke(["doctor", "--json"]).output)
    index_check = next(c for c in doctor if c["name"] == "search index")
    assert not index_check["ok"] and "kb sync" in index_check["detail"]

    result = runner.invoke(["sync"])
    assert result.exit_code == 0, result.output
    assert "index rebuilt" in result.output
    if damage not in MISSING:
        assert "search index unreadable" in result.output
    page = client.get("/search?q=闭会期间")
    assert page.status_code == 200 and "/courses/basics/presidium" in page.get_data(as_text=True)
    assert client.get("/api/v1/search?q=闭会期间").get_json()["total"] >= 1
    assert client.get("/healthz").get_json()["index"]["state"] == "ok"
    assert runner.invoke(["doctor"]).exit_code == 0


def test_an_error_while_reading_marks_the_index_damaged_for_every_process(synced_app, runner,
                                                                        monkeypatch):
    """Bytes that open but do not decode (Whoosh keeps no checksums, so a segment overwritten
    in place is found only when a search reads it): the worker that meets the error marks the
    generation damaged; other processes and ``kb sync`` see it, and the rebuild clears it."""
    import struct

    from whoosh.searching import Searcher

    from kb.search import SearchIndex

    client = synced_app.test_client()

    def garbage(*args, **kwargs):
        raise struct.error("unpack requires a buffer of 4 bytes")

    with monkeypatch.context() as patch:
        patch.setattr(Searcher, "postings", garbage)  # what kb.search.evaluate reads
        page = client.get("/search?q=闭会期间")
    assert page.status_code == 503 and "搜索索引正在重建" in page.get_data(as_text=True)
    other_worker = SearchIndex(synced_app.config["INDEX_DIR"])
    assert other_worker.search("闭会期间").index_missing
    state, detail = other_worker.check()
    assert state == "unreadable" and "reading failed: error" in detail
    assert client.get("/healthz").get_json()["index"]["state"] == "unreadable"
    result = runner.invoke(["sync"])
    assert result.exit_code == 0 and "index rebuilt" in result.output
    assert not (Path(synced_app.config["INDEX_DIR"]) / "DAMAGED").exists()
    assert other_worker.search("闭会期间").total >= 1
    assert client.get("/search?q=闭会期间").status_code == 200


def test_unavailable_search_in_english(synced_app):
    client = synced_app.test_client()
    client.get("/prefs?lang=en&next=/")
    shutil.rmtree(synced_app.config["INDEX_DIR"])
    body = client.get("/search?q=主席团").get_data(as_text=True)
    assert "The search index is being rebuilt" in body
    assert client.get("/api/v1/search?q=x").get_json()["error"] == "Search is temporarily unavailable"


def test_a_damaged_index_is_logged_once_not_on_every_search(synced_app, caplog):
    client = synced_app.test_client()
    client.get("/search?q=主席团")
    DAMAGE["garbage in the TOC"](synced_app)
    with caplog.at_level("WARNING", logger="kb.search.index"):
        for q in ("主席团", "代表", "闭会期间"):
            assert client.get(f"/search?q={q}").status_code == 503
    warnings = [r for r in caplog.records if "unusable" in r.getMessage()]
    assert len(warnings) == 1 and "kb sync" in warnings[0].getMessage()


def test_incremental_update_never_replaces_a_damaged_index_with_a_partial_one(synced_app):
    from kb.search import SearchDoc, SearchIndexUnreadable

    index = synced_app.extensions["kb.search"]
    DAMAGE["garbage in the TOC"](synced_app)
    doc = SearchDoc(kind="lesson", course="basics", lesson="status", anchor="", url="/x",
                    title="t", heading="", body="b")
    with pytest.raises(SearchIndexUnreadable, match="kb sync"):
        index.update_lessons([("basics", "status")], [doc])


# -- a full disk -------------------------------------------------------------------------------

def _edit_lesson(app, word: str) -> None:
    path = Path(app.config["COURSES_DIR"]) / "basics" / "02-presidium.md"
    path.write_text(path.read_text(encoding="utf-8") + f"\n\n## 新增一节\n\n{word}的内容。\n",
                    encoding="utf-8")


def _index_files(app) -> set[str]:
    root = Path(app.config["INDEX_DIR"])
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _assert_disk_full_is_survived(app, runner, fill, free):
    """Shared by the tmpfs and the injected-ENOSPC variants."""
    client = app.test_client()
    assert client.get("/search?q=闭会期间").status_code == 200
    before = _index_files(app)

    _edit_lesson(app, "紫藤花")  # an incremental update of one lesson
    fill()
    result = runner.invoke(["sync"])
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output
    assert "the live index is unchanged" in result.output
    assert "Traceback" not in result.output
    # The live index answers as before; nothing of the failed write is left.
    page = client.get("/search?q=闭会期间")
    assert page.status_code == 200 and "/courses/basics/presidium" in page.get_data(as_text=True)
    assert _index_files(app) == before
    # A full rebuild fails the same way and leaves no half-written generation.
    result = runner.invoke(["sync", "--rebuild"])
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert _index_files(app) == before
    assert client.get("/search?q=闭会期间").status_code == 200

    free()
    # The earlier sync saved the lesson in the database but not in the index: this one sees
    # from the index stamp that the index misses it, and adds it.
    result = runner.invoke(["sync"])
    assert result.exit_code == 0, result.output
    assert "index updated: 1 lessons" in result.output
    assert "/courses/basics/presidium" in client.get("/search?q=紫藤花").get_data(as_text=True)
    assert runner.invoke(["doctor"]).exit_code == 0


def test_disk_full_while_writing_the_index_injected(synced_app, runner, monkeypatch):
    """ENOSPC from every write to a Whoosh file (always runs; see the tmpfs test too)."""
    from whoosh.filedb import structfile

    real_write = structfile.StructFile.write

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    _assert_disk_full_is_survived(
        synced_app, runner,
        fill=lambda: monkeypatch.setattr(structfile.StructFile, "write", full),
        free=lambda: monkeypatch.setattr(structfile.StructFile, "write", real_write))


@pytest.fixture
def small_disk(tmp_path):
    with mounted_small_disk(tmp_path) as mount_point:
        yield mount_point


def test_disk_full_while_writing_the_index_on_a_real_small_disk(tmp_path, small_disk):
    from kb import create_app, dbmigrate
    from kb.cli import run_sync

    from .conftest import runner_for

    app = create_app(make_config(tmp_path, INDEX_DIR=str(small_disk / "index")))
    with app.app_context():
        dbmigrate.upgrade(app)
    run_sync(app)
    filler = Filler(small_disk)
    try:
        _assert_disk_full_is_survived(app, runner_for(app), filler.fill, filler.free)
    finally:
        filler.free()
        with app.app_context():
            from kb.extensions import db

            db.engine.dispose()
        app.extensions["kb.search"].close()


def test_sqlite_disk_full_during_sync_is_reported_and_recovered(tmp_path, small_disk):
    from kb import create_app, dbmigrate
    from kb.cli import run_sync

    from .conftest import runner_for

    database = small_disk / "kb.sqlite3"
    app = create_app(make_config(tmp_path, DATABASE_URL=f"sqlite:///{database}"))
    with app.app_context():
        dbmigrate.upgrade(app)
    run_sync(app)
    runner = runner_for(app)
    filler = Filler(small_disk)
    client = app.test_client()
    try:
        _edit_lesson(app, "紫藤花" * 2000)  # a lesson the size of the last free pages, and more
        filler.fill()
        result = runner.invoke(["sync"])
        assert result.exit_code == 1, result.output
        assert "database or disk is full" in result.output and "Traceback" not in result.output
        assert client.get("/courses/basics/presidium").status_code == 200  # still readable
        filler.free()
        result = runner.invoke(["sync"])
        assert result.exit_code == 0, result.output
        assert "紫藤花" in client.get("/courses/basics/presidium").get_data(as_text=True)
    finally:
        filler.free()
        with app.app_context():
            from kb.extensions import db

            db.engine.dispose()
