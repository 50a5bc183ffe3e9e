"""The FastAPI application: `create_app(settings)` builds one with its own state."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from fabricad import __version__
from fabricad.errors import FabricadError
from fabricad.service.accounts import Accounts
from fabricad.service.audit import AuditLog
from fabricad.service.cameras import CameraManager
from fabricad.service.database import Database
from fabricad.service.defect_log import DefectLog
from fabricad.service.dependencies import AppState
from fabricad.service.line_io.outputs import LineOutputs
from fabricad.service.metrics import ServiceMetrics
from fabricad.service.openapi import declare_errors, operation_id
from fabricad.service.pipeline import InspectionPipeline
from fabricad.service.registry import ModelRegistry, UnknownModel
from fabricad.service.retraining import Retraining
from fabricad.service.rolls import RollTracker
from fabricad.service.routers import (
    auth,
    cameras,
    defects,
    health,
    inspect,
    line,
    models,
    retraining,
    rolls,
)
from fabricad.service.settings import ServiceSettings, load_settings
from fabricad.service.teach_in import TeachIns
from fabricad.service.thresholds import ThresholdStore

log = logging.getLogger("fabricad.service")
DASHBOARD = Path(__file__).parent / "static"


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        database = Database(settings.database_url)
        defect_log = DefectLog(database, settings.image_store, settings.image_retention)
        thresholds = ThresholdStore(database)
        registry = ModelRegistry(settings.models_dir, settings.providers, settings.threads, settings.engine,
                                 settings.engine_url, settings.ort_spinning, align=settings.align_texture,
                                 on_load=thresholds.restore, runtime=settings.runtime, device=settings.openvino_device)
        metrics, rolls, teach_ins = ServiceMetrics(), RollTracker(database), TeachIns(thresholds)
        audit = AuditLog(database)
        line = LineOutputs(settings.line_outputs, settings.line_outbox_dir, rolls, audit)
        pipeline = InspectionPipeline(registry, defect_log, rolls, metrics, teach_ins, line)
        cameras = CameraManager(settings.media_dir, pipeline.inspect_frames, settings.max_batch,
                                workers=settings.inference_workers)
        retraining = Retraining(settings.jobs_dir, registry, defect_log, python=settings.retrain_python,
                                data=settings.retrain_data, steps=settings.retrain_steps, keep=settings.model_history)
        state = AppState(settings, registry, database, defect_log, metrics, pipeline, cameras=cameras, rolls=rolls,
                         thresholds=thresholds, teach_ins=teach_ins, line=line,
                         accounts=Accounts(database, settings.session_hours), audit=audit, retraining=retraining)
        app.state.fabricad = state
        line.start(cameras.states)
        if not activate_default(state):
            log.warning("no model bundles in %s: /readyz will answer 503", settings.models_dir)
        rescan = asyncio.create_task(watch_models(state)) if settings.models_rescan_s > 0 else None
        for spec in settings.cameras:
            try:
                state.cameras.add(spec)
            except FabricadError as exc:
                log.error("camera %s not started: %s", spec.id, exc)
        if not settings.api_keys and not state.accounts.any_users():
            log.warning("no users and no API keys: nobody can sign in, and mutating endpoints answer 401 "
                        "(`fabricad users add NAME --role admin`, or set FABRICAD_API_KEYS)")
        yield
        if rescan is not None:
            rescan.cancel()
            with suppress(asyncio.CancelledError):
                await rescan
        state.cameras.shutdown()
        line.stop()
        database.dispose()

    app = FastAPI(
        title="fabricad inspection service",
        version=__version__,
        description="Fabric defect inspection: verdicts, heatmaps and the defect log.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"])

    @app.exception_handler(UnknownModel)
    async def unknown_model(_: Request, exc: UnknownModel) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(FabricadError)
    async def user_error(_: Request, exc: FabricadError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its traceback for us; the client gets no internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see the service log"}, status_code=500)

    for router in (health.router, auth.router, inspect.router, models.router, retraining.router, defects.router,
                   cameras.router, rolls.router, line.router):
        declare_errors(router)
        app.include_router(router)

    # The operator dashboard: plain HTML, CSS and JS modules, no build step.
    app.mount("/static", StaticFiles(directory=DASHBOARD), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def activate_default(state: AppState, candidates: list[str] | None = None) -> bool:
    """Activate `active_model` if set, else the first of `candidates` (default: every bundle) that
    loads; whether there was any to try. A bundle that fails to load leaves the service up,
    saying why it is not ready (/readyz)."""
    registry = state.registry
    wanted = state.settings.active_model
    known = set(registry.names())
    names = [n for n in ([wanted] if wanted else (candidates if candidates is not None else sorted(known))) if n in known]
    for name in names:
        try:
            registry.activate(name)
            break
        except FabricadError as exc:
            log.error("cannot activate model %s: %s", name, exc)
    return bool(names)


async def watch_models(state: AppState) -> None:
    """Pick up bundles exported into the models folder while the service runs."""
    while True:
        await asyncio.sleep(state.settings.models_rescan_s)
        try:
            added = await asyncio.to_thread(state.registry.scan)
            if added and state.registry.active is None:
                await asyncio.to_thread(activate_default, state, added)
        except Exception:  # a failing disk must not end the watch, nor the service
            log.exception("scanning %s for model bundles failed", state.settings.models_dir)
