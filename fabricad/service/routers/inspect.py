"""POST /v1/inspect and /v1/inspect/batch."""

from __future__ import annotations

import base64

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
from fabricad.service.dependencies import AppState, get_state, reader
from fabricad.service.schemas import BatchOut, ErrorItem, InspectionOut
from fabricad.service.uploads import decode_upload, read_limited

router = APIRouter(prefix="/v1", tags=["inspection"], dependencies=[Depends(reader)])
UPLOAD_BODY = {
    "required": True,
    "description": "the image (PNG, JPEG, TIFF, BMP; 8 or 16 bit; gray, RGB or RGBA)",
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}
"""`POST /v1/inspect` reads its body itself (a raw image or a multipart upload, without the copy
FastAPI's form parsing would make), so its request body is declared here for the OpenAPI
schema: Swagger UI then offers a file picker."""


def _png_b64(rgb: np.ndarray) -> str:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return base64.b64encode(buffer.tobytes()).decode()


def inspect_image(state: AppState, image: np.ndarray, *, model: str | None, want_overlay: bool, want_heatmap: bool,
                  camera_id: str | None = None, along_m: float | None = None) -> InspectionOut:
    """The answer to one upload. Blocking: call from a worker thread."""
    done = state.pipeline.inspect(image, model=model, camera_id=camera_id, along_m=along_m, want_overlay=want_overlay)
    data, result = done.data, done.result
    return InspectionOut(
        **{k: data[k] for k in ("verdict", "is_defect", "score", "normalized_score", "threshold", "regions", "latency_ms",
                                "alignment", "fabric_in_view", "selvedge_score")},
        model=done.entry.name, model_version=done.entry.version, width=image.shape[1], height=image.shape[0],
        defect_id=done.defect_id, roll_id=data.get("roll_id"), along_m=data.get("along_m"),
        roll_defect_ids=data.get("roll_defect_ids"),
        overlay_png_base64=_png_b64(done.overlay) if want_overlay and done.overlay is not None else None,
        heatmap_png_base64=_png_b64(visualize.heatmap(result.anomaly_map, result.threshold)) if want_heatmap else None,
    )


@router.post(
    "/inspect",
    response_model=InspectionOut,
    summary="Inspect one image",
    description="Send the image as multipart field `file`, or as the raw request body (Content-Type image/*).",
    responses={400: {"description": "unreadable image"}, 413: {"description": "too large"}, 415: {"description": "not an image"}},
    openapi_extra={"requestBody": UPLOAD_BODY},
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
