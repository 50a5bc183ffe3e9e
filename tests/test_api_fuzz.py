"""Schemathesis against the live service's own OpenAPI schema: no input the schema allows may
produce a 5xx. Runs with an admin key so mutating endpoints are exercised too.

Driven through schemathesis' Python API in an ordinary test (its lazy-fixture pytest plugin
does not work with pytest 9). Excluded: adding cameras (generated sources would be URLs of
arbitrary hosts; tests only talk to loopback) and the MJPEG stream (it never ends by design)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.live_server import ADMIN, Server  # noqa: E402

EXCLUDED = {("POST", "/v1/cameras"), ("GET", "/v1/cameras/{camera_id}/stream.mjpeg")}


def test_no_input_makes_a_server_error(models_dir, tmp_path):
    server = Server(models_dir, tmp_path)
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        tested, failures = [], []
        for operation in operations:
            if (operation.method.upper(), operation.path) in EXCLUDED:
                continue

            @given(case=operation.as_strategy())
            # derandomize: the same inputs every CI run (a random exploration found the 64-bit
            # overflow bugs this guards against; run with derandomize=False to explore anew)
            @settings(max_examples=12, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case):
                response = case.call(base_url=server.url, headers={"X-API-Key": ADMIN}, timeout=30)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

            fuzz()
            tested.append(f"{operation.method.upper()} {operation.path}")
        assert len(tested) >= 12, tested
        assert failures == []
    finally:
        server.stop()
