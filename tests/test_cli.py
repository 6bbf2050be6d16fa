"""The ``kb`` command line, run as a user would (a real subprocess where it matters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import FIXTURES

KB = [sys.executable, "-m", "kb"]


def run_kb(args, env, cwd):
    return subprocess.run(KB + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_sync_then_search_in_empty_places(tmp_path):
    """With KB_COURSES_DIR, KB_INDEX_DIR and KB_DATABASE_URL at empty places, it just works."""
    import shutil

    courses = tmp_path / "content"
    shutil.copytree(FIXTURES / "courses", courses)
    env = {**os.environ, "KB_COURSES_DIR": str(courses), "KB_INDEX_DIR": str(tmp_path / "new" / "index"),
           "KB_DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'fresh.sqlite3'}",
           "KB_INSTANCE_DIR": str(tmp_path / "inst"), "KB_QUIZZES_DIR": str(tmp_path / "nq")}
    sync = run_kb(["sync"], env, tmp_path)
    assert sync.returncode == 0, sync.stderr
    assert "added: course 2, lesson 4" in sync.stderr and "index rebuilt" in sync.stderr
    found = run_kb(["search", "主席团", "闭会期间", "--json", "--limit", "3"], env, tmp_path)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits and set(hits[0]) >= {"url", "course", "lesson", "title", "snippet", "score"}
    assert hits[0]["url"] == "/courses/basics/presidium#闭会期间主席团做什么"
    again = run_kb(["sync"], env, tmp_path)
    assert "unchanged: course 2, lesson 4" in again.stderr and "index up to date" in again.stderr


def test_search_text_output(synced_app, runner):
    result = runner.invoke(["search", "代表建议"])
    assert "怎样写好代表建议" in result.output and "/courses/duties/suggestions" in result.output


def test_search_without_index(app, runner):
    result = runner.invoke(["search", "代表"])
    assert result.exit_code == 1 and "kb sync" in result.output


def test_rebuild_swaps_index(synced_app, runner, config):
    from kb import search_index

    with synced_app.app_context():
        before = search_index().status()["generation"]
    result = runner.invoke(["sync", "--rebuild"])
    assert result.exit_code == 0 and "index rebuilt" in result.output
    with synced_app.app_context():
        status = search_index().status()
    assert status["generation"] != before and status["documents"] > 0


def test_incremental_update_changes_only_that_lesson(synced_app, runner, config):
    path = Path(config["COURSES_DIR"]) / "duties" / "01-suggestions.md"
    path.write_text(path.read_text().replace("明确具体", "明确具体并附上独特词汇甲乙丙"))
    result = runner.invoke(["sync"])
    assert "index updated: 1 lessons" in result.output
    assert "duties/suggestions" in runner.invoke(["search", "独特词汇甲乙丙"]).output


def test_demo_is_idempotent_and_prints_logins(app, runner):
    first = runner.invoke(["demo", "--password", "pw"])
    assert "demo data: 99 accounts created" in first.output
    assert "t1-chair" in first.output and "password for all: pw" in first.output
    second = runner.invoke(["demo"])
    assert "already present" in second.output


def test_db_upgrade_command(app, runner):
    from kb import dbmigrate

    output = runner.invoke(["db", "upgrade"]).output
    with app.app_context():
        assert output.strip() == "database at: " + ", ".join(sorted(dbmigrate.current(app)))


def test_kb_refuses_production_default_secret(tmp_path):
    env = {**os.environ, "KB_ENV": "production", "KB_SECRET_KEY": "",
           "KB_INSTANCE_DIR": str(tmp_path)}
    result = run_kb(["plugins"], env, tmp_path)
    assert result.returncode == 2 and "KB_SECRET_KEY" in result.stderr


def test_serve_help_names_the_server(runner, app):
    assert "gunicorn" in runner.invoke(["serve", "--help"]).output
