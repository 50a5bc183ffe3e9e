"""Retraining a model from the operators' false-alarm labels, activating the candidate, rolling back."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, HTTPException
from starlette.concurrency import run_in_threadpool

from fabricad.service.audit import Actor
from fabricad.service.dependencies import AppState, get_state, reader, require
from fabricad.service.retraining import Retraining, RetrainRefused
from fabricad.service.schemas import (
    ComparisonOut,
    KeptVersionOut,
    RetrainIn,
    RetrainJobOut,
    RetrainOut,
    RollbackIn,
)

router = APIRouter(prefix="/v1/models", tags=["retraining"], dependencies=[Depends(reader)])


def _retraining(state: AppState) -> Retraining:
    if state.retraining is None:
        raise HTTPException(503, "retraining is not set up on this service")
    return state.retraining


def _out(state: AppState, name: str) -> RetrainOut:
    retraining = _retraining(state)
    false_alarms, confirmed = retraining.frames(name)
    status = retraining.status(name)
    job = None
    if status is not None:
        rows = [ComparisonOut(**row.model_dump(), verdict=row.verdict) for row in status.comparison]
        job = RetrainJobOut(**status.model_dump(exclude={"comparison", "pid"}), comparison=rows, offered=status.offered)
    reason = retraining.refusal(name, len(false_alarms))
    return RetrainOut(model=name, available=reason is None, reason=reason, false_alarms=len(false_alarms),
                      confirmed_defects=len(confirmed), job=job,
                      history=[KeptVersionOut(version=k.version, kept_at=k.kept_at, reason=k.reason)
                               for k in retraining.history(name)])


async def _carry_out(fn, *args):
    """A retraining action in a worker thread; a refusal is a 409 with its reason."""
    try:
        return await run_in_threadpool(fn, *args)
    except RetrainRefused as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/{name}/retrain", response_model=RetrainOut)
def retrain_status(name: str, state: AppState = Depends(get_state)) -> RetrainOut:
    """What a retrain would learn from (frames labelled false alarms, confirmed defects), the
    newest job with its progress or its comparison of the candidate with the model in use, and
    the bundles kept to roll back to."""
    return _out(state, name)


@router.post("/{name}/retrain", response_model=RetrainOut, status_code=202)
async def start_retrain(name: str, body: RetrainIn = Body(default_factory=RetrainIn), actor: Actor = Depends(require("admin")),
                        state: AppState = Depends(get_state)) -> RetrainOut:
    """Fine-tune the model on its frames labelled false alarms, in a process of its own; poll
    GET for progress. The candidate is compared with the model in use when it is done."""
    status = await _carry_out(_retraining(state).start, name, body.steps)
    state.audit.record(actor, "model.retrain.start", name, job=status.job, steps=status.steps,
                       false_alarms=status.false_alarm_frames, confirmed_defects=status.defect_frames)
    return _out(state, name)


@router.delete("/{name}/retrain", response_model=RetrainOut)
async def cancel_retrain(name: str, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> RetrainOut:
    """Stop a running retrain, or discard a finished one's candidate."""
    status = await _carry_out(_retraining(state).cancel, name)
    state.audit.record(actor, f"model.retrain.{'cancel' if status.state == 'cancelled' else 'discard'}", name, job=status.job)
    return _out(state, name)


@router.post("/{name}/retrain/activate", response_model=RetrainOut)
async def activate_retrain(name: str, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> RetrainOut:
    """Put the candidate in place of the model in use (same name: cameras and rolls follow); only
    a candidate that is not worse is offered. The replaced bundle is kept for a rollback."""
    status = await _carry_out(_retraining(state).activate, name)
    state.audit.record(actor, "model.retrain.activate", name, job=status.job, version=status.new_version,
                       previous=status.old_version, verdict=status.verdict)
    return _out(state, name)


@router.get("/{name}/history", response_model=list[KeptVersionOut])
def model_history(name: str, state: AppState = Depends(get_state)) -> list[KeptVersionOut]:
    state.registry.entry(name)  # 404 for an unknown model
    return [KeptVersionOut(version=k.version, kept_at=k.kept_at, reason=k.reason) for k in _retraining(state).history(name)]


@router.post("/{name}/rollback", response_model=RetrainOut)
async def rollback(name: str, body: RollbackIn = Body(default_factory=RollbackIn), actor: Actor = Depends(require("admin")),
                   state: AppState = Depends(get_state)) -> RetrainOut:
    """Put back a kept bundle (the newest, or `version`); the one in use is kept in its place."""
    previous = state.registry.entry(name).version
    kept = await _carry_out(_retraining(state).rollback, name, body.version)
    state.audit.record(actor, "model.rollback", name, version=kept.version, previous=previous)
    return _out(state, name)
