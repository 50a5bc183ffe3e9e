"""The defect log: list, detail, image and overlay, operator acknowledgement."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import FileResponse, Response

from fabricad.service.audit import Actor
from fabricad.service.dependencies import AppState, get_state, reader, require
from fabricad.service.records import RECORD_ID_MAX, DefectRecord
from fabricad.service.schemas import AckIn, DefectOut, DefectPage

router = APIRouter(prefix="/v1/defects", tags=["defects"], dependencies=[Depends(reader)])
DefectId = Annotated[int, Path(ge=1, le=RECORD_ID_MAX, description="defect-log record id")]


def _out(row: DefectRecord) -> DefectOut:
    return DefectOut(
        id=row.id, created_at=row.created_at, camera_id=row.camera_id, model=row.model, model_version=row.model_version,
        score=row.score, normalized_score=row.normalized_score, threshold=row.threshold,
        regions=json.loads(row.regions_json), width=row.width, height=row.height, has_image=row.image_file is not None,
        acknowledged=row.acknowledged, label=row.label, acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at, roll_id=row.roll_id,
        across_mm=row.across_mm, along_m=row.along_m,
        alignment=json.loads(row.alignment_json) if row.alignment_json else None,
    )


@router.get("", response_model=DefectPage)
def list_defects(
    camera_id: str | None = Query(None, max_length=64),
    model: str | None = Query(None, max_length=128),
    acknowledged: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = Query(0, ge=0, le=2**63 - 1),
    limit: int = Query(50, ge=1, le=500),
    state: AppState = Depends(get_state),
) -> DefectPage:
    rows, total = state.defects.list(camera_id=camera_id, model=model, acknowledged=acknowledged, since=since,
                                     until=until, offset=offset, limit=limit)
    return DefectPage(items=[_out(r) for r in rows], total=total, offset=offset, limit=limit)


def _row(state: AppState, defect_id: int) -> DefectRecord:
    row = state.defects.get(defect_id)
    if row is None:
        raise HTTPException(404, f"no defect {defect_id}")
    return row


@router.get("/export.zip", response_class=Response, dependencies=[Depends(require("operator"))],
            responses={200: {"content": {"application/zip": {}}}})
def export_images(label: str = Query("false_alarm", max_length=64, pattern=r"^[A-Za-z0-9 _.\-]+$"),
                  model: str | None = Query(None, max_length=128), limit: int = Query(5000, ge=1, le=50_000),
                  state: AppState = Depends(get_state)) -> Response:
    """Frames operators labelled `label` (by default false alarms) as a zip: unzip into the next
    training run's `train/good` so the model learns they are normal."""
    rows = state.defects.with_label(label, model, limit)
    buffer = io.BytesIO()
    written = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        lines = ["file,defect_id,model,model_version,camera_id,score,created_at"]
        for row in rows:
            path = state.defects.file_path(row.image_file)
            if path is None:
                continue
            name = f"{row.model}-{row.id:08d}.png"
            archive.write(path, name)
            lines.append(f"{name},{row.id},{row.model},{row.model_version},{row.camera_id or ''},{row.score},{row.created_at.isoformat()}")
            written += 1
        archive.writestr("manifest.csv", "\n".join(lines) + "\n")
    filename = f"{label.replace(' ', '_')}-images.zip"
    return Response(buffer.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "X-Image-Count": str(written)})


@router.get("/{defect_id}", response_model=DefectOut)
def get_defect(defect_id: DefectId, state: AppState = Depends(get_state)) -> DefectOut:
    return _out(_row(state, defect_id))


def _picture(state: AppState, name: str | None, what: str) -> FileResponse:
    path = state.defects.file_path(name)
    if path is None:
        raise HTTPException(404, f"{what} no longer kept (retention limit)")
    return FileResponse(path, media_type="image/png")


@router.get("/{defect_id}/image", response_class=FileResponse, responses={200: {"content": {"image/png": {}}}})
def defect_image(defect_id: DefectId, state: AppState = Depends(get_state)):
    return _picture(state, _row(state, defect_id).image_file, "image")


@router.get("/{defect_id}/overlay", response_class=FileResponse, responses={200: {"content": {"image/png": {}}}})
def defect_overlay(defect_id: DefectId, state: AppState = Depends(get_state)):
    return _picture(state, _row(state, defect_id).overlay_file, "overlay")


@router.post("/{defect_id}/ack", response_model=DefectOut)
def acknowledge(defect_id: DefectId, body: AckIn, actor: Actor = Depends(require("operator")),
                state: AppState = Depends(get_state)) -> DefectOut:
    before = state.defects.get(defect_id)
    row = state.defects.acknowledge(defect_id, body.label, body.note, by=actor.name)
    if row is None:
        raise HTTPException(404, f"no defect {defect_id}")
    state.audit.record(actor, "defect.acknowledge", defect_id, label=body.label, note=body.note,
                       previous=before.label if before is not None else None)
    state.rolls.label_sighting(defect_id, body.label)  # the roll's grade follows the operator
    return _out(row)
