"""What the OpenAPI schema says beyond what FastAPI infers: stable operation ids (a generated
client's method names must not change when a path does) and the error answers each route can
give, derived from what the route depends on rather than written by hand at every route."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from fabricad.service.dependencies import reader
from fabricad.service.schemas import ErrorOut


def operation_id(route: APIRoute) -> str:
    """The route's function name (`inspect`, `start_roll`, …): unique in this app (a test checks)."""
    return route.name


def _calls(dependant: Dependant) -> Iterator:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def declare_errors(router: APIRouter) -> None:
    """401/403 on routes behind an API-key role, 401 on reads when keys are required for them,
    404 on routes that name a resource in their path; every 4xx with the `ErrorOut` body. Call it
    on each router before the app includes it."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        calls = list(_calls(route.dependant))
        roles = [getattr(call, "required_role", None) for call in calls if hasattr(call, "required_role")]
        errors: dict[int, str] = {}
        if roles:
            errors[401] = "not signed in: no session token or API key, an unknown or expired one (header X-API-Key or Authorization: Bearer)"
            errors[403] = f"the user's or key's role is below {roles[0]}"
        elif reader in calls:
            errors[401] = "reads need an API key on this service (FABRICAD_REQUIRE_KEY_FOR_READS)"
        if route.param_convertors:
            errors[404] = "no such " + ", ".join(sorted(route.param_convertors))
        for status, description in errors.items():
            route.responses.setdefault(status, {"description": description})
        for status, answer in route.responses.items():
            if 400 <= int(status) < 500 and int(status) != 422:
                answer.setdefault("model", ErrorOut)
