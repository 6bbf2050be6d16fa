"""Browser test: a deputy takes a timed quiz on a 360 px phone and reviews the wrong answers."""

from __future__ import annotations

import time

import pytest

from .browser_support import (
    PHONE,
    LiveServer,
    build_synced_app,
    dispose,
    launch_chromium,
    require_chromium,
)
from .conftest import make_config
from .quizzes_support import QUIZ_YAML, small_world

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path):
    config = make_config(tmp_path)
    (tmp_path / "quizzes" / "basics-quiz.yaml").write_text(QUIZ_YAML, encoding="utf-8")
    app = build_synced_app(config)
    with app.app_context():
        small_world()
    with LiveServer(app) as live:
        yield live
    dispose(app)


def test_deputy_takes_timed_quiz_on_phone_and_reviews_mistakes(server):
    require_chromium()
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        context = browser.new_context(base_url=server.url, **PHONE)
        context.set_default_timeout(8_000)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("dialog", lambda d: d.accept())

        page.goto("/login")
        page.fill("input[name=login]", "d1")
        page.fill("input[name=password]", "pw")
        with page.expect_navigation():
            page.locator("main button[type=submit]").first.click()
        page.goto("/quizzes/basics-quiz")
        assert "限时 10 分钟" in page.content() or "10 分钟" in page.content()
        with page.expect_navigation():
            page.get_by_role("button", name="开始测验").click()

        timer = page.locator("#quiz-timer strong")
        first = timer.inner_text()
        assert first.startswith(("10:", "9:")), first
        # question 1: a wrong choice, saved by the script as soon as it is picked
        page.get_by_text("三年").click()
        page.wait_for_function("() => document.querySelector('.save-state').textContent === '已保存'")
        with page.expect_navigation():
            page.get_by_role("button", name="保存，下一题").click()
        page.get_by_text("听取专项工作报告").click()
        page.get_by_text("检查法律实施").click()
        with page.expect_navigation():
            page.get_by_role("button", name="保存，下一题").click()
        page.get_by_text("错", exact=True).click()
        with page.expect_navigation():
            page.get_by_role("button", name="保存，下一题").click()
        page.locator("fieldset.quiz-q input[type=text]").fill("３")  # full-width digit
        # reload (a dropped connection): the answer typed before is still there
        page.wait_for_function("() => document.querySelector('.save-state').textContent === '已保存'")
        page.reload()
        assert page.locator("fieldset.quiz-q input[type=text]").input_value() == "３"
        assert timer.inner_text() <= first
        # nothing in the page tells the answers before submission
        assert "每届任期五年。" not in page.content()
        # no horizontal scrolling on a 360 px screen
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        with page.expect_navigation():
            page.get_by_role("button", name="交卷").click()
        body = page.locator("main").inner_text()
        assert "75" in body and "通过" in body and "每届任期五年。" in body

        page.get_by_role("link", name="去错题本").click()
        page.wait_for_url("**/quizzes/review")
        review = page.locator("main").inner_text()
        assert "乡镇人大每届任期几年？" in review and "正确答案" in review and "C. 五年" in review
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        context.close()
        browser.close()
    assert not errors, errors
    assert time.monotonic() - started < 25
