"""Schemathesis against the live service's own OpenAPI schema: no input the schema allows may
produce a 5xx. Runs with an admin key so mutating endpoints are exercised too.

Excluded: adding cameras (generated sources would be URLs of arbitrary hosts; tests only talk to
loopback) and the MJPEG stream (it never ends by design)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from tests.test_service import ADMIN, Server  # noqa: E402


@pytest.fixture(scope="module")
def live_schema(models_dir, tmp_path_factory):
    server = Server(models_dir, tmp_path_factory.mktemp("fuzz"))
    yield schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    server.stop()


schema = schemathesis.pytest.from_fixture("live_schema").exclude(method="POST", path="/v1/cameras").exclude(
    path_regex="stream\\.mjpeg$"
)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_server_error(case):
    case.call_and_validate(headers={"X-API-Key": ADMIN}, checks=[not_a_server_error], timeout=30)
