"""POST /v1/inspect and /v1/inspect/batch."""

from __future__ import annotations

import base64
import time

import cv2
import numpy as np
from fastapi import (
    APIRouter,
    Depends,
    File,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
)

from fabricad.inference import visualize
from fabricad.rolls.geometry import region_on_roll
from fabricad.service.dependencies import AppState, get_state, reader
from fabricad.service.schemas import BatchOut, ErrorItem, InspectionOut
from fabricad.service.uploads import decode_upload, read_limited

router = APIRouter(prefix="/v1", tags=["inspection"], dependencies=[Depends(reader)])


def _png_b64(rgb: np.ndarray) -> str:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return base64.b64encode(buffer.tobytes()).decode()


def record_result(state: AppState, entry, image: np.ndarray, result, camera_id: str | None,
                  want_overlay: bool = False, captured_at: float | None = None,
                  along_m: float | None = None) -> tuple[dict, int | None, np.ndarray | None]:
    """Metrics, the roll position and, for a defect, the log entry: shared by uploads and cameras.
    `along_m` is the frame's own roll position when its source knows it (an encoder-stamped frame)."""
    data = result.as_dict()
    state.metrics.latency.labels(entry.name).observe(result.latency_ms / 1000)
    state.metrics.inspections.labels(entry.name, data["verdict"]).inc()
    if not result.fabric_in_view:
        state.metrics.no_fabric.labels(entry.name).inc()
    else:
        state.teach_ins.offer(entry.name, camera_id, result.score)
    placed = state.rolls.roll_for_camera(camera_id)
    if placed is not None:
        roll, placement = placed
        if along_m is None:
            along_m = state.rolls.frame_position(roll, time.time() if captured_at is None else captured_at)
        if result.fabric_in_view:  # a frame of the bare table inspects nothing: the roll's coverage shows it
            state.rolls.frame_seen(roll, placement.camera_id, (along_m, along_m + image.shape[0] * placement.mm_per_px / 1000),
                                   (placement.offset_mm, placement.offset_mm + image.shape[1] * placement.mm_per_px))
        data.update(roll_id=roll.id, along_m=along_m)
    picture = visualize.overlay(image, result.anomaly_map, result.threshold) if (want_overlay or result.is_defect) else None
    defect_id = None
    if result.is_defect:
        where = {}
        if placed is not None:
            top = region_on_roll(data["regions"][0], along_m, placement)
            where = {"roll_id": roll.id, "across_mm": top.centre[0], "along_m": top.centre[1]}
        defect_id = state.defects.record(model=entry.name, model_version=entry.version, result=data, image=image,
                                         overlay=picture, camera_id=camera_id, **where)
        state.metrics.defects.labels(entry.name).inc()
        if placed is not None:
            data["roll_defect_ids"] = state.rolls.observe(roll, placement, along_m, image.shape[0], data["regions"], defect_id)
    return data, defect_id, picture


def run_camera_batch(state: AppState, model: str | None, frames: list) -> list[tuple[dict, object]]:
    """The camera manager's inference call: one engine call for a micro-batch of frames."""
    entry, engine = state.registry.engine(model)
    results = engine.predict([f.image for f in frames])
    events = []
    for frame, result in zip(frames, results):
        data, defect_id, _ = record_result(state, entry, frame.image, result, frame.camera_id,
                                           captured_at=frame.captured_at)
        events.append(({**data, "camera_id": frame.camera_id, "sequence": frame.sequence, "model": entry.name,
                        "model_version": entry.version, "defect_id": defect_id, "captured_at": frame.captured_at}, result))
    return events


def inspect_image(state: AppState, image: np.ndarray, *, model: str | None, want_overlay: bool, want_heatmap: bool,
                  camera_id: str | None = None, along_m: float | None = None) -> InspectionOut:
    """Run one image through the (active or named) model and log it if defective. Blocking:
    call from a worker thread."""
    entry, engine = state.registry.engine(model)
    result = engine.inspect(image)
    data, defect_id, picture = record_result(state, entry, image, result, camera_id, want_overlay, along_m=along_m)
    return InspectionOut(
        **{k: data[k] for k in ("verdict", "is_defect", "score", "normalized_score", "threshold", "regions", "latency_ms",
                                "alignment", "fabric_in_view")},
        model=entry.name, model_version=entry.version, width=image.shape[1], height=image.shape[0], defect_id=defect_id,
        roll_id=data.get("roll_id"), along_m=data.get("along_m"), roll_defect_ids=data.get("roll_defect_ids"),
        overlay_png_base64=_png_b64(picture) if want_overlay and picture is not None else None,
        heatmap_png_base64=_png_b64(visualize.heatmap(result.anomaly_map, result.threshold)) if want_heatmap else None,
    )


@router.post(
    "/inspect",
    response_model=InspectionOut,
    summary="Inspect one image",
    description="Send the image as multipart field `file`, or as the raw request body (Content-Type image/*).",
    responses={400: {"description": "unreadable image"}, 413: {"description": "too large"}, 415: {"description": "not an image"}},
)
async def inspect(
    request: Request,
    model: str | None = Query(None, description="model name; the active model when omitted"),
    overlay: bool = Query(False, description="include an overlay PNG (base64)"),
    heatmap: bool = Query(False, description="include a heatmap PNG (base64)"),
    camera_id: str | None = Query(None, max_length=64, pattern=r"^[A-Za-z0-9._-]+$"),
    along_m: float | None = Query(None, ge=0, le=1e6, description="the frame's position along the running roll of "
                                  "`camera_id` (its top row, metres), when the sender knows it; otherwise "
                                  "the encoder feed or line speed places it"),
    state: AppState = Depends(get_state),
) -> Response:
    limit = state.settings.max_upload_bytes
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "multipart body needs a file field named 'file'")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"upload exceeds the limit of {limit} bytes")
        name = upload.filename or "upload"
    else:
        data = await read_limited(request, limit)
        name = "body"

    def decode_and_inspect() -> Response:
        # Decoding (milliseconds for a wide scan) and writing the answer's JSON happen in the
        # worker: the event loop, shared by every client and camera viewer, only moves bytes.
        image = decode_upload(data, state.settings.max_pixels, name)
        answer = inspect_image(state, image, model=model, want_overlay=overlay, want_heatmap=heatmap,
                               camera_id=camera_id, along_m=along_m)
        return Response(answer.model_dump_json(), media_type="application/json")

    return await state.run_inspection(decode_and_inspect)


@router.post("/inspect/batch", response_model=BatchOut, summary="Inspect several images (multipart field `files`)")
async def inspect_batch(
    files: list[UploadFile] = File(..., description="images; a bad one gets an error item, the rest are inspected"),
    model: str | None = Query(None),
    state: AppState = Depends(get_state),
) -> BatchOut:
    limit = state.settings.max_upload_bytes
    if len(files) > 64:
        raise HTTPException(413, "at most 64 images per batch")
    results: list = []
    for upload in files:
        name = upload.filename or "upload"
        data = await upload.read(limit + 1)
        try:
            if len(data) > limit:
                raise HTTPException(413, f"{name}: exceeds the limit of {limit} bytes")
            image = decode_upload(data, state.settings.max_pixels, name)
        except HTTPException as exc:
            state.metrics.rejected.labels("bad_image").inc()
            results.append(ErrorItem(filename=name, error=str(exc.detail)))
            continue
        results.append(await state.run_inspection(inspect_image, state, image, model=model, want_overlay=False, want_heatmap=False))
    return BatchOut(results=results)
