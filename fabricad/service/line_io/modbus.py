"""The Modbus TCP sink: the service as a Modbus client of the PLC, the way a loom's controller
is usually wired to a vision system.

Written to the PLC (device `device_id`), per camera at `address + index × camera_stride`, the
index being the camera's place in `cameras` (all cameras share block 0 when `cameras` is omitted):

    coil     defect_coil      a pulse of `pulse_ms` per defect          (marker, label printer, lamp)
    coil     stop_coil        a pulse of `pulse_ms` per stop by the stop rule         (machine stop)
    holding  verdict_register 0 OK, 1 DEFECT: the last frame's verdict
    holding  score_register   the last frame's score × 1000 (0–65535)
    holding  count_register   defects since the service started (wraps at 65536)
    holding  state_register   1 while the camera runs, 0 when it does not (reconnecting, stopped)
    holding  points_register  the running roll's 4-point total so far
    holding  type_register    the last defect's type as a number (`type_codes`; 0 unknown)

Read from the PLC: `encoder_register` (two holding registers, an unsigned 32-bit count, high word
first) polled every `encoder_poll_ms`; count × `encoder_m_per_count` is how far the running roll
has got, as `POST /v1/rolls/{id}/position` says it.

Modbus is state, so the registers are simply written again after a reconnect; the pulses are
messages and go through the sink's outbox, in order, one coil at a time (a PLC needs a falling
edge between two pulses). A pulse that could not be delivered within `pulse_max_age_s` is dropped
and counted instead: a machine stopped minutes after its defect went by stops for nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from fabricad.defect_types.classifier import UNKNOWN
from fabricad.service.line_io.base import SinkSpecBase
from fabricad.service.line_io.outbox import Outbox

log = logging.getLogger(__name__)

DEFAULT_TYPE_CODES: dict[str, int] = {
    UNKNOWN: 0, "spot": 1, "line_along": 2, "line_across": 3,
    "hole": 10, "stain": 11, "slub": 12, "knot": 13, "fold": 14, "thick_place": 15, "missing_yarn": 16,
    "broken_end": 20, "broken_yarn": 21, "broken_pick": 22, "weft_curling": 23, "fuzzyball": 24, "cut_selvage": 25,
    "crease": 26, "warp_ball": 27, "knots": 28, "contamination": 29, "nep": 30, "weft_crack": 31,
}
"""A PLC reads numbers: the geometry rules' types, common mill names, AITEX's named codes. Written
out, not derived, because a PLC program is written against them and they must never move; a
mill's own names go in `type_codes`; the table is printed in docs/line.md."""
OTHER_TYPE_CODE = 999
"""A type the table does not list (a classifier trained on a mill's own labels): one code, and a
warning once per name, so the PLC never mistakes it for a listed type."""


class ModbusSinkSpec(SinkSpecBase):
    kind: Literal["modbus"] = "modbus"
    host: str = Field("127.0.0.1", max_length=253, description="the PLC")
    port: int = Field(502, ge=1, le=65535)
    device_id: int = Field(1, ge=0, le=255, description="the Modbus unit / slave id")
    timeout_s: float = Field(1.0, gt=0, le=60)
    defect_coil: int | None = Field(0, ge=0, le=65535)
    stop_coil: int | None = Field(1, ge=0, le=65535)
    pulse_ms: int = Field(500, ge=20, le=60_000, description="how long a coil stays on per pulse")
    pulse_max_age_s: float = Field(10.0, gt=0, le=3600, description="a pulse not delivered by then is dropped and counted")
    verdict_register: int | None = Field(0, ge=0, le=65535)
    score_register: int | None = Field(1, ge=0, le=65535)
    count_register: int | None = Field(2, ge=0, le=65535)
    state_register: int | None = Field(3, ge=0, le=65535)
    points_register: int | None = Field(4, ge=0, le=65535)
    type_register: int | None = Field(5, ge=0, le=65535)
    type_codes: dict[str, Annotated[int, Field(ge=0, le=65535)]] = Field(default_factory=lambda: dict(DEFAULT_TYPE_CODES),
                                       description="defect type → the number written to type_register; "
                                                   f"a type not listed is written as {OTHER_TYPE_CODE}")
    camera_stride: int = Field(10, ge=1, le=10_000, description="address offset between the cameras' blocks")
    encoder_register: int | None = Field(None, ge=0, le=65534, description="two holding registers, uint32, high word first")
    encoder_m_per_count: float = Field(0.001, gt=0, le=1000)
    encoder_poll_ms: int = Field(100, ge=10, le=60_000)
    queue_limit: int = Field(1000, ge=1, le=1_000_000, description="pulses kept while the PLC is away")


class ModbusSink:
    """State: `connecting`, `connected`, `disconnected` (retrying), `stopped`."""

    def __init__(self, spec: ModbusSinkSpec, outbox_dir: Path, on_command: Callable[[str, dict], None]):
        from pymodbus.client import ModbusTcpClient  # only where a sink is configured

        self.spec, self.on_command = spec, on_command
        self.outbox = Outbox(outbox_dir / f"{spec.name}.sqlite3", spec.queue_limit)
        self.client = ModbusTcpClient(spec.host, port=spec.port, timeout=spec.timeout_s, retries=0)
        self.state, self.last_error = "connecting", None
        self.sent = self.stale = 0
        self._lock = threading.Lock()
        self._registers: dict[int, int] = {}  # address → value still to be written
        self._written: dict[int, int] = {}  # address → value the PLC holds (written again after a reconnect)
        self._counts: dict[str, int] = {}
        self._high: dict[int, float] = {}  # coil → when it goes off again
        self._quiet: dict[int, float] = {}  # coil → when it may go on again (the falling edge's gap)
        self._encoder: int | None = None
        self._unlisted: set[str] = set()  # types warned about once
        self._next_poll = 0.0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"modbus-{spec.name}", daemon=True)

    def _offset(self, camera_id: str) -> int | None:
        if self.spec.cameras is None:
            return 0
        return self.spec.cameras.index(camera_id) * self.spec.camera_stride if camera_id in self.spec.cameras else None

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(5)
        self.client.close()
        self.outbox.close()
        self.state = "stopped"

    def status(self) -> dict:
        return {"name": self.spec.name, "kind": "modbus", "target": f"{self.spec.host}:{self.spec.port}",
                "state": self.state, "queued": len(self.outbox), "sent": self.sent, "resent": 0,
                "dropped": self.outbox.dropped + self.stale, "last_error": self.last_error}

    # --- out -----------------------------------------------------------------------------------
    def offer(self, kind: str, camera_id: str, payload: dict) -> None:
        """Set the camera's registers or queue a pulse; the sink's thread writes them."""
        offset = self._offset(camera_id)
        if offset is None:
            return
        spec = self.spec
        with self._lock:
            if kind in ("verdict", "defect"):
                if spec.score_register is not None:
                    self._registers[spec.score_register + offset] = min(max(round(float(payload["score"]) * 1000), 0), 65535)
                if spec.verdict_register is not None and kind == "verdict":
                    self._registers[spec.verdict_register + offset] = int(payload["verdict"] == "DEFECT")
            if kind == "defect":
                self._counts[camera_id] = self._counts.get(camera_id, 0) + 1
                if spec.count_register is not None:
                    self._registers[spec.count_register + offset] = self._counts[camera_id] % 65536
                if spec.points_register is not None and payload.get("roll_points") is not None:
                    self._registers[spec.points_register + offset] = min(int(payload["roll_points"]), 65535)
                if spec.type_register is not None:
                    self._registers[spec.type_register + offset] = self.type_code(payload.get("type"))
            if kind == "status" and spec.state_register is not None:
                self._registers[spec.state_register + offset] = int(payload["state"] == "running")
        coil = {"defect": spec.defect_coil, "stop": spec.stop_coil}.get(kind)
        if coil is not None:
            self.outbox.put(f"coil/{coil + offset}", {"id": payload["id"], "at": payload["at"]})
        self._wake.set()

    def type_code(self, defect_type: str | None) -> int:
        if defect_type is None:
            return self.spec.type_codes.get(UNKNOWN, 0)
        if defect_type in self.spec.type_codes:
            return self.spec.type_codes[defect_type]
        if defect_type not in self._unlisted:
            self._unlisted.add(defect_type)
            log.warning("line output %s: defect type %r has no number in type_codes; the PLC gets %d",
                        self.spec.name, defect_type, OTHER_TYPE_CODE)
        return OTHER_TYPE_CODE

    # --- the sink's thread ---------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            if not self.client.connected:
                if not self._connect():
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.2
            try:
                self._work(time.time())
            except Exception as exc:  # the PLC went away or refused a write: reconnect, keep what is owed
                self.state, self.last_error = "disconnected", f"{type(exc).__name__}: {exc}"
                log.warning("line output %s: %s; retrying, pulses are kept (%d queued)",
                            self.spec.name, self.last_error, len(self.outbox))
                self.client.close()
                continue
            self._wake.wait(self._idle_s(time.time()))
            self._wake.clear()
        if self.client.connected:  # leave no coil on behind us
            for coil in list(self._high):
                try:
                    self._check(self.client.write_coil(coil, False, device_id=self.spec.device_id))
                except Exception:  # noqa: BLE001 — stopping anyway
                    break

    def _connect(self) -> bool:
        if not self.client.connect():
            self.state, self.last_error = "disconnected", f"cannot reach the PLC at {self.spec.host}:{self.spec.port}"
            return False
        self.state, self.last_error = "connected", None
        with self._lock:  # the PLC may have restarted: tell it everything again
            self._registers = {**self._written, **self._registers}
        for coil in list(self._high):  # a pulse cut short by the disconnect ends now
            self._high[coil] = 0.0
        log.info("line output %s: connected to the PLC at %s:%s", self.spec.name, self.spec.host, self.spec.port)
        return True

    def _check(self, response):
        if response.isError():
            raise RuntimeError(f"the PLC refused: {response}")
        return response

    def _work(self, now: float) -> None:
        device = self.spec.device_id
        for coil, off_at in list(self._high.items()):  # pulses that are over
            if off_at <= now:
                self._check(self.client.write_coil(coil, False, device_id=device))
                del self._high[coil]
                self._quiet[coil] = now + self.spec.pulse_ms / 2000
        with self._lock:
            registers, self._registers = self._registers, {}
        try:
            for address, value in sorted(registers.items()):
                self._check(self.client.write_register(address, value, device_id=device))
                self._written[address] = value
                del registers[address]
        finally:
            with self._lock:  # what was not written goes back, unless something newer came meanwhile
                self._registers = {**registers, **self._registers}
        for seq, topic, payload, _retain in self.outbox.peek(16):  # the pulses, in order
            coil = int(topic.split("/")[1])
            if coil in self._high or self._quiet.get(coil, 0.0) > now:
                break  # this coil is still busy with the last pulse; the ones behind it wait
            if now - json.loads(payload)["at"] > self.spec.pulse_max_age_s:
                self.stale += 1
                log.warning("line output %s: a pulse on coil %d came too late for the PLC and was dropped", self.spec.name, coil)
            else:
                self._check(self.client.write_coil(coil, True, device_id=device))
                self._high[coil] = now + self.spec.pulse_ms / 1000
                self.sent += 1
            self.outbox.ack(seq)
        if self.spec.encoder_register is not None and now >= self._next_poll:
            self._next_poll = now + self.spec.encoder_poll_ms / 1000
            self._poll_encoder(device)

    def _poll_encoder(self, device: int) -> None:
        high, low = self._check(self.client.read_holding_registers(self.spec.encoder_register, count=2,
                                                                   device_id=device)).registers
        count = (high << 16) | low
        if count == self._encoder:
            return
        self._encoder = count
        try:
            self.on_command("encoder", {"cameras": self.spec.cameras, "along_m": count * self.spec.encoder_m_per_count})
        except Exception as exc:  # noqa: BLE001 — a reading the rolls refuse is said, not fatal
            self.last_error = f"encoder: {exc}"

    def _idle_s(self, now: float) -> float:
        """How long the thread may sleep: until the next pulse ends or may start, or the next poll."""
        due = [*self._high.values(), *self._quiet.values()]
        if self.spec.encoder_register is not None:
            due.append(self._next_poll)
        soon = min((d - now for d in due if d > now), default=0.5)
        return max(min(soon, 0.5), 0.002)
