"""Cameras: capture workers, bounded queues, one micro-batching inference loop, fan-out.

    camera thread ──► deque(maxlen) ──┐
    camera thread ──► deque(maxlen) ──┼──► inference loop ──► engine.predict(batch)
                                      │        │
                                      │        ├─► WebSocket subscribers (per-frame results)
                                      │        ├─► latest annotated JPEG (MJPEG viewers)
                                      │        └─► defect log
Under overload a camera's queue drops its oldest frame (a line camera's newest frame is the one
that matters) and counts it. A source that fails is retried with exponential backoff; its state
is visible and it never stops the service.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from fabricad.data.images import IMAGE_EXTENSIONS, read_image
from fabricad.errors import FabricadError, ImageReadError
from fabricad.service.genicam import GenICamSettings, GenICamSource, Grab

log = logging.getLogger(__name__)
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CameraState = Literal["stopped", "starting", "running", "reconnecting", "finished"]


class CameraSpec(BaseModel):
    id: str = Field(pattern=SAFE_ID.pattern)
    source: str = Field(description="rtsp://… or http(s)://… URL, `usb:N`, `gige:NAME` (a GigE Vision / USB3 Vision "
                                    "camera by serial, device id, model or IP address), or `media:NAME` (a video file "
                                    "or an image folder inside the service's media folder, e.g. a simulated camera)")
    genicam: GenICamSettings | None = Field(None, description="gige: sources: region, pixel format, exposure, gain, "
                                                                "trigger, line rate, line-scan assembly")
    model: str | None = Field(None, description="model name; the active model when omitted")
    fps: float = Field(5.0, gt=0, le=120)
    loop: bool = Field(True, description="media sources: start again at the end")
    queue_size: int = Field(4, ge=1, le=64)

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not re.match(r"^(rtsp|rtsps|http|https)://|^usb:\d+$|^media:[A-Za-z0-9][A-Za-z0-9._-]*$"
                        r"|^gige:[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", value):
            raise ValueError("source must be rtsp(s)://…, http(s)://…, usb:N, gige:NAME or media:NAME")
        return value

    @model_validator(mode="after")
    def _genicam_only_for_gige(self) -> CameraSpec:
        if self.genicam is not None and not self.source.startswith("gige:"):
            raise ValueError("genicam settings are for gige: sources")
        return self


def open_source(spec: CameraSpec, media_dir: Path):
    """The source behind a camera spec: a `GenICamSource` for `gige:`, else a `FrameSource`."""
    if spec.source.startswith("gige:"):
        return GenICamSource(spec.id, spec.source.removeprefix("gige:"), spec.genicam or GenICamSettings(), spec.fps)
    return FrameSource(spec, media_dir)


class FrameSource:
    """Frames from OpenCV (URL, USB, video file) or an image folder; `read()` returns RGB or
    None at the end of a finite source; raises ImageReadError when the source fails."""

    def __init__(self, spec: CameraSpec, media_dir: Path):
        self.spec = spec
        self.capture: cv2.VideoCapture | None = None
        self.images: list[Path] = []
        self.index = 0
        if spec.source.startswith("media:"):
            path = (media_dir / spec.source.removeprefix("media:")).resolve()
            if media_dir.resolve() not in path.parents or not path.exists():
                raise FabricadError(f"no media named {spec.source.removeprefix('media:')!r} in the media folder")
            if path.is_dir():
                self.images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
                if not self.images:
                    raise FabricadError(f"media folder {path.name} holds no images")
            else:
                self.capture = self._open(str(path))
        elif spec.source.startswith("usb:"):
            self.capture = self._open(int(spec.source.removeprefix("usb:")))
        else:
            self.capture = self._open(spec.source)

    @staticmethod
    def _open(target) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            raise ImageReadError(f"cannot open camera source {target}")
        return capture

    def read(self) -> np.ndarray | None:
        if self.images:
            if self.index >= len(self.images):
                if not self.spec.loop:
                    return None
                self.index = 0
            path = self.images[self.index]
            self.index += 1
            return read_image(path)
        ok, frame = self.capture.read()
        if not ok:
            if self.spec.source.startswith("media:") and self.spec.loop:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self.capture.read()
            if not ok:
                if self.spec.source.startswith("media:"):
                    return None
                raise ImageReadError(f"camera {self.spec.id} stopped delivering frames")
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    @property
    def is_media(self) -> bool:
        return self.spec.source.startswith("media:")

    def rewind(self) -> None:
        if self.images:
            self.index = 0
        elif self.is_media and self.capture is not None:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()


@dataclass
class Frame:
    camera_id: str
    sequence: int
    image: np.ndarray
    captured_at: float
    odometer_m: float | None = None
    """A line-scan frame's place: metres of fabric since the camera's acquisition started."""
    acquisition: int = 0
    """Counts the source's (re)openings: an odometer starts again at 0 with each."""


@dataclass
class Camera:
    spec: CameraSpec
    state: CameraState = "stopped"
    error: str | None = None
    frames_captured: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    defects: int = 0
    last_result: dict | None = None
    latest_jpeg: bytes | None = None
    jpeg_sequence: int = 0
    queue: deque = field(default_factory=deque)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    subscribers: list = field(default_factory=list)  # (asyncio loop, asyncio.Queue)
    rewind_at: float | None = None
    acquisitions: int = 0
    health: dict = field(default_factory=dict)
    """What the source reports of itself (GenICam: lost frames and lines, acquired fps, temperature)."""

    def status(self) -> dict:
        return {
            **self.spec.model_dump(),
            "state": self.state, "error": self.error, "frames_captured": self.frames_captured,
            "frames_processed": self.frames_processed, "frames_dropped": self.frames_dropped,
            "defects": self.defects, "queue_depth": len(self.queue), "last_result": self.last_result,
            "health": dict(self.health),
        }


class CameraManager:
    """Owns the cameras and the inference loop. `inspect_batch(model, images)` is injected so the
    manager knows nothing of the registry or the defect log beyond that call."""

    def __init__(self, media_dir: Path, run_batch, max_batch: int = 8, backoff_max: float = 10.0, workers: int = 1):
        """`workers` inference loops take batches concurrently: 1 for an in-process model (it uses
        every core already); as many as a remote engine has replicas, so they all stay busy."""
        self.media_dir = Path(media_dir)
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.backoff_max = backoff_max
        self.cameras: dict[str, Camera] = {}
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._results = threading.Lock()  # counters and the latest frame, written by every worker
        self._stopping = threading.Event()
        self._loops = [threading.Thread(target=self._inference_loop, name=f"inference-{i}", daemon=True) for i in range(workers)]
        for loop in self._loops:
            loop.start()

    # --- management ------------------------------------------------------------------------
    def add(self, spec: CameraSpec, start: bool = True) -> Camera:
        with self._lock:
            if spec.id in self.cameras:
                raise FabricadError(f"camera {spec.id!r} exists already")
            camera = Camera(spec, queue=deque(maxlen=spec.queue_size))
            self.cameras[spec.id] = camera
        if start:
            self.start(spec.id)
        return camera

    def get(self, camera_id: str) -> Camera:
        camera = self.cameras.get(camera_id)
        if camera is None:
            raise KeyError(camera_id)
        return camera

    def start(self, camera_id: str) -> Camera:
        camera = self.get(camera_id)
        if camera.thread is not None and camera.thread.is_alive():
            return camera
        camera.stop_event = threading.Event()
        camera.state, camera.error = "starting", None
        camera.thread = threading.Thread(target=self._capture, args=(camera,), name=f"camera-{camera_id}", daemon=True)
        camera.thread.start()
        return camera

    def stop(self, camera_id: str) -> Camera:
        camera = self.get(camera_id)
        camera.stop_event.set()
        if camera.thread is not None:
            camera.thread.join(timeout=5)
        camera.state = "stopped"
        return camera

    def remove(self, camera_id: str) -> None:
        self.stop(camera_id)
        with self._lock:
            self.cameras.pop(camera_id, None)

    def states(self) -> dict[str, str]:
        """Each camera's state (`running`, `reconnecting`, `stopped`, …), for the line outputs."""
        with self._lock:
            return {camera_id: camera.state for camera_id, camera in self.cameras.items()}

    def shutdown(self) -> None:
        for camera_id in list(self.cameras):
            self.stop(camera_id)
        self._stopping.set()
        with self._work:
            self._work.notify_all()
        for loop in self._loops:
            loop.join(timeout=5)

    # --- capture -----------------------------------------------------------------------------
    def rewind(self, camera_id: str, at: float) -> None:
        """Play a media source from its first frame, the first one stamped at `at` (time.time()).
        A simulated camera thus starts with the roll; live sources ignore it."""
        self.get(camera_id).rewind_at = at

    def _capture(self, camera: Camera) -> None:
        """Frames on a fixed schedule (`fps`), so that time maps to roll position without drift.
        A media frame is stamped with its scheduled time, as a triggered camera stamps exposure."""
        delay = 0.5
        source = None
        sequence = camera.frames_captured  # continues across restarts: "newest frame" stays well defined
        due = time.time()
        while not camera.stop_event.is_set():
            try:
                if source is None:
                    source = open_source(camera.spec, self.media_dir)
                    camera.health = getattr(source, "health", {})
                    camera.acquisitions += 1
                    camera.state, camera.error, delay = "running", None, 0.5
                    due = time.time()
                if camera.rewind_at is not None:
                    source.rewind()
                    due, camera.rewind_at = camera.rewind_at, None
                    camera.stop_event.wait(max(0.0, due - time.time()))
                image = source.read()
                if image is None:
                    camera.state = "finished"
                    break
                now = time.time()
                stamp = due if source.is_media else now
                odometer = None
                if isinstance(image, Grab):  # a camera that stamps its own frames (GenICam)
                    image, stamp, odometer = image.image, image.captured_at, image.odometer_m
                sequence += 1
                camera.frames_captured += 1
                with self._work:
                    if len(camera.queue) == camera.queue.maxlen:
                        camera.frames_dropped += 1  # deque drops the oldest on append
                    camera.queue.append(Frame(camera.spec.id, sequence, image, stamp, odometer, camera.acquisitions))
                    self._work.notify()
                if isinstance(source, GenICamSource):
                    continue  # the camera's own trigger or frame rate paces it
                due += 1.0 / camera.spec.fps
                if due < now - 1.0:  # far behind (a stalled source): resynchronise rather than burst
                    due = now
                camera.stop_event.wait(max(0.0, due - time.time()))
            except (ImageReadError, FabricadError, cv2.error) as exc:
                if source is not None:
                    source.close()
                    source = None
                camera.state, camera.error = "reconnecting", str(exc)
                log.warning("camera %s: %s; retrying in %.1f s", camera.spec.id, exc, delay)
                camera.stop_event.wait(delay)
                delay = min(delay * 2, self.backoff_max)
        if source is not None:
            source.close()
        if camera.state != "finished":
            camera.state = "stopped"

    # --- inference and fan-out ----------------------------------------------------------------
    def _take_batch(self) -> list[Frame]:
        with self._work:
            while not self._stopping.is_set() and not any(c.queue for c in self.cameras.values()):
                self._work.wait(timeout=0.5)
            batch: list[Frame] = []
            # Round-robin across cameras so a fast camera cannot starve the others.
            while len(batch) < self.max_batch and any(c.queue for c in self.cameras.values()):
                for camera in self.cameras.values():
                    if camera.queue and len(batch) < self.max_batch:
                        batch.append(camera.queue.popleft())
            return batch

    def _inference_loop(self) -> None:
        while not self._stopping.is_set():
            batch = self._take_batch()
            if not batch:
                continue
            groups: dict[str | None, list[Frame]] = {}
            for frame in batch:
                camera = self.cameras.get(frame.camera_id)
                if camera is not None:
                    groups.setdefault(camera.spec.model, []).append(frame)
            for model, frames in groups.items():
                try:
                    outputs = self.run_batch(model, frames)
                except Exception as exc:  # a failing model must not kill the loop; say why per camera
                    log.exception("inference failed for model %s", model)
                    for frame in frames:
                        camera = self.cameras.get(frame.camera_id)
                        if camera is not None:
                            camera.error = f"inference failed: {exc}"
                    continue
                for frame, (event, done) in zip(frames, outputs):
                    try:
                        self._fan_out(frame, event, done.overlay)
                    except Exception:  # one bad frame must not end the loop for every camera
                        log.exception("fan-out failed for camera %s", frame.camera_id)

    def _fan_out(self, frame: Frame, event: dict, annotated: np.ndarray) -> None:
        """`annotated`: the frame's overlay, drawn once by the inspection pipeline (the defect log
        stored it before this); the live view adds the verdict on top."""
        camera = self.cameras.get(frame.camera_id)
        if camera is None:
            return
        event["latency_end_to_end_ms"] = (time.time() - frame.captured_at) * 1000
        with self._results:
            camera.frames_processed += 1
            camera.defects += int(event["is_defect"])
            newest = frame.sequence > (camera.last_result or {}).get("sequence", 0)
            if newest:  # with several workers a frame can finish after a newer one
                camera.last_result = event
        colour = (255, 40, 40) if event["is_defect"] else (40, 200, 40)
        cv2.putText(annotated, f"{event['verdict']} {event['normalized_score']:.2f}", (8, 24),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, 2)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            with self._results:
                if frame.sequence > camera.jpeg_sequence:
                    camera.latest_jpeg, camera.jpeg_sequence = jpeg.tobytes(), frame.sequence
        for loop, queue in list(camera.subscribers):
            loop.call_soon_threadsafe(_offer, queue, event)


def _offer(queue: asyncio.Queue, event: dict) -> None:
    """Give a slow WebSocket client the newest events: drop its oldest when full."""
    if queue.full():
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
    queue.put_nowait(event)
