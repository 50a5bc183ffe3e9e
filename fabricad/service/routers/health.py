"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from fabricad.service.dependencies import AppState, get_state
from fabricad.service.metrics import Scrape
from fabricad.service.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut, "description": "not ready: see problems"}})
def readyz(state: AppState = Depends(get_state)) -> JSONResponse:
    problems = []
    active = state.registry.active
    if active is None:
        problems.append("no active model")
        problems += [f"model {name} cannot be loaded: {error}" for name, error in state.registry.errors.items()]
    elif state.registry.entry(active).engine is None:
        problems.append(f"model {active} not loaded")
    if not state.database.ping():
        problems.append("defect database unreachable")
    body = {"ready": not problems, "model": active, "problems": problems}
    return JSONResponse(body, status_code=200 if not problems else 503)


@router.get("/metrics", response_class=Response)
def metrics(state: AppState = Depends(get_state)) -> Response:
    active = state.registry.active  # read when scraped: a swap or a bundle exported again shows at once
    scrape = Scrape(cameras=[c.status() for c in state.cameras.cameras.values()] if state.cameras else [],
                    uploads=state.inspect_load(), line=state.line.status() if state.line else [],
                    model=(active, state.registry.entry(active).version) if active is not None else None)
    return Response(state.metrics.render(scrape), media_type="text/plain; version=0.0.4")

