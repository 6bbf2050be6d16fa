"""Every hook a plugin can implement. One file, hooks prefixed ``kb_``, called by keyword.

Families, by what they do:

* setup hooks run once per app (``kb_init_app``, ``kb_blueprints``, ``kb_migration_dirs``,
  ``kb_cli_commands``, ``kb_markdown_extensions``);
* content hooks take part in ``kb sync`` and search (``kb_content_sync``,
  ``kb_search_documents``);
* template hooks fill page slots and return typed records from ``kb.records``
  (``kb_nav_items``, ``kb_lesson_panels``, ``kb_dashboard_cards``, ``kb_continue_learning``,
  ``kb_page_assets``);
* event hooks receive what happened (``kb_track_event``);
* report and permission hooks (``kb_report_columns``, ``kb_can_view``), the personal data
  export (``kb_personal_data``), and demo data (``kb_demo_data``).

Implementations must not give their arguments default values (the core's collectors pass only
arguments without defaults, see pluggy#442), and may accept fewer arguments than the spec lists.
HTML in records (``Panel.html``, ``Card.html``) is inserted as is: the plugin escapes user text.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("kb")


@hookspec
def kb_init_app(app):
    """Configure the app once it has its extensions and before it serves.

    :param app: the Flask application.
    :return: None.
    """


@hookspec
def kb_blueprints(app):
    """Return Flask blueprints to register; a blueprint's name is its plugin's short name.

    :param app: the Flask application.
    :return: a list of :class:`flask.Blueprint`. Two blueprints with one name are refused with
        an error naming both plugins.
    """


@hookspec
def kb_migration_dirs():
    """Return the plugin's Alembic version folders, one branch per plugin.

    :return: a list of :class:`kb.records.MigrationDir`. Revisions in the folder start their
        branch with ``branch_labels=(branch,)`` and ``depends_on="c0001"`` (the core's first
        revision) or a later core revision the plugin's tables need.
    """


@hookspec
def kb_cli_commands(app):
    """Return click commands or groups to add to the ``kb`` command line.

    :param app: the Flask application.
    :return: a list of :class:`click.Command`; a name already taken is refused.
    """


@hookspec
def kb_markdown_extensions(app):
    """Return extra Python-Markdown extensions used when lessons are rendered at sync time.

    :param app: the Flask application.
    :return: a list of :class:`markdown.Extension` instances. Their output is still sanitised.
    """


@hookspec
def kb_content_sync(app, settings, report):
    """Sync the plugin's own content files during ``kb sync`` (e.g. ``quizzes/*.yaml``).

    Runs after lessons were synced. Problems go to ``report.problem(path, line, message)``;
    one broken file must not stop the others.

    :param app: the Flask application (an app context is active).
    :param settings: :class:`kb.records.SyncSettings`.
    :param report: :class:`kb.records.SyncReport` to add counts and problems to.
    :return: None.
    """


@hookspec
def kb_search_documents(app):
    """Return extra documents for the search index (e.g. law articles).

    Called on full rebuilds. The plugin updates its own documents incrementally through
    ``kb.search_index(app).update_lessons`` when its content changes.

    :param app: the Flask application.
    :return: an iterable of :class:`kb.search.SearchDoc` with a ``kind`` other than "lesson".
    """


@hookspec
def kb_nav_items(user):
    """Return links for the main navigation.

    :param user: the current user (may be anonymous).
    :return: a list of :class:`kb.records.NavItem`; keys must be unique across plugins.
    """


@hookspec
def kb_lesson_panels(lesson, user):
    """Return panels shown under a lesson.

    :param lesson: the :class:`kb.catalog.LessonView` being shown.
    :param user: the current user (may be anonymous).
    :return: a list of :class:`kb.records.Panel`.
    """


@hookspec
def kb_dashboard_cards(user):
    """Return cards for the home page dashboard.

    :param user: the current user (may be anonymous).
    :return: a list of :class:`kb.records.Card`.
    """


@hookspec(firstresult=True)
def kb_continue_learning(user):
    """Return the card for the home page's continue-learning slot. Stops at first non-None result.

    :param user: the current user (logged in).
    :return: a :class:`kb.records.Card` or None.
    """


@hookspec
def kb_page_assets(endpoint, user):
    """Return stylesheets and scripts a page needs (inline scripts are forbidden by the CSP).

    :param endpoint: the Flask endpoint being rendered, e.g. ``"core.lesson"``.
    :param user: the current user (may be anonymous).
    :return: a list of :class:`kb.records.Asset`.
    """


@hookspec
def kb_track_event(event):
    """Receive an event another part of the system emitted (see :mod:`kb.events`).

    Consumers must be idempotent on ``event.key``.

    :param event: a :class:`kb.events.Event`.
    :return: None.
    """


@hookspec
def kb_report_columns(scope):
    """Return columns to add to the organisation report.

    :param scope: :class:`kb.records.ReportScope` describing the rows.
    :return: a list of :class:`kb.records.ReportColumn`; keys must be unique across plugins.
    """


@hookspec
def kb_personal_data(user):
    """Return the sections of one person's data export (个人信息, for privacy requests).

    Called for the person's own export (``/account/data``) and for a staff export
    (``/admin/users/<id>/data``); a request context is active, so headers are in the reader's
    language. Return every record the plugin keeps about ``user`` (one section per kind, empty
    sections included), never password hashes, tokens, device identifiers or other people's
    personal data; another person may appear only as an actor label (the name of the staff
    member who approved).

    :param user: the :class:`kb.models.User` whose data is exported (not the viewer).
    :return: a list of :class:`kb.records.PersonalSection`; keys must be unique across plugins,
        and every table with a ``user_id`` column must be named in some section's ``tables``.
    """


@hookspec(firstresult=True)
def kb_can_view(user, obj):
    """Decide whether ``user`` may see ``obj``. Stops at first non-None result.

    The core's own rule runs last (``trylast``); a plugin returns True/False for the objects it
    knows and None for the rest.

    :param user: the current user (may be anonymous).
    :param obj: the object asked about (a lesson, a course, a plugin record ...).
    :return: True, False, or None to let the next implementation decide.
    """


@hookspec
def kb_required_courses(user, year):
    """Return the slugs of the courses ``user`` must complete in ``year`` (e.g. set by county staff).

    Lets one plugin (quizzes' daily practice) use what another (progress) decides, without
    importing it.

    :param user: a signed-in :class:`kb.models.User`.
    :param year: the study year (int).
    :return: a list of course slugs (may be empty).
    """


@hookspec
def kb_demo_data(app, users):
    """Add the plugin's demo data after the core created the demo organisations and people.

    :param app: the Flask application (an app context is active).
    :param users: dict of demo username -> :class:`kb.models.User`.
    :return: None.
    """
