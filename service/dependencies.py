"""Shared request dependencies: the app's state objects and API-key roles."""

from __future__ import annotations

import asyncio
import functools
import hmac
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

from service.cameras import CameraManager
from service.defect_log import DefectLog
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry
from service.rolls import RollTracker
from service.settings import ServiceSettings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
ROLE_RANK = {"operator": 1, "admin": 2}


@dataclass
class AppState:
    settings: ServiceSettings
    registry: ModelRegistry
    defects: DefectLog
    metrics: ServiceMetrics
    cameras: CameraManager | None = None
    rolls: RollTracker | None = None
    inspect_pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        # Uploads get their own bounded pool rather than the framework's shared one (40 threads,
        # also used by file responses and reports): a bound keeps the cores for runs in flight
        # instead of splitting them among every waiting client.
        self.inspect_pool = ThreadPoolExecutor(self.settings.inspect_workers, thread_name_prefix="inspect")

    async def run_inspection(self, fn, /, *args, **kwargs):
        """Run blocking inspection work in the upload pool without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.inspect_pool, functools.partial(fn, *args, **kwargs))


# The dependencies are `async def` although they never await: FastAPI runs a plain `def`
# dependency in its thread pool, and each hand-off there and back costs 50-100 µs on two cores
# for what is a dictionary lookup.
async def get_state(request: Request) -> AppState:
    return request.app.state.fabricad


def role_of(key: str | None, state: AppState) -> str | None:
    if not key:
        return None
    for known, role in state.settings.api_keys.items():
        if hmac.compare_digest(known.encode(), key.encode()):
            return role
    return None


def require(role: str):
    """Dependency factory: the caller's key must carry `role` or higher."""

    async def check(key: str | None = Depends(api_key_header), state: AppState = Depends(get_state)) -> str:
        if not state.settings.api_keys:
            raise HTTPException(401, "no API keys are configured on this service (set FABRICAD_API_KEYS)")
        actual = role_of(key, state)
        if actual is None:
            raise HTTPException(401, "missing or unknown API key (header X-API-Key)")
        if ROLE_RANK[actual] < ROLE_RANK[role]:
            raise HTTPException(403, f"this action needs the {role} role")
        return actual

    return check


async def reader(key: str | None = Depends(api_key_header), state: AppState = Depends(get_state)) -> None:
    if state.settings.require_key_for_reads and role_of(key, state) is None:
        raise HTTPException(401, "this service requires an API key for every request (header X-API-Key)")
