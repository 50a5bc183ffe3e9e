"""What every line output has: a name, the cameras it speaks for, and when it stops the machine.

A sink (`MqttSink`, `OpcUaSink`, `ModbusSink`) is built from its spec, an outbox folder and the
callback that takes the line's commands; `start()`/`stop()` run its own thread, `offer(kind,
camera_id, payload)` hands it a `verdict`, `defect` or `stop` message without ever waiting on the
network, and `status()` says how its connection stands (`LineSinkOut`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fabricad.service.line_io.stop_rule import StopRule

SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class SinkSpecBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SAFE_NAME, description="names the sink in /v1/line, /metrics and its outbox file")
    cameras: list[str] | None = Field(None, description="the cameras this sink speaks for; all when omitted")
    stop_rule: StopRule = StopRule()
