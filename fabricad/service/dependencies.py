"""Shared request dependencies: the app's state objects, and who is asking.

A request proves who it is with one credential, in the `X-API-Key` header, as a bearer token
(`Authorization: Bearer …`), or for a WebSocket in the `api_key` query parameter: either an
API key from the settings (machines) or the session token of a signed-in user (people,
`fabricad.service.accounts`). Both carry a role, operator or admin."""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from fabricad.service.accounts import Accounts
from fabricad.service.audit import Actor, AuditLog
from fabricad.service.cameras import CameraManager
from fabricad.service.database import Database
from fabricad.service.defect_log import DefectLog
from fabricad.service.line_io.outputs import LineOutputs
from fabricad.service.metrics import ServiceMetrics
from fabricad.service.pipeline import InspectionPipeline
from fabricad.service.registry import ModelRegistry
from fabricad.service.retraining import Retraining
from fabricad.service.rolls import RollTracker
from fabricad.service.settings import ServiceSettings
from fabricad.service.teach_in import TeachIns
from fabricad.service.thresholds import ThresholdStore

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
bearer = HTTPBearer(auto_error=False)
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
    accounts: Accounts | None = None
    audit: AuditLog | None = None
    retraining: Retraining | None = None
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


async def credential(key: str | None = Depends(api_key_header),
                     authorization: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str | None:
    """The presented credential: the X-API-Key header, else a bearer token."""
    return key or (authorization.credentials if authorization is not None else None)


def actor_of(secret: str | None, state: AppState) -> Actor | None:
    """Who `secret` (an API key or a session token) acts for; None for none or an unknown one."""
    if not secret:
        return None
    for known, role in state.settings.api_keys.items():
        if hmac.compare_digest(known.encode(), secret.encode()):
            return Actor.of_key(known, role)
    found = state.accounts.resolve(secret) if state.accounts is not None else None
    return Actor(found[0], found[1], "user") if found is not None else None


@functools.cache
def require(role: str):
    """Dependency factory: the caller must carry `role` or higher; the dependency's value is the
    `Actor`, for the audit log. One function per role (cached), so a route that names it in
    `dependencies=` and as a parameter checks once."""

    async def check(secret: str | None = Depends(credential), state: AppState = Depends(get_state)) -> Actor:
        actor = actor_of(secret, state)
        if actor is None:
            if not secret and not state.settings.api_keys and not (state.accounts and state.accounts.any_users()):
                raise HTTPException(401, "nobody can sign in to this service yet: add a user (`fabricad users add`) "
                                         "or set FABRICAD_API_KEYS")
            raise HTTPException(401, "sign in, or present an API key (header X-API-Key); "
                                     + ("the one given is unknown or expired" if secret else "none was given"))
        if ROLE_RANK[actor.role] < ROLE_RANK[role]:
            raise HTTPException(403, f"this action needs the {role} role")
        return actor

    check.required_role = role  # read by fabricad.service.openapi to declare the 401/403 answers
    return check


async def reader(secret: str | None = Depends(credential), state: AppState = Depends(get_state)) -> None:
    if state.settings.require_key_for_reads and actor_of(secret, state) is None:
        raise HTTPException(401, "this service requires signing in or an API key for every request (header X-API-Key)")
