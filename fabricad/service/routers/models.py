"""Models: list, activate (hot swap), read and change thresholds, teach-in on the line."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from fabricad.defect_types import load_types
from fabricad.inference.operating_point import OperatingPoint
from fabricad.rolls.grading import FALSE_ALARM
from fabricad.service.audit import Actor
from fabricad.service.dependencies import AppState, get_state, reader, require
from fabricad.service.schemas import (
    CalibrationOut,
    DefectTypesOut,
    ModelOut,
    OperatingPointIn,
    OperatingPointOut,
    TeachInIn,
    TeachInOut,
    ThresholdIn,
    ThresholdOut,
)
from fabricad.service.teach_in import line_threshold
from fabricad.service.type_labels import SOURCE, service_examples

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Depends(reader)])


def _describe(state: AppState, name: str) -> ModelOut:
    entry = state.registry.entry(name)
    threshold = entry.engine.threshold if entry.engine else entry.meta.threshold
    return ModelOut(
        name=name, active=state.registry.active == name, loaded=entry.engine is not None,
        precision=entry.meta.precision, input=[entry.meta.input.height, entry.meta.input.width],
        version=entry.version, threshold=ThresholdOut(**threshold.model_dump()), teacher=entry.meta.teacher.get("name", "?"),
        backend=entry.engine.backend.name if entry.engine else None,
        texture_alignment=bool(entry.meta.texture) and state.registry.align,
    )


@router.get("", response_model=list[ModelOut])
def list_models(state: AppState = Depends(get_state)) -> list[ModelOut]:
    state.registry.scan()  # a bundle exported since the last look shows at once
    return [_describe(state, name) for name in state.registry.names()]


@router.post("/{name}/activate", response_model=ModelOut)
async def activate(name: str, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> ModelOut:
    previous = state.registry.active
    await run_in_threadpool(state.registry.activate, name)
    described = _describe(state, name)
    state.audit.record(actor, "model.activate", name, version=described.version, previous=previous)
    return described


@router.get("/{name}/threshold", response_model=ThresholdOut)
def get_threshold(name: str, state: AppState = Depends(get_state)) -> ThresholdOut:
    return _describe(state, name).threshold


@router.put("/{name}/threshold", response_model=ThresholdOut)
def put_threshold(name: str, body: ThresholdIn, actor: Actor = Depends(require("admin")),
                  state: AppState = Depends(get_state)) -> ThresholdOut:
    if (body.value is None) == (body.target_fpr is None):
        raise HTTPException(422, "give exactly one of 'value' or 'target_fpr'")
    entry, engine = state.registry.engine(name)
    previous = engine.threshold.value
    line = state.thresholds.line_scores(name, entry.version) if body.target_fpr is not None else None
    if line:  # a rate on the line's good fabric, as the teach-in measured it
        threshold = line_threshold(line, body.target_fpr)
        engine.use_threshold(threshold)
    else:
        threshold = engine.set_threshold(body.value, target_fpr=body.target_fpr)
    state.audit.record(actor, "threshold.set", name, value=threshold.value, previous=previous, method=threshold.method,
                       target_fpr=body.target_fpr)
    _use_zones(state, entry, engine, None)
    return _keep(state, entry, threshold)


def _keep(state: AppState, entry, threshold) -> ThresholdOut:
    """The threshold now in force, kept across restarts for this bundle version."""
    state.thresholds.save(entry.name, entry.version, threshold)
    return ThresholdOut(**threshold.model_dump())


def _use_operating_point(state: AppState, entry, engine, op: OperatingPoint | None) -> None:
    """`op` in force on the engine and kept across restarts for this bundle version."""
    engine.use_operating_point(op)
    state.thresholds.save_operating_point(entry.name, entry.version, op)


def _use_zones(state: AppState, entry, engine, zones: list[float] | None, selvedge: float | None = None) -> None:
    """New zone thresholds (a zone teach-in), or none: the latest threshold set wins, and zones
    replace the threshold in their bands, so a threshold set by hand or a teach-in without
    zones drops them. The size rules stay, and so does the selvedge band's threshold unless a
    teach-in beside the band gives a new one (`selvedge`)."""
    op = engine.operating_point
    if op is None and zones is None:
        return
    update: dict = {"zone_thresholds": zones}
    if selvedge is not None and op is not None and op.selvedge_mm:
        update["selvedge_threshold"] = selvedge
    op = (op or OperatingPoint()).model_copy(update=update)
    keeps_something = (op.zone_thresholds or op.min_area_mm2 or op.min_length_mm or op.selvedge_mm
                       or op.persistence_frames > 1)
    _use_operating_point(state, entry, engine, op if keeps_something else None)


@router.delete("/{name}/threshold", response_model=ThresholdOut)
def reset_threshold(name: str, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> ThresholdOut:
    """Back to the threshold calibrated into the bundle; the one set on the line is forgotten."""
    entry, engine = state.registry.engine(name)
    previous = engine.threshold.value
    engine.use_threshold(engine.meta.threshold)
    state.thresholds.forget(name)
    _use_zones(state, entry, engine, None)
    state.audit.record(actor, "threshold.reset", name, value=engine.threshold.value, previous=previous)
    return ThresholdOut(**engine.threshold.model_dump())


@router.get("/{name}/calibration", response_model=CalibrationOut)
def calibration(name: str, value: float | None = Query(None, description="a threshold to preview; the current one when omitted"),
                state: AppState = Depends(get_state)) -> CalibrationOut:
    """What a threshold would do before it is applied: the false-alarm rate on the line's good
    fabric (the last teach-in's frames) or, before any teach-in, on the model's calibration
    images, and the share of operator-confirmed defects it would still catch."""
    entry = state.registry.entry(name)
    current = entry.engine.threshold.value if entry.engine else entry.meta.threshold.value
    value = current if value is None else value
    line = state.thresholds.line_scores(name, entry.version)
    normal = np.asarray(entry.meta.normal_scores if line is None else line, dtype=float)
    labelled = state.defects.labelled_scores(name)
    confirmed = np.asarray([s for label, scores in labelled.items() if label != FALSE_ALARM for s in scores], dtype=float)
    false_alarms = np.asarray(labelled.get(FALSE_ALARM, []), dtype=float)
    return CalibrationOut(
        value=value, current=current, normal_source="bundle" if line is None else "teach-in",
        false_alarm_rate=float((normal > value).mean()) if normal.size else None,
        recall=float((confirmed > value).mean()) if confirmed.size else None,
        false_alarms_still_raised=float((false_alarms > value).mean()) if false_alarms.size else None,
        normal_scores=sorted(normal.tolist()), defect_scores=sorted(confirmed.tolist()),
        false_alarm_scores=sorted(false_alarms.tolist()),
    )


@router.post("/{name}/teach-in", response_model=TeachInOut, status_code=201)
def start_teach_in(name: str, body: TeachInIn, actor: Actor = Depends(require("admin")),
                   state: AppState = Depends(get_state)) -> TeachInOut:
    """Collect the scores of the next `frames` frames this model inspects (with fabric in view,
    from `camera_id` only if given) while the line runs fabric known to be good; a teach-in
    already running for the model starts over. Apply the proposed threshold once it is ready."""
    entry = state.registry.entry(name)  # 404 for an unknown model
    started = state.teach_ins.start(name, body.frames, body.target_fpr, body.camera_id, entry.version, zones=body.zones)
    state.audit.record(actor, "teach_in.start", name, frames=body.frames, target_fpr=body.target_fpr, camera_id=body.camera_id,
                       zones=body.zones)
    return TeachInOut(**started.status())


@router.get("/{name}/teach-in", response_model=TeachInOut)
def teach_in_status(name: str, state: AppState = Depends(get_state)) -> TeachInOut:
    teach_in = state.teach_ins.get(name)
    if teach_in is None:
        raise HTTPException(404, f"no teach-in is running for {name}")
    return TeachInOut(**teach_in.status())


@router.post("/{name}/teach-in/apply", response_model=ThresholdOut)
def apply_teach_in(name: str, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> ThresholdOut:
    """Put the teach-in's threshold in force (kept across restarts) and end the teach-in."""
    teach_in = state.teach_ins.get(name)
    if teach_in is None:
        raise HTTPException(404, f"no teach-in is running for {name}")
    proposed = teach_in.proposal()
    if proposed is None:
        raise HTTPException(409, f"the teach-in has {len(teach_in.scores)} of {teach_in.frames} frames; wait for the rest")
    entry, engine = state.registry.engine(name)
    if teach_in.version and teach_in.version != entry.version:
        raise HTTPException(409, f"{name} was exported again since this teach-in started: its scores are the old "
                                 "model's; start a new teach-in")
    previous = engine.threshold.value
    engine.use_threshold(proposed)
    zones, selvedge = teach_in.zone_proposal(), teach_in.selvedge_proposal(proposed)
    _use_zones(state, entry, engine, zones, selvedge)
    state.teach_ins.finish(name)
    state.audit.record(actor, "teach_in.apply", name, value=proposed.value, previous=previous, frames=len(teach_in.scores),
                       zones=zones, selvedge_threshold=selvedge)
    state.thresholds.save_line_scores(name, entry.version, teach_in.scores)  # the slider previews against the line from now on
    return _keep(state, entry, proposed)


@router.delete("/{name}/teach-in", status_code=204)
def cancel_teach_in(name: str, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> None:
    if state.teach_ins.finish(name) is None:
        raise HTTPException(404, f"no teach-in is running for {name}")
    state.audit.record(actor, "teach_in.cancel", name)


@router.get("/{name}/operating-point", response_model=OperatingPointOut)
def get_operating_point(name: str, state: AppState = Depends(get_state)) -> OperatingPointOut:
    """The rules a region must pass to raise an alarm, beyond the threshold: its size in fabric
    millimetres, and the zones' thresholds from a teach-in. 404 while the threshold alone judges."""
    entry = state.registry.entry(name)
    op = entry.engine.operating_point if entry.engine else state.thresholds.stored_operating_point(name, entry.version)
    if op is None:
        raise HTTPException(404, f"{name} judges by its threshold alone: no operating point is set")
    return op


@router.put("/{name}/operating-point", response_model=OperatingPointOut)
def put_operating_point(name: str, body: OperatingPointIn, actor: Actor = Depends(require("admin")),
                        state: AppState = Depends(get_state)) -> OperatingPointOut:
    """Region size rules in fabric millimetres (the camera's mm/px): a region smaller than
    `min_area_mm2`, or shorter than `min_length_mm`, raises no alarm; `selvedge_mm` beside each
    fabric edge the frame shows is not inspected. Zone thresholds taught earlier stay. Kept across restarts for this bundle version."""
    entry, engine = state.registry.engine(name)
    if body.selvedge_mm and not engine.meta.model.get("fabric_edges"):
        raise HTTPException(422, f"{name} does not look for fabric edges (its training images were not line scans, or "
                                 "model.fabric_edges is off): a selvedge band has no edge to lie beside")
    previous = engine.operating_point
    op = (previous or OperatingPoint()).model_copy(update=body.model_dump())
    _use_operating_point(state, entry, engine, op)
    state.audit.record(actor, "operating_point.set", name, **body.model_dump(),
                       previous=previous.model_dump() if previous else None)
    return op


@router.delete("/{name}/operating-point", status_code=204)
def reset_operating_point(name: str, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> None:
    """Back to the threshold alone: no size rules, no zones."""
    entry, engine = state.registry.engine(name)
    previous = engine.operating_point
    _use_operating_point(state, entry, engine, None)
    state.audit.record(actor, "operating_point.reset", name, previous=previous.model_dump() if previous else None)


def _types_out(classifier, skipped: int = 0) -> DefectTypesOut:
    validation = dict(classifier.validation or {})
    validation.pop("predictions", None)
    return DefectTypesOut(types=classifier.counts, unknown_below=classifier.unknown_below, trained_at=classifier.trained_at,
                          from_service=sum(e.source == SOURCE for e in classifier.examples), skipped=skipped,
                          validation=validation or None)


@router.get("/{name}/defect-types", response_model=DefectTypesOut)
def get_defect_types(name: str, state: AppState = Depends(get_state)) -> DefectTypesOut:
    classifier = load_types(state.registry.entry(name).path)
    if classifier is None:
        raise HTTPException(404, f"model {name} has no defect-type classifier: regions are named by the geometry rules "
                                 "(fabricad train-types, or POST this path once operators have labelled types)")
    return _types_out(classifier)


@router.post("/{name}/defect-types", response_model=DefectTypesOut)
async def train_defect_types(name: str, actor: Actor = Depends(require("admin")),
                             state: AppState = Depends(get_state)) -> DefectTypesOut:
    """Refit the model's type classifier with every type label operators gave its defects (kept
    beside the examples it was fitted on before); the engine names regions by it at once."""
    from fabricad.defect_types.fit import refit

    entry = state.registry.entry(name)

    def work():
        examples, skipped = service_examples(state.defects, name)
        classifier, _ = refit(entry.path, examples, {SOURCE})
        state.registry.scan()  # the serving engine takes the new file, as after `fabricad train-types`
        return classifier, skipped

    classifier, skipped = await run_in_threadpool(work)
    state.audit.record(actor, "model.defect_types", name, types=classifier.counts, skipped=skipped)
    return _types_out(classifier, skipped)
