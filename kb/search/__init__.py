"""Chinese full-text search for 履职学堂: one Whoosh document per lesson section.

Usage::

    from kb.search import SearchIndex, SearchDoc, analysis
    analysis.warm_up()                      # once at app start (loads rjieba + userdict.txt)
    index = SearchIndex(app.config["KB_INDEX_DIR"])   # one per process, shared by threads
    index.rebuild(docs)                     # kb sync: new generation, swapped in atomically
    index.update_lessons([(course, lesson)], docs_of_that_lesson)
    results = index.search("主席团闭会期间做什么", course=None, tag=None, page=1)

See ``kb/search/index.py`` for the on-disk layout and the ranking.
"""

from . import analysis
from .index import (
    SearchDoc,
    SearchHit,
    SearchIndex,
    SearchIndexBusy,
    SearchIndexUnreadable,
    SearchResults,
    make_snippet,
)

__all__ = [
    "SearchDoc",
    "SearchHit",
    "SearchIndex",
    "SearchIndexBusy",
    "SearchIndexUnreadable",
    "SearchResults",
    "analysis",
    "make_snippet",
]
