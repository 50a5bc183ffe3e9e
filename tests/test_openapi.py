"""The API's contract as a client generator or Swagger UI reads it: every JSON answer has a
schema, operation ids are the handlers' names, the upload body of POST /v1/inspect is declared,
and the error answers a route can give (401/403/404/409) are listed with their body."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabricad.service.app import create_app
from fabricad.service.settings import ServiceSettings

BINARY = {"/metrics", "/v1/defects/export.zip", "/v1/defects/{defect_id}/image", "/v1/defects/{defect_id}/overlay",
          "/v1/cameras/{camera_id}/latest.jpg", "/v1/cameras/{camera_id}/stream.mjpeg", "/v1/rolls/{roll_id}/map.png",
          "/v1/rolls/{roll_id}/report.{fmt}"}
"""Answers that are files, streams or Prometheus text rather than JSON."""


@pytest.fixture(scope="module")
def spec() -> dict:
    return create_app(ServiceSettings(models_dir=Path("/nonexistent"))).openapi()


def operations(spec: dict):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_json_answer_has_a_schema(spec):
    untyped = []
    for path, method, operation in operations(spec):
        ok = next((operation["responses"][s] for s in ("200", "201") if s in operation["responses"]), None)
        if ok is None or path in BINARY:
            continue
        schema = ok.get("content", {}).get("application/json", {}).get("schema", {})
        if "$ref" not in str(schema):  # a model of its own, not "any object"
            untyped.append(f"{method.upper()} {path}")
    assert untyped == []


def test_operation_ids_are_the_handler_names(spec):
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids))
    found = {(path, method): operation["operationId"] for path, method, operation in operations(spec)}
    assert found[("/v1/inspect", "post")] == "inspect"
    assert found[("/v1/rolls", "post")] == "start_roll"
    assert found[("/v1/defects/{defect_id}/ack", "post")] == "acknowledge"


def test_the_inspect_upload_body_is_in_the_schema(spec):
    body = spec["paths"]["/v1/inspect"]["post"]["requestBody"]
    assert body["required"] is True
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"} and form["required"] == ["file"]
    assert body["content"]["image/png"]["schema"]["format"] == "binary"


OPEN_TO_ALL = ("/v1/whoami", "/v1/auth/login", "/v1/auth/logout")
"""Who am I, sign in and sign out take no credential, by their nature."""


def test_error_answers_are_declared_with_their_body(spec):
    missing = []
    for path, method, operation in operations(spec):
        answers = operation["responses"]
        if path.startswith("/v1/") and path not in OPEN_TO_ALL:
            need = {"401"}
            if method in ("put", "delete") or (method == "post" and not path.startswith("/v1/inspect")):
                need.add("403")
            if "{" in path:
                need.add("404")
            missing += [f"{method.upper()} {path}: {s}" for s in sorted(need - set(answers))]
        for status, answer in answers.items():
            if status.startswith("4") and status != "422":
                ref = answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                if not ref.endswith("/ErrorOut"):
                    missing.append(f"{method.upper()} {path}: {status} without ErrorOut")
    assert missing == []
    conflicts = {(p, m) for p, m, o in operations(spec) if "409" in o["responses"]}
    assert {("/v1/rolls", "post"), ("/v1/rolls/{roll_id}/end", "post"), ("/v1/cameras", "post")} <= conflicts
