"""Rolls: start and end, the encoder feed, roll defects with points, grade, roll map and reports."""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal

import cv2
import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fabricad.errors import FabricadError
from fabricad.rolls import report
from fabricad.service.audit import Actor
from fabricad.service.dependencies import AppState, get_state, reader, require
from fabricad.service.records import RECORD_ID_MAX, RollRecord
from fabricad.service.schemas import (
    AckIn,
    EndIn,
    PositionIn,
    PositionOut,
    RollDefectOut,
    RollDetailOut,
    RollOut,
    RollSpec,
)

router = APIRouter(prefix="/v1/rolls", tags=["rolls"], dependencies=[Depends(reader)])
RollId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="roll number")]
START_DELAY_S = 0.3
"""Simulated (media) cameras restart their file this long after the roll starts, all at once."""


def _row(state: AppState, roll_id: str) -> RollRecord:
    try:
        return state.rolls.get(roll_id)
    except KeyError:
        raise HTTPException(404, f"no roll {roll_id!r}") from None


def roll_document(state: AppState, roll_id: str) -> tuple[dict, list[dict]]:
    """The roll's summary with its grade, and its defects with points: what every format shows."""
    try:
        row, defects, grade, unseen = state.rolls.grade(roll_id)
    except KeyError:
        raise HTTPException(404, f"no roll {roll_id!r}") from None
    items = [d.as_dict(grade.defect_points.get(d.id)) for d in defects]
    return state.rolls.summary(row, grade, len(items), unseen), items


def _thumbnails(state: AppState, defects: list[dict], size: int = 160, pad: int = 32) -> dict[int, np.ndarray]:
    """For each roll defect: its first sighting's overlay, cropped around the defect's region."""
    pictures = {}
    for d in defects:
        for sighting in d["sightings"][:1]:
            record = state.defects.get(sighting)
            path = state.defects.file_path(record.overlay_file if record else None)
            image = cv2.imread(str(path)) if path else None
            if image is None:
                continue
            regions = json.loads(record.regions_json)
            if regions:
                r = regions[0]
                y0, x0 = max(r["y"] - pad, 0), max(r["x"] - pad, 0)
                image = image[y0:r["y"] + r["height"] + pad, x0:r["x"] + r["width"] + pad]
            scale = size / max(image.shape[:2])
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            pictures[d["id"]] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return pictures


@router.post("", status_code=201, response_model=RollOut,
             responses={409: {"description": "the roll exists, or a camera inspects another roll"}})
def start_roll(spec: RollSpec, actor: Actor = Depends(require("operator")), state: AppState = Depends(get_state)) -> dict:
    if spec.model is not None:
        state.registry.entry(spec.model)  # 404 for an unknown model, before anything starts
    start_at = time.time() + START_DELAY_S
    try:
        row = state.rolls.start(spec, at=start_at)
    except FabricadError as exc:
        raise HTTPException(409, str(exc)) from None
    state.audit.record(actor, "roll.start", spec.id, article=spec.article, model=spec.model,
                       cameras=[p.camera_id for p in spec.cameras])
    for placement in spec.cameras:  # cameras this service drives follow the roll's model and start with it
        camera = state.cameras.cameras.get(placement.camera_id)
        if camera is None:
            continue
        if spec.model is not None:
            camera.spec = camera.spec.model_copy(update={"model": spec.model})
        state.cameras.rewind(placement.camera_id, start_at)
        state.cameras.start(placement.camera_id)
    return state.rolls.summary(row)


@router.get("", response_model=list[RollOut])
def list_rolls(status: Literal["running", "ended"] | None = None, limit: int = Query(100, ge=1, le=1000),
               state: AppState = Depends(get_state)) -> list[dict]:
    return [roll_document(state, row.id)[0] for row in state.rolls.list(status, limit)]


@router.get("/{roll_id}", response_model=RollDetailOut)
def get_roll(roll_id: RollId, state: AppState = Depends(get_state)) -> dict:
    summary, defects = roll_document(state, roll_id)
    return {**summary, "defect_list": defects}


@router.post("/{roll_id}/position", response_model=PositionOut, dependencies=[Depends(require("operator"))],
             responses={409: {"description": "the roll has ended"}})
def encoder_position(roll_id: RollId, body: PositionIn, state: AppState = Depends(get_state)) -> dict:
    _row(state, roll_id)
    try:
        row = state.rolls.record_position(roll_id, body.along_m)
    except FabricadError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"roll_id": row.id, "along_m": body.along_m}


@router.post("/{roll_id}/end", response_model=RollDetailOut, responses={409: {"description": "the roll has ended already"}})
async def end_roll(roll_id: RollId, body: EndIn | None = None, actor: Actor = Depends(require("operator")),
                   state: AppState = Depends(get_state)) -> dict:
    _row(state, roll_id)
    try:
        state.rolls.end(roll_id, body.length_m if body else None)
    except FabricadError as exc:
        raise HTTPException(409, str(exc)) from None
    summary, defects = roll_document(state, roll_id)
    state.audit.record(actor, "roll.end", roll_id, length_m=summary.get("length_m"),
                       points=(summary.get("grade") or {}).get("points"))
    folder = state.settings.report_dir / roll_id
    await run_in_threadpool(report.write_report, folder, summary, defects, _thumbnails(state, defects))
    return {**summary, "defect_list": defects}


@router.post("/{roll_id}/defects/{roll_defect_id}/label", response_model=RollDefectOut)
def label_roll_defect(roll_id: RollId, roll_defect_id: Annotated[int, Path(ge=1, le=RECORD_ID_MAX)], body: AckIn,
                      actor: Actor = Depends(require("operator")), state: AppState = Depends(get_state)) -> dict:
    _row(state, roll_id)
    try:
        record = state.rolls.label(roll_defect_id, body.label)
    except KeyError:
        record = None
    if record is None or record.roll_id != roll_id:
        raise HTTPException(404, f"roll {roll_id!r} has no defect {roll_defect_id}")
    state.audit.record(actor, "roll_defect.label", f"{roll_id}/{roll_defect_id}", label=body.label)
    return record.as_dict()


@router.get("/{roll_id}/map.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def roll_map(roll_id: RollId, state: AppState = Depends(get_state)) -> Response:
    summary, defects = roll_document(state, roll_id)
    return Response(report.png_bytes(report.roll_map(summary, defects)), media_type="image/png")


@router.get("/{roll_id}/report.{fmt}", response_class=Response,
            responses={200: {"content": {"application/pdf": {}, "text/csv": {}, "application/json": {}}}})
async def roll_report(roll_id: RollId, fmt: Literal["pdf", "csv", "json"], state: AppState = Depends(get_state)) -> Response:
    summary, defects = roll_document(state, roll_id)
    headers = {"Content-Disposition": f'attachment; filename="roll-{roll_id}.{fmt}"'}
    if fmt == "csv":
        return Response(report.defects_csv(defects), media_type="text/csv", headers=headers)
    if fmt == "json":
        return Response(json.dumps({"roll": summary, "defects": defects}, indent=2), media_type="application/json", headers=headers)
    pdf = await run_in_threadpool(report.roll_pdf, summary, defects, _thumbnails(state, defects))
    return Response(pdf, media_type="application/pdf", headers=headers)
