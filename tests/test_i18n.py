"""The English UI catalogue: complete, well-formed, and actually used by the app.

Every string the source marks for translation (``_()``, ``gettext``, ``ngettext``, ``_l``,
``lazy_gettext``, as ``make extract-messages`` extracts them with ``babel.cfg``) must have an
English translation in ``kb/translations/en/LC_MESSAGES/messages.po``. When this fails, run
``make extract-messages`` and translate the new entries (their ``msgstr`` is empty).
"""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from tests.conftest import make_config

REPO = Path(__file__).resolve().parent.parent
BABEL_CFG = REPO / "babel.cfg"
PO = REPO / "kb" / "translations" / "en" / "LC_MESSAGES" / "messages.po"
# The keywords `make extract-messages` uses: Babel's defaults (_, gettext, ngettext, ...) + -k _l
# -k lazy_gettext.
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[sdifr]")


def _key(msgid) -> str:
    return msgid[0] if isinstance(msgid, (tuple, list)) else msgid


def _forms(value) -> tuple[str, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value,)


@pytest.fixture(scope="module")
def extracted() -> dict[str, list[str]]:
    """msgid -> ["file:line", ...] for every translatable string in the source tree."""
    with BABEL_CFG.open() as fh:
        method_map, options_map = parse_mapping_cfg(fh, str(BABEL_CFG))
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(REPO), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True
    ):
        key = _key(message)
        if key:
            found.setdefault(key, []).append(f"{filename}:{lineno}")
    return found


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    with PO.open("rb") as fh:
        return read_po(fh, locale="en")


def _translated(message) -> bool:
    return "fuzzy" not in message.flags and all(s.strip() for s in _forms(message.string))


def test_extraction_finds_the_ui(extracted):
    # Guards against babel.cfg patterns silently matching nothing.
    assert len(extracted) > 300
    assert "课程" in extracted
    files = {loc.rsplit(":", 1)[0] for locs in extracted.values() for loc in locs}
    assert any(f.startswith("kb/plugins/") and f.endswith(".html") for f in files)
    assert any(f.startswith("kb/plugins/") and f.endswith(".py") for f in files)


def test_every_ui_string_has_an_english_translation(extracted, catalog):
    missing = []
    for msgid, locations in sorted(extracted.items(), key=lambda kv: kv[1][0]):
        message = catalog.get(msgid)
        if message is None or not _translated(message):
            state = "fuzzy" if message is not None and "fuzzy" in message.flags else \
                "untranslated" if message is not None else "not in messages.po"
            missing.append(f"  {locations[0]}: {msgid!r} ({state})")
    assert not missing, (
        f"{len(missing)} UI strings have no English translation; run `make extract-messages` "
        f"and translate (msgstr in {PO.relative_to(REPO)}):\n" + "\n".join(missing))


def test_catalogue_compiles_without_format_errors(catalog):
    problems = [f"{_key(m.id)!r}: {err}" for m, errors in catalog.check() for err in errors]
    for message in catalog:
        if not message.id or not _translated(message):
            continue
        ids = _forms(message.id)
        names = set().union(*(PLACEHOLDER.findall(i) for i in ids))
        values = {name: 1 for name in names}
        for form in _forms(message.string):
            if set(PLACEHOLDER.findall(form)) != names and not (
                    len(ids) > 1 and set(PLACEHOLDER.findall(form)) <= names):
                problems.append(f"{_key(message.id)!r}: placeholders {sorted(names)} "
                                f"but the translation has {sorted(PLACEHOLDER.findall(form))}")
            # Jinja's new-style gettext always applies `% variables`; Flask-Babel does when
            # there are variables. A translation must survive it whenever the msgid does.
            try:
                ids[0] % values
            except (ValueError, TypeError, KeyError):
                continue
            try:
                form % values
            except (ValueError, TypeError, KeyError) as exc:
                problems.append(f"{_key(message.id)!r}: translation fails `% vars`: {exc}")
    assert not problems, "format errors in messages.po:\n" + "\n".join(problems)

    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    translations = Translations(fp=buf)
    assert translations.gettext("课程") == catalog.get("课程").string != "课程"
    assert translations.plural(1) == 0 and translations.plural(2) == 1


@pytest.fixture
def english_app(tmp_path, catalog):
    """An app reading a freshly compiled .mo (not whatever `make install` left behind)."""
    from kb import create_app, dbmigrate
    from kb.extensions import babel, db

    directory = tmp_path / "translations"
    (directory / "en" / "LC_MESSAGES").mkdir(parents=True)
    with (directory / "en" / "LC_MESSAGES" / "messages.mo").open("wb") as fh:
        write_mo(fh, catalog)
    app = create_app(make_config(tmp_path, BABEL_TRANSLATION_DIRECTORIES=str(directory)))
    assert app.extensions["babel"].translation_directories == [str(directory)]
    with app.app_context():
        dbmigrate.upgrade(app)
        # kb.extensions.babel is one Babel() for the whole process, and Flask-Babel caches
        # loaded translations on its domain keyed only by locale: drop what other apps loaded.
        babel.domain_instance.cache.clear()
    yield app
    with app.app_context():
        babel.domain_instance.cache.clear()
        db.engine.dispose()


def test_english_ui_end_to_end(english_app, catalog):
    client = english_app.test_client()
    page = client.get("/").get_data(as_text=True)
    assert '<html lang="zh-CN"' in page and ">课程</a>" in page

    client.post("/prefs", data={"lang": "en"})
    page = client.get("/").get_data(as_text=True)
    courses = catalog.get("课程").string
    assert '<html lang="en"' in page
    assert f">{courses}</a>" in page
    assert catalog.get("跳到正文").string in page and "跳到正文" not in page

    client.post("/prefs", data={"lang": "zh_CN"})
    assert '<html lang="zh-CN"' in client.get("/").get_data(as_text=True)
