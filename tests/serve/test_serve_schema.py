"""schemathesis against /openapi.json: whatever the schema admits (and what it does not), no 5xx."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from live import running

from kollm.serve.app import create_app
from kollm.serve.engine import Engine

schemathesis = pytest.importorskip("schemathesis")


def test_no_generated_request_makes_the_server_fail(tiny_model_dir):
    from schemathesis.checks import not_a_server_error

    # The default queue bound (256) also bounds one request's work: prompts x n beyond it is a 400, so the largest
    # request schemathesis can make stays well inside the per-call timeout.

    # The schema is read and schemathesis' modules imported before the server thread starts: CPython 3.11 keeps one
    # AST recursion counter per interpreter, so pytest rewriting a module in this thread while another thread parses
    # fails with "AST constructor recursion depth mismatch" (cpython#106905, seen once in CI).
    app = create_app(Engine.load(tiny_model_dir))
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/completions", "/v1/chat/completions", "/tokenize"}
    strategies = [op.as_strategy() for op in operations]
    with running(app) as url:
        for strategy in strategies:

            @given(case=strategy)
            @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case: object) -> None:
                case.call_and_validate(base_url=url, checks=[not_a_server_error], timeout=60)

            check()
