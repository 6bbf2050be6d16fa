"""Typed records that registration and template hooks return.

The core validates them and refuses duplicates with an error naming both plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class NavItem:
    """A link in the main navigation."""

    key: str
    label: str
    url: str
    order: int = 100
    icon: str = ""


@dataclass(frozen=True)
class Panel:
    """A box under a lesson (quiz for this course, study progress, ...). ``html`` must be safe."""

    key: str
    title: str
    html: str
    order: int = 100


@dataclass(frozen=True)
class Card:
    """A card on the home page dashboard. ``html`` must be safe."""

    key: str
    title: str
    html: str
    order: int = 100
    # "main" cards go in the dashboard grid; "continue" fills the continue-learning slot.
    slot: str = "main"


@dataclass(frozen=True)
class Asset:
    """A static stylesheet or script a plugin needs on a page (no inline script: CSP)."""

    kind: str  # "css" | "js"
    url: str


@dataclass(frozen=True)
class MigrationDir:
    """A plugin's Alembic version folder; its revisions carry ``branch_labels=(branch,)``."""

    branch: str
    path: Path


@dataclass(frozen=True)
class ReportScope:
    """What an organisation report is being computed for.

    ``level`` is the row kind: "county" rows (org unit ids of counties, for a province view),
    "township" rows of a county (org unit ids), or "person" rows of a township (user ids);
    ``row_ids`` are those ids; ``year`` the study year. A plugin returns columns only for the
    levels it can compute and an empty list for the others. :func:`kb.models.report_members`
    maps people to the rows they count in, for every level.
    """

    level: str
    row_ids: tuple[int, ...]
    year: int
    viewer_id: int | None = None


@dataclass(frozen=True)
class ReportColumn:
    """A column a plugin adds to the organisation report.

    ``values(scope)`` returns {row id: value}, computed in SQL for all rows at once. A
    ``percent`` value is on the 0–100 scale (12.5 shows as 12.5%); rows without a value are
    left out (they show as —).
    """

    key: str
    label: str
    values: Callable[[ReportScope], dict[int, Any]]
    kind: str = "number"  # number | percent | text
    order: int = 100


@dataclass
class SyncSettings:
    """What ``kb sync`` was asked to do; passed to plugins that sync their own content."""

    courses_dir: Path
    quizzes_dir: Path
    rebuild: bool = False
    strict: bool = False


@dataclass
class Problem:
    """A problem in a content file: ``path:line: message``."""

    path: str
    line: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class SyncReport:
    """What a sync did: counts per kind and every problem found."""

    added: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    changed_lessons: set[tuple[str, str]] = field(default_factory=set)

    def count(self, bucket: str, kind: str, n: int = 1) -> None:
        d = getattr(self, bucket)
        d[kind] = d.get(kind, 0) + n

    def problem(self, path, line: int, message: str, severity: str = "error") -> None:
        """Add a problem; ``message`` may be an ``_l()`` text (shown in the current language)."""
        self.problems.append(Problem(str(path), line, str(message), severity))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


@dataclass(frozen=True)
class PersonalSection:
    """One section of a person's data export (个人信息): a titled table of their records.

    ``columns`` are the headers in the reader's language; each row has one value per column
    (str, int, float, bool, date, datetime or None; naive datetimes are UTC and shown in the
    deployment's time zone). ``tables`` names the database tables the section covers (a derived
    table counts when its content is fully shown by the section), so ``tests/test_personal_data``
    can fail on a table with a ``user_id`` column that no section covers. An empty section is
    still returned: it tells the person the system keeps that kind of record and has none.
    """

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...] = ()
    tables: tuple[str, ...] = ()
    order: int = 100
