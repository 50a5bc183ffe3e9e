"""Cameras: manage them, watch the annotated stream (MJPEG), receive per-frame events (WebSocket)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, WebSocket
from fastapi.responses import Response, StreamingResponse

from fabricad.errors import FabricadError
from fabricad.service.audit import Actor
from fabricad.service.cameras import Camera, CameraSpec
from fabricad.service.dependencies import AppState, actor_of, get_state, reader, require
from fabricad.service.genicam import discover
from fabricad.service.schemas import (
    CameraModelIn,
    CameraOut,
    ErrorOut,
    GenICamDeviceOut,
)

router = APIRouter(prefix="/v1/cameras", tags=["cameras"])


def _camera(state: AppState, camera_id: str) -> Camera:
    try:
        return state.cameras.get(camera_id)
    except KeyError:
        raise HTTPException(404, f"no camera {camera_id!r}") from None


@router.post("", status_code=201, response_model=CameraOut, responses={409: {"description": "a camera with this id exists"}})
def add_camera(spec: CameraSpec, start: bool = True, actor: Actor = Depends(require("admin")),
               state: AppState = Depends(get_state)) -> dict:
    if spec.model is not None:
        state.registry.entry(spec.model)  # 404 now rather than a failing camera later
    try:
        camera = state.cameras.add(spec, start=start)
    except FabricadError as exc:
        raise HTTPException(409, str(exc)) from None
    state.audit.record(actor, "camera.add", spec.id, source=spec.source, model=spec.model, started=start)
    return camera.status()


@router.get("", response_model=list[CameraOut], dependencies=[Depends(reader)])
def list_cameras(state: AppState = Depends(get_state)) -> list[dict]:
    return [c.status() for c in state.cameras.cameras.values()]


@router.get("/discover", response_model=list[GenICamDeviceOut], dependencies=[Depends(require("admin"))],
            responses={503: {"model": ErrorOut, "description": "Aravis is not installed"}})
def discover_cameras() -> list[dict]:
    """The GigE Vision / USB3 Vision cameras on the service's networks (an integrator's first look)."""
    try:
        return discover()
    except FabricadError as exc:
        raise HTTPException(503, str(exc)) from None


@router.get("/{camera_id}", response_model=CameraOut, dependencies=[Depends(reader)])
def get_camera(camera_id: str, state: AppState = Depends(get_state)) -> dict:
    return _camera(state, camera_id).status()


@router.post("/{camera_id}/start", response_model=CameraOut)
def start_camera(camera_id: str, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> dict:
    _camera(state, camera_id)
    camera = state.cameras.start(camera_id)
    state.audit.record(actor, "camera.start", camera_id)
    return camera.status()


@router.post("/{camera_id}/stop", response_model=CameraOut)
def stop_camera(camera_id: str, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> dict:
    _camera(state, camera_id)
    camera = state.cameras.stop(camera_id)
    state.audit.record(actor, "camera.stop", camera_id)
    return camera.status()


@router.delete("/{camera_id}", status_code=204)
def delete_camera(camera_id: str, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> None:
    _camera(state, camera_id)
    state.cameras.remove(camera_id)
    state.audit.record(actor, "camera.remove", camera_id)


@router.put("/{camera_id}/model", response_model=CameraOut)
def set_camera_model(camera_id: str, body: CameraModelIn, actor: Actor = Depends(require("admin")),
                     state: AppState = Depends(get_state)) -> dict:
    """Switch the model one camera (line) runs; the others keep theirs. Takes effect with the next frame."""
    camera = _camera(state, camera_id)
    if body.model is not None:
        state.registry.engine(body.model)  # 404 for an unknown name; loaded now, not on the next frame
    previous = camera.spec.model
    camera.spec = camera.spec.model_copy(update={"model": body.model})
    state.audit.record(actor, "camera.model", camera_id, model=body.model, previous=previous)
    return camera.status()


@router.get("/{camera_id}/latest.jpg", dependencies=[Depends(reader)], response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no frame yet"}})
def latest_frame(camera_id: str, state: AppState = Depends(get_state)) -> Response:
    """The newest annotated frame (the dashboard fetches it on each event; no long-lived connection)."""
    camera = _camera(state, camera_id)
    if camera.latest_jpeg is None:
        raise HTTPException(404, f"camera {camera_id!r} has no inspected frame yet")
    return Response(camera.latest_jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store",
                                                                          "X-Frame-Sequence": str(camera.jpeg_sequence)})


@router.get("/{camera_id}/stream.mjpeg", dependencies=[Depends(reader)],
            responses={200: {"content": {"multipart/x-mixed-replace; boundary=frame": {}}}})
async def stream(camera_id: str, state: AppState = Depends(get_state)) -> StreamingResponse:
    camera = _camera(state, camera_id)

    async def frames():
        sent = -1
        while camera_id in state.cameras.cameras:
            if camera.latest_jpeg is not None and camera.jpeg_sequence != sent:
                sent = camera.jpeg_sequence
                jpeg = camera.latest_jpeg
                yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n"
            await asyncio.sleep(min(0.05, 1 / camera.spec.fps))

    return StreamingResponse(frames(), media_type="multipart/x-mixed-replace; boundary=frame")


@router.websocket("/{camera_id}/events")
async def events(websocket: WebSocket, camera_id: str) -> None:
    state: AppState = websocket.app.state.fabricad
    secret = websocket.headers.get("x-api-key") or websocket.query_params.get("api_key")
    if state.settings.require_key_for_reads and actor_of(secret, state) is None:
        await websocket.close(code=4401, reason="sign-in or API key required")
        return
    camera = state.cameras.cameras.get(camera_id)
    if camera is None:
        await websocket.close(code=4404, reason=f"no camera {camera_id!r}")
        return
    await websocket.accept()
    queue: asyncio.Queue = asyncio.Queue(maxsize=32)
    subscription = (asyncio.get_running_loop(), queue)
    camera.subscribers.append(subscription)

    async def send_events() -> None:
        while camera_id in state.cameras.cameras:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=1.0)
            except TimeoutError:
                continue  # no frame for a second: look again whether the camera still exists
            await websocket.send_json(event)
        await websocket.close(code=1001, reason=f"camera {camera_id!r} removed")

    async def until_client_leaves() -> None:
        # Without reading, a client that left is noticed only at the next send: on an idle camera
        # never, and the server would wait for that handler forever when it shuts down.
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.create_task(send_events()), asyncio.create_task(until_client_leaves())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if subscription in camera.subscribers:
            camera.subscribers.remove(subscription)
