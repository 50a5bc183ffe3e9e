"""What the inspection pipeline tells the line, and what the line tells the service.

`LineOutputs.frame` is called for every inspected frame of a camera: a defect becomes a `defect`
message (and, by the sink's `StopRule`, maybe a `stop`), a change of a camera's verdict a
`verdict` message; a change of a camera's state (running, reconnecting, …), seen every second, a
`status` message. Each sink that speaks for the camera takes them. Commands the sinks receive
(roll start/end, encoder readings) go to the roll tracker, as the REST API's do.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from fabricad.errors import require_module
from fabricad.rolls.geometry import RollBox
from fabricad.service.audit import Actor, AuditLog
from fabricad.service.line_io.modbus import ModbusSink
from fabricad.service.line_io.mqtt import MqttSink
from fabricad.service.line_io.opcua import OpcUaSink
from fabricad.service.line_io.specs import SinkSpec
from fabricad.service.line_io.stop_rule import Sighting, StopDecider
from fabricad.service.rolls import RollTracker
from fabricad.service.schemas import RollSpec

log = logging.getLogger(__name__)
SINKS = {"mqtt": MqttSink, "opcua": OpcUaSink, "modbus": ModbusSink}
MODULE_OF_KIND = {"mqtt": "paho", "opcua": "asyncua", "modbus": "pymodbus"}



def _message(kind: str, head: dict, body: dict) -> dict:
    """One message as every sink gets it: its own `id` (a PLC drops repeats by it), its kind."""
    return {"id": uuid.uuid4().hex, "kind": kind, **head, **body}

class LineOutputs:
    def __init__(self, specs: list[SinkSpec], outbox_dir: Path, rolls: RollTracker, audit: AuditLog | None = None):
        self.rolls, self.audit = rolls, audit
        for kind in {spec.kind for spec in specs}:
            require_module(MODULE_OF_KIND[kind])  # at start-up, with the install command, not in a sink's thread
        self.sinks = [SINKS[spec.kind](spec, outbox_dir, functools.partial(self.command, source=spec.name)) for spec in specs]
        self._lock = threading.Lock()
        self._verdicts: dict[str, str] = {}
        self._deciders: dict[tuple[str, str], StopDecider] = {}
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, camera_states: Callable[[], dict[str, str]] | None = None) -> None:
        """Start the sinks; `camera_states` (camera → state) is watched for the status messages."""
        for sink in self.sinks:
            sink.start()
        if camera_states is not None and self.sinks:
            self._watcher = threading.Thread(target=self._watch, args=(camera_states,), name="line-cameras", daemon=True)
            self._watcher.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(5)
        for sink in self.sinks:
            sink.stop()

    def _watch(self, camera_states: Callable[[], dict[str, str]], every_s: float = 1.0) -> None:
        known: dict[str, str] = {}
        while not self._stopping.wait(every_s):
            for camera_id, state in camera_states().items():
                if known.get(camera_id) != state:
                    known[camera_id] = state
                    self._offer("status", camera_id, {"state": state})

    def _offer(self, kind: str, camera_id: str, body: dict) -> None:
        for sink in self._sinks_of(camera_id):
            sink.offer(kind, camera_id, _message(kind, {"at": time.time(), "camera_id": camera_id}, body))

    def _sinks_of(self, camera_id: str) -> list:
        return [s for s in self.sinks if s.spec.cameras is None or camera_id in s.spec.cameras]

    def status(self) -> list[dict]:
        return [sink.status() for sink in self.sinks]

    def frame(self, camera_id: str | None, data: dict, defect_id: int | None, boxes: list[RollBox] | None) -> None:
        """One inspected frame (`data`: the answer's fields). `boxes`: its regions on the roll,
        when a roll places the frame; the stop rules that measure along the roll need them."""
        sinks = self._sinks_of(camera_id) if camera_id is not None else []
        if not sinks:
            return  # the line speaks per camera; an upload without one has no machine to stop
        at = time.time()
        # `captured_at`: when a camera took the frame (None for uploads); `at`: when it was judged
        head = {"at": at, "captured_at": data.get("captured_at"), "camera_id": camera_id, "model": data.get("model"),
                "roll_id": data.get("roll_id")}
        messages: list[tuple[str, dict]] = []
        with self._lock:
            if self._verdicts.get(camera_id) != data["verdict"]:
                self._verdicts[camera_id] = data["verdict"]
                messages.append(("verdict", {"verdict": data["verdict"], "score": data["score"],
                                             "threshold": data["threshold"]}))
        if data["is_defect"]:
            top = boxes[0] if boxes else None
            messages.append(("defect", {
                "defect_id": defect_id, "score": data["score"], "threshold": data["threshold"],
                "regions": len(data["regions"]), "along_m": top.centre[1] if top else data.get("along_m"),
                "across_mm": top.centre[0] if top else None,
                "length_mm": round((top.along_m[1] - top.along_m[0]) * 1000, 2) if top else None,
                "width_mm": round(top.across_mm[1] - top.across_mm[0], 2) if top else None,
                "type": data["regions"][0].get("type") if data["regions"] else None,
                "roll_points": self._roll_points(data.get("roll_id")),
            }))
        for sink in sinks:
            for kind, body in messages:
                sink.offer(kind, camera_id, _message(kind, head, body))
            if data["is_defect"]:
                reason = self._stop_reason(sink, camera_id, data, boxes)
                if reason:
                    sink.offer("stop", camera_id, _message("stop", head, {"reason": reason, "defect_id": defect_id}))

    def _stop_reason(self, sink: MqttSink | OpcUaSink | ModbusSink, camera_id: str, data: dict, boxes: list[RollBox] | None) -> str | None:
        rule = sink.spec.stop_rule
        if rule.mode in ("never", "any"):
            return "defect" if rule.mode == "any" else None
        if not boxes:
            return None  # the rules that measure along the roll need a running roll to place the frame
        with self._lock:
            decider = self._deciders.setdefault((sink.spec.name, camera_id), StopDecider(rule))
            reasons = [decider.see(Sighting(box.along_m)) for box in boxes]
        return next((r for r in reasons if r), None)

    def _roll_points(self, roll_id: str | None) -> int | None:
        """The running roll's 4-point total so far, this defect included (None without a roll)."""
        if roll_id is None:
            return None
        try:
            return self.rolls.grade(roll_id)[2].points
        except Exception:  # noqa: BLE001 — a roll that ended meanwhile: the message goes without it
            return None

    def command(self, command: str, body: dict, source: str = "line") -> None:
        """A command from the line (a sink's network thread, `source` its output's name); raises
        with the reason if refused. Roll starts and ends go to the audit log as `line:<source>`;
        encoder readings (many a second) do not."""
        if command == "roll/start":
            spec = RollSpec.model_validate(body)
            self.rolls.start(spec)
            log.info("roll %s started from the line", spec.id)
            self._audit(source, "roll.start", spec.id, article=spec.article, model=spec.model)
        elif command == "roll/end":
            self.rolls.end(str(body["id"]), body.get("length_m"))
            log.info("roll %s ended from the line", body["id"])
            self._audit(source, "roll.end", str(body["id"]), length_m=body.get("length_m"))
        elif command == "encoder":
            for roll_id in self._rolls_of(body):
                self.rolls.record_position(roll_id, float(body["along_m"]))
        else:
            raise ValueError(f"unknown command {command!r}")

    def _audit(self, source: str, action: str, target: str, **detail) -> None:
        if self.audit is not None:
            self.audit.record(Actor.of_line(source), action, target, **detail)

    def _rolls_of(self, body: dict) -> list[str]:
        """The roll an encoder reading is for: named (`roll_id`), or the running rolls of the
        sink's `cameras` (a PLC's encoder register knows no roll ids; all running rolls when the
        sink speaks for every camera)."""
        if "roll_id" in body:
            return [str(body["roll_id"])]
        cameras = body.get("cameras")
        if cameras is None:
            return [row.id for row in self.rolls.list(status="running")]
        found = (self.rolls.roll_for_camera(camera) for camera in cameras)
        return list(dict.fromkeys(hit[0].id for hit in found if hit is not None))
