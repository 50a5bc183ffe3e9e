"""Shared request dependencies: the app's state objects and API-key roles."""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

from fabricad.service.cameras import CameraManager
from fabricad.service.database import Database
from fabricad.service.defect_log import DefectLog
from fabricad.service.line_io.outputs import LineOutputs
from fabricad.service.metrics import ServiceMetrics
from fabricad.service.pipeline import InspectionPipeline
from fabricad.service.registry import ModelRegistry
from fabricad.service.rolls import RollTracker
from fabricad.service.settings import ServiceSettings
from fabricad.service.teach_in import TeachIns
from fabricad.service.thresholds import ThresholdStore

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
ROLE_RANK = {"operator": 1, "admin": 2}


@dataclass
class AppState:
    settings: ServiceSettings
    registry: ModelRegistry
    database: Database
    defects: DefectLog
    metrics: ServiceMetrics
    pipeline: InspectionPipeline
    cameras: CameraManager | None = None
    rolls: RollTracker | None = None
    thresholds: ThresholdStore | None = None
    teach_ins: TeachIns = field(default_factory=TeachIns)
    line: LineOutputs | None = None
    _inspect_limiter: anyio.CapacityLimiter | None = field(default=None, init=False, repr=False)

    def inspect_load(self) -> tuple[int, int]:
        """Uploads (being inspected, waiting for a worker), for /metrics."""
        if self._inspect_limiter is None:
            return 0, 0
        stats = self._inspect_limiter.statistics()
        return int(stats.borrowed_tokens), stats.tasks_waiting

    async def run_inspection(self, fn, /, *args, **kwargs):
        """Run blocking inspection work in a worker thread, at most `inspect_workers` at once.

        Why a bound: unbounded, every waiting client's run splits the cores and the slowest
        answers take longer (p99 at 16 clients about a quarter higher). Why anyio's threads and not a ThreadPoolExecutor: anyio hands work to the
        most recently idle thread, so a lone client keeps one calling thread; an executor
        alternates between its threads and ONNX Runtime runs 5-10 % slower when the calling
        thread changes from run to run (BENCHMARKS.md, service load)."""
        if self._inspect_limiter is None:  # created on the event loop, at first use
            self._inspect_limiter = anyio.CapacityLimiter(self.settings.inspect_workers)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._inspect_limiter)


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

    check.required_role = role  # read by fabricad.service.openapi to declare the 401/403 answers
    return check


async def reader(key: str | None = Depends(api_key_header), state: AppState = Depends(get_state)) -> None:
    if state.settings.require_key_for_reads and role_of(key, state) is None:
        raise HTTPException(401, "this service requires an API key for every request (header X-API-Key)")
