"""GigE Vision / USB3 Vision cameras through GenICam, with Aravis (`source: gige:NAME`).

NAME is the camera's serial number, its Aravis device id (`Vendor-Model-Serial` or, for the
fake camera, `Aravis-Fake-SERIAL`), its model name, or its IP address. `genicam` in the camera's
spec sets what an integrator sets in the camera's tool: region, pixel format, exposure, gain,
trigger and line rate; `genicam.line_scan` turns the buffers into frames of a set number of lines,
each stamped with its place on the roll from the camera's own buffer count (`linescan.py`).

Aravis is not on PyPI: it comes with the operating system (Debian: `apt-get install
gir1.2-aravis-0.8 python3-gi`, and a virtual environment made with `--system-site-packages`, or
PyGObject installed into it). Without it, opening such a camera says what to install.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, Field

from fabricad.errors import FabricadError, ImageReadError
from fabricad.service.linescan import LineAssembler, LineScanSettings

INSTALL = ("GenICam cameras need Aravis and PyGObject: apt-get install gir1.2-aravis-0.8 python3-gi, and a "
           "virtual environment made with --system-site-packages (or pip install 'PyGObject<3.51')")
BUFFERS = 16  # buffers queued on the stream: a second of a 16 fps camera, enough to ride out a GC pause


class GenICamSettings(BaseModel):
    width: int | None = Field(None, ge=1, le=65536, description="region of interest; the sensor's when omitted")
    height: int | None = Field(None, ge=1, le=65536, description="area: frame height; line-scan: lines per buffer")
    offset_x: int = Field(0, ge=0)
    offset_y: int = Field(0, ge=0)
    pixel_format: str | None = Field(None, pattern=r"^[A-Za-z0-9]{2,32}$", description="e.g. Mono8, RGB8, BayerRG8")
    exposure_us: float | None = Field(None, gt=0, le=10_000_000)
    gain: float | None = Field(None, ge=0, description="in the camera's own units (dB or raw)")
    trigger: Literal["free", "software", "line0", "line1", "line2"] = Field(
        "free", description="free-running at the spec's fps, or triggered (an encoder on a Line input)")
    line_rate_hz: float | None = Field(None, gt=0, le=1_000_000, description="line-scan: AcquisitionLineRate where free-running")
    packet_size: int | None = Field(None, ge=576, le=16384, description="GigE packet size (9000 with jumbo frames)")
    frame_timeout_s: float = Field(2.0, gt=0, le=600, description="no buffer for this long: the camera is reconnected")
    line_scan: LineScanSettings | None = None


@dataclass
class Grab:
    """A frame a source knows more about than its pixels."""

    image: np.ndarray
    captured_at: float
    odometer_m: float | None = None
    """How far the fabric had moved under the camera since acquisition started (line-scan)."""


def _aravis():
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as exc:
        raise FabricadError(f"{INSTALL} ({exc})") from None
    return Aravis


def _to_rgb(buffer, data: bytes, pixel_format: str) -> np.ndarray:
    width, height = buffer.get_image_width(), buffer.get_image_height()
    if pixel_format in ("Mono16", "Mono12", "Mono10"):
        gray = np.frombuffer(data, np.uint16, width * height).reshape(height, width)
        shift = {"Mono16": 8, "Mono12": 4, "Mono10": 2}[pixel_format]
        return cv2.cvtColor((gray >> shift).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    if pixel_format == "RGB8":
        return np.frombuffer(data, np.uint8, width * height * 3).reshape(height, width, 3).copy()
    if pixel_format == "BGR8":
        return cv2.cvtColor(np.frombuffer(data, np.uint8, width * height * 3).reshape(height, width, 3), cv2.COLOR_BGR2RGB)
    raw = np.frombuffer(data, np.uint8, width * height).reshape(height, width)
    bayer = {"BayerRG8": cv2.COLOR_BayerRG2RGB, "BayerBG8": cv2.COLOR_BayerBG2RGB, "BayerGR8": cv2.COLOR_BayerGR2RGB,
             "BayerGB8": cv2.COLOR_BayerGB2RGB}.get(pixel_format)
    if bayer is not None:
        return cv2.cvtColor(raw, bayer)
    if pixel_format != "Mono8":
        raise ImageReadError(f"pixel format {pixel_format} is not supported; use Mono8/10/12/16, RGB8, BGR8 or Bayer*8")
    return cv2.cvtColor(raw, cv2.COLOR_GRAY2RGB)


def discover() -> list[dict]:
    """The GenICam cameras Aravis finds (GigE Vision broadcast, USB3 Vision)."""
    aravis = _aravis()
    aravis.update_device_list()
    return [{"id": aravis.get_device_id(i), "serial": aravis.get_device_serial_nbr(i), "model": aravis.get_device_model(i),
             "vendor": aravis.get_device_vendor(i), "address": aravis.get_device_address(i),
             "protocol": aravis.get_device_protocol(i)} for i in range(aravis.get_n_devices())]


def _device_id(name: str) -> str:
    try:
        ipaddress.ip_address(name)
        return name  # Aravis opens an address directly, without discovery
    except ValueError:
        pass
    found = discover()
    for camera in found:
        if name in (camera["id"], camera["serial"], camera["model"], f"{camera['vendor']}-{camera['serial']}"):
            return camera["id"]
    seen = ", ".join(f"{c['id']} ({c['address']})" for c in found) or "none"
    raise ImageReadError(f"no GenICam camera named {name!r}; found: {seen}")


class GenICamSource:
    """`read()` → a `Grab` (or raises ImageReadError: the camera manager then reconnects with
    backoff). `health`: the counters the camera status and /metrics show."""

    is_media = False

    def __init__(self, camera_id: str, name: str, settings: GenICamSettings, fps: float):
        aravis = self.aravis = _aravis()
        self.settings, self.camera_id = settings, camera_id
        try:
            self.camera = aravis.Camera.new(_device_id(name))
            self._configure(fps)
            self.pixel_format = self.camera.get_pixel_format_as_string()
            self.stream = self.camera.create_stream(None, None)
            payload = self.camera.get_payload()
            for _ in range(BUFFERS):
                self.stream.push_buffer(aravis.Buffer.new_allocate(payload))
            self.camera.start_acquisition()
        except Exception as exc:  # GLib.Error: not there, refused, busy with another controller
            raise ImageReadError(f"GenICam camera {name}: {getattr(exc, 'message', exc)}") from None
        self.assembler = LineAssembler(settings.line_scan) if settings.line_scan else None
        self.pending: list[Grab] = []
        self.health: dict = {"frames_lost": 0, "buffers_incomplete": 0, "lines_lost": 0, "acquired_fps": 0.0,
                             "trigger": settings.trigger, "temperature_c": None,
                             "device": f"{self.camera.get_vendor_name()} {self.camera.get_model_name()} "
                                       f"{self.camera.get_device_serial_number()}"}
        self._last_block: int | None = None
        self._arrivals: list[float] = []
        self._next_temperature = 0.0

    def _configure(self, fps: float) -> None:
        s, camera, device = self.settings, self.camera, self.camera.get_device()
        if s.pixel_format:
            camera.set_pixel_format_from_string(s.pixel_format)
        if s.width or s.height or s.offset_x or s.offset_y:
            _, _, full_w, full_h = camera.get_region()
            camera.set_region(s.offset_x, s.offset_y, s.width or full_w, s.height or full_h)
        if s.exposure_us is not None:
            camera.set_exposure_time(s.exposure_us)
        if s.gain is not None:
            camera.set_gain(s.gain)
        if s.packet_size is not None and camera.is_gv_device():
            camera.gv_set_packet_size(s.packet_size)
        if s.trigger == "free":
            if device.is_feature_available("TriggerMode"):
                camera.clear_triggers()
            if s.line_scan and s.line_rate_hz and device.is_feature_available("AcquisitionLineRate"):
                device.set_float_feature_value("AcquisitionLineRate", s.line_rate_hz)
            else:
                camera.set_frame_rate(fps)
        else:
            camera.set_trigger("Software" if s.trigger == "software" else s.trigger.capitalize())

    # --- frames --------------------------------------------------------------------------------
    def read(self) -> Grab:
        while not self.pending:
            buffer = self.stream.timeout_pop_buffer(int(self.settings.frame_timeout_s * 1e6))
            if buffer is None:
                raise ImageReadError(f"camera {self.camera_id}: no frame within {self.settings.frame_timeout_s:g} s")
            try:
                self._take(buffer)
            finally:
                self.stream.push_buffer(buffer)
        return self.pending.pop(0)

    def _take(self, buffer) -> None:
        now = time.time()
        block = buffer.get_frame_id()
        if buffer.get_status() != self.aravis.BufferStatus.SUCCESS:
            self.health["buffers_incomplete"] += 1  # missing packets the resends did not bring; the
            return  # block counter then shows it lost, so frames_lost includes it
        if self._last_block is not None and self.assembler is None:
            step = block - self._last_block
            if step < -32767:
                step += 65535
            self.health["frames_lost"] += max(step - 1, 0)
        self._last_block = block
        self._arrivals = [t for t in self._arrivals if t > now - 2.0] + [now]
        if len(self._arrivals) > 1:
            self.health["acquired_fps"] = round((len(self._arrivals) - 1) / (self._arrivals[-1] - self._arrivals[0]), 2)
        self._read_temperature(now)
        image = _to_rgb(buffer, buffer.get_data(), self.pixel_format)
        at = buffer.get_system_timestamp() / 1e9 or now
        if self.assembler is None:
            self.pending.append(Grab(image, at))
            return
        for frame in self.assembler.push(block, image, at):
            self.pending.append(Grab(frame.image, frame.captured_at, frame.first_line * self.settings.line_scan.metres_per_line))
        self.health["lines_lost"] = self.assembler.lines_lost
        self.health["frames_lost"] = self.assembler.buffers_lost

    def _read_temperature(self, now: float) -> None:
        if now < self._next_temperature:
            return
        self._next_temperature = now + 5.0
        device = self.camera.get_device()
        if device.is_feature_available("DeviceTemperature"):
            try:
                self.health["temperature_c"] = round(device.get_float_feature_value("DeviceTemperature"), 1)
            except Exception:  # noqa: BLE001 — a camera that reports none
                self.health["temperature_c"] = None

    def rewind(self) -> None:
        pass

    def close(self) -> None:
        try:
            self.camera.stop_acquisition()
        except Exception:  # noqa: BLE001 — a camera that is gone cannot be stopped
            pass
        self.stream = self.camera = None
