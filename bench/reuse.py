"""``--reuse DIR``: keep the benchmark's generated data between runs and reuse it while valid.

A full index build of the 2,000 laws takes about 3 minutes of CPU (much more on a loaded
machine). Search work only needs the built index, so ``python -m bench --only search --reuse
DIR`` builds the courses, the SQLite database and the index into ``DIR`` once and reuses them
on later runs. ``DIR/reuse.json`` records what they were built from; they are rebuilt when
any of it changes:

* the arguments that shape the data (``--laws``, ``--plugins``),
* the Whoosh and rjieba versions,
* the code that turns laws into lessons, lessons into search documents and text into index
  terms: ``bench/corpus.py``, ``kb/content/``, ``kb/catalog.py``, ``kb/searching.py``,
  ``kb/plugins/`` (plugins add search documents), ``kb/search/analysis.py`` and
  ``userdict.txt``, and the schema and document fields in ``kb/search/index.py``
  (``make_schema``, ``_doc_fields``, ``WRITE_COMPOUND``). Query and scoring code is not part of it: that is what
  the reused index is for.

A reused run is a shortcut for iterating; the figures to report come from a run without
``--reuse`` (the documented command builds everything from a clean checkout).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .common import REPO

_FILES = ("bench/corpus.py", "kb/catalog.py", "kb/searching.py", "kb/search/analysis.py",
          "kb/search/userdict.txt")
_TREES = ("kb/content", "kb/plugins")


def fingerprint(args) -> dict:
    """What the generated data depends on (see the module docstring)."""
    from kb.search import index

    digest = hashlib.sha256()
    paths = [REPO / f for f in _FILES]
    for tree in _TREES:
        paths += sorted(p for p in (REPO / tree).rglob("*.py") if "__pycache__" not in p.parts)
    for p in paths:
        digest.update(str(p.relative_to(REPO)).encode())
        digest.update(p.read_bytes() if p.is_file() else b"<missing>")
    for fn in (index.make_schema, index._doc_fields):
        digest.update(inspect.getsource(fn).encode())
    digest.update(f"compound={index.WRITE_COMPOUND}".encode())
    versions = {}
    for dist in ("Whoosh-Reloaded", "rjieba"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    return {"laws": args.laws, "plugins": args.plugins, "versions": versions,
            "code_sha256": digest.hexdigest()}


def check(work: Path, args) -> dict:
    """Whether ``work`` holds data this run can reuse; the state to :func:`record` after a
    fresh build otherwise."""
    want = fingerprint(args)
    state = {"dir": str(work), "fingerprint": want, "valid": False, "built": None,
             "reason": ""}
    try:
        have = json.loads((work / "reuse.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state["reason"] = "no earlier build recorded there"
        return state
    if have.get("fingerprint") != want:
        changed = [k for k in want if have.get("fingerprint", {}).get(k) != want[k]]
        state["reason"] = "changed since the last build: " + ", ".join(changed)
        return state
    if not ((work / "index" / "CURRENT").is_file() and (work / "kb.sqlite3").is_file()):
        state["reason"] = "the index or database is missing"
        return state
    state.update(valid=True, built=have.get("built"))
    return state


def record(work: Path, state: dict) -> None:
    """Note that ``work`` now holds freshly built data for ``state['fingerprint']``."""
    state["built"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (work / "reuse.json").write_text(
        json.dumps({"fingerprint": state["fingerprint"], "built": state["built"]}, indent=2),
        encoding="utf-8")
