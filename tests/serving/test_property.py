"""Schemathesis against the OpenAPI spec: generated requests (valid and not) never get a 5xx.

Every operation gets a few generated cases, so the run stays within seconds. Schemathesis'
pytest decorator does not run on pytest 9 yet, so the cases are drawn with Hypothesis here.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from pipelines.serving.app import create_app  # noqa: E402

EXAMPLES = 6
GROUP = "generated"


def test_no_generated_request_gets_a_server_error(world):
    app = create_app(world.settings())
    app.state.runtime.start()
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def no_server_error(case):
                case.call_and_validate(headers=world.headers("admin"), checks=[not_a_server_error])

            no_server_error()
    finally:
        app.state.runtime.stop()
