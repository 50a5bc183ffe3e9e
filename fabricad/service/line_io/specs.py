"""The kinds of line output the settings may name (`line_outputs`), told apart by `kind`
(`mqtt` when omitted)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag

from fabricad.service.line_io.modbus import ModbusSinkSpec
from fabricad.service.line_io.mqtt import MqttSinkSpec
from fabricad.service.line_io.opcua import OpcUaSinkSpec


def _kind(value: Any) -> str:
    return value.get("kind", "mqtt") if isinstance(value, dict) else getattr(value, "kind", "mqtt")


SinkSpec = Annotated[Annotated[MqttSinkSpec, Tag("mqtt")] | Annotated[OpcUaSinkSpec, Tag("opcua")]
                     | Annotated[ModbusSinkSpec, Tag("modbus")], Discriminator(_kind)]
