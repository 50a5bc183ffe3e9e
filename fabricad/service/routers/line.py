"""The line outputs' connections (the PLC side: MQTT brokers, the OPC UA server, Modbus PLCs)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from fabricad.service.dependencies import AppState, get_state, reader
from fabricad.service.schemas import LineSinkOut

router = APIRouter(prefix="/v1/line", tags=["line"], dependencies=[Depends(reader)])


@router.get("", response_model=list[LineSinkOut])
def line_outputs(state: AppState = Depends(get_state)) -> list[dict]:
    """Each configured line output: connected or not, what waits in its outbox, what it dropped."""
    return state.line.status() if state.line else []
