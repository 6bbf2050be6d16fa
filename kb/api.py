"""JSON API ``/api/v1`` (documented in ``kb/static/openapi.yaml``)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, send_from_directory

from .authz import public
from .extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # read-only GET endpoints; state-changing API calls will need a token


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(int(request.args.get(name, default)), high))
    except ValueError:
        return default


@bp.get("/search")
@public
def search():
    from .views import run_search

    q = request.args.get("q", "").strip()
    limit = _int_arg("limit", 10, 1, 50)
    page = _int_arg("page", 1, 1, 1000)
    if not q:
        return jsonify({"query": "", "total": 0, "page": page, "pages": 0, "results": [],
                        "suggestions": []})
    kind = request.args.get("kind") if request.args.get("kind") in ("lesson", "law_article") else None
    results = run_search(q, request.args.get("course"), request.args.get("tag"), page, limit, kind)
    if results.index_missing:
        from .views import SEARCH_RETRY_AFTER, search_unavailable_message

        title, message = search_unavailable_message()
        return jsonify({"error": title, "message": message, "status": 503,
                        "index_missing": True}), 503, {"Retry-After": str(SEARCH_RETRY_AFTER)}
    return jsonify({
        "query": q,
        "total": results.total,
        "page": results.page,
        "pages": results.pages,
        "index_missing": results.index_missing,
        "suggestions": results.suggestions,
        "results": [hit_json(hit) for hit in results.hits],
    })


def hit_json(hit) -> dict:
    return {"url": hit.url, "kind": hit.kind, "course": hit.course, "lesson": hit.lesson,
            "title": hit.title, "heading": hit.heading, "snippet": hit.snippet,
            "score": round(float(hit.score), 4)}


@bp.get("/openapi.yaml")
@public
def openapi():
    return send_from_directory(current_app.static_folder, "openapi.yaml",
                               mimetype="application/yaml")
