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

    with running(create_app(Engine.load(tiny_model_dir))) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/v1/completions", "/v1/chat/completions", "/tokenize"}
        for op in operations:

            @given(case=op.as_strategy())
            @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case: object) -> None:
                case.call_and_validate(checks=[not_a_server_error], timeout=60)

            check()
