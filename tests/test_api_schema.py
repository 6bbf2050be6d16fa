"""Schemathesis against the OpenAPI file of /api/v1: no 500s, responses match the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from .conftest import CORPUS, make_config


@pytest.fixture(scope="module")
def api_app(tmp_path_factory):
    from kb import create_app, dbmigrate
    from kb.cli import run_sync

    app = create_app(make_config(tmp_path_factory.mktemp("api")))
    with app.app_context():
        dbmigrate.upgrade(app)
        if (CORPUS / "core" / "宪法相关法").is_dir():
            from kb.laws.library import import_paths

            import_paths([CORPUS / "core" / "宪法相关法"])
    run_sync(app)
    return app


def test_api_conforms_to_its_openapi_file(api_app):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.yaml", api_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/search", "/laws/{law_slug}/articles/{article}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def check(case):
            case.call_and_validate()

        check()
