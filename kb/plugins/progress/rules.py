"""Configuration of the progress plugin: credit rules, yearly targets, completion rule.

``CREDIT_RULES`` (env ``KB_CREDIT_RULES``) is a JSON object (or a dict in tests)::

    {"lesson": [[30, 1], [15, 0.5], [0, 0.25]],   # [minimum lesson minutes, 学时], first match
     "quiz": 0.5,                                  # a passed quiz
     "attendance": "hours"}                        # a class counts by its hours (or a number)

Missing keys keep the defaults (DOMAIN.md). ``PROGRESS_TARGETS`` (env ``KB_PROGRESS_TARGETS``,
JSON) is the yearly target per role; ``PROGRESS_COMPLETION`` (env ``KB_PROGRESS_COMPLETION``)
the completion rule.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app

DEFAULT_CREDIT_RULES = {"lesson": [[30, 1.0], [15, 0.5], [0, 0.25]], "quiz": 0.5,
                        "attendance": "hours"}
# Cadres (chair, secretary, presidium): 50 学时 a year (全国干部教育培训规划); deputies: 20.
DEFAULT_TARGETS = {"chair": 50.0, "secretary": 50.0, "presidium": 50.0, "deputy": 20.0}
DEFAULT_COMPLETION = {
    "scroll": 0.9,          # reached the end: the reader scrolled at least this far
    "time_fraction": 0.5,   # and spent at least this share of the lesson's minutes
}
BEAT_CAP_SECONDS = 30       # one heartbeat credits at most this much wall time
LESSON_CAP_FACTOR = 2       # a lesson credits at most this many times its minutes
LEARNER_ROLES = ("deputy", "presidium", "chair", "secretary")
MAX_CLAIM_HOURS = 40.0      # one claim: at most a week of full-time training
MAX_CORRECTION_HOURS = 100.0


def _json_setting(value, default):
    if value is None or value == "":
        return dict(default)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"progress: cannot read {value!r} as JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"progress: expected a JSON object, got {value!r}")
    merged = dict(default)
    merged.update(value)
    return merged


def init_config(app) -> None:
    """Read and check the settings once at start-up (a bad setting stops the app)."""
    for key, env in (("PROGRESS_TARGETS", "KB_PROGRESS_TARGETS"),
                     ("PROGRESS_COMPLETION", "KB_PROGRESS_COMPLETION")):
        if key not in app.config and os.environ.get(env, "").strip():
            app.config[key] = os.environ[env]
    app.config["PROGRESS_CREDIT_RULES"] = parse_credit_rules(app.config.get("CREDIT_RULES"))
    targets = _json_setting(app.config.get("PROGRESS_TARGETS"), DEFAULT_TARGETS)
    app.config["PROGRESS_TARGETS"] = {k: float(v) for k, v in targets.items()}
    completion = _json_setting(app.config.get("PROGRESS_COMPLETION"), DEFAULT_COMPLETION)
    app.config["PROGRESS_COMPLETION"] = {k: float(v) for k, v in completion.items()}
    app.config.setdefault("PROGRESS_BEAT_CAP", BEAT_CAP_SECONDS)
    app.config.setdefault("PROGRESS_LESSON_CAP_FACTOR", LESSON_CAP_FACTOR)


def parse_credit_rules(raw) -> dict:
    rules = _json_setting(raw, DEFAULT_CREDIT_RULES)
    lesson = sorted(([float(m), float(h)] for m, h in rules["lesson"]), reverse=True)
    if not lesson or lesson[-1][0] > 0:
        lesson.append([0.0, 0.0])
    att = rules["attendance"]
    return {"lesson": lesson, "quiz": float(rules["quiz"]),
            "attendance": att if att == "hours" else float(att)}


def credit_rules() -> dict:
    rules = current_app.config.get("PROGRESS_CREDIT_RULES")
    return rules if rules is not None else parse_credit_rules(current_app.config.get("CREDIT_RULES"))


def lesson_hours(minutes: float, rules: dict | None = None) -> float:
    """学时 for a completed lesson of ``minutes`` (the lesson's stated length)."""
    for minimum, hours in (rules or credit_rules())["lesson"]:
        if minutes >= minimum:
            return hours
    return 0.0


def quiz_hours(rules: dict | None = None) -> float:
    return (rules or credit_rules())["quiz"]


def attendance_hours(session_hours: float, rules: dict | None = None) -> float:
    rule = (rules or credit_rules())["attendance"]
    return max(0.0, float(session_hours)) if rule == "hours" else rule


def targets() -> dict[str, float]:
    return current_app.config.get("PROGRESS_TARGETS") or dict(DEFAULT_TARGETS)


def target_for(role: str) -> float:
    return float(targets().get(role, 0.0))


def completion() -> dict:
    return current_app.config.get("PROGRESS_COMPLETION") or dict(DEFAULT_COMPLETION)


def min_seconds(minutes: int) -> int:
    """Study time a lesson needs before it can count as completed."""
    return int(round(max(0, minutes) * 60 * completion().get("time_fraction", 0.5)))


def lesson_cap_seconds(minutes: int) -> int:
    factor = current_app.config.get("PROGRESS_LESSON_CAP_FACTOR", LESSON_CAP_FACTOR)
    return int(max(1, minutes) * 60 * factor)


def tz() -> ZoneInfo:
    return ZoneInfo(current_app.config.get("TIMEZONE") or "Asia/Shanghai")


def local(dt: datetime) -> datetime:
    """Naive UTC -> naive local time (for display and study years)."""
    return dt.replace(tzinfo=UTC).astimezone(tz()).replace(tzinfo=None)


def study_year(dt: datetime) -> int:
    return local(dt).year


def local_today():
    return datetime.now(tz()).date()
