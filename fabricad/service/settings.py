"""Service settings: environment (FABRICAD_*), a `.env` file, or a YAML file, in that order of
precedence. Nothing here is read from a request."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from fabricad.config import validation_message
from fabricad.errors import ConfigError, did_you_mean
from fabricad.inference.ort_session import Spinning
from fabricad.service.cameras import CameraSpec
from fabricad.service.line_io.specs import SinkSpec

Role = Literal["operator", "admin"]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FABRICAD_", env_file=".env", extra="ignore")

    models_dir: Path = Path("models")
    """Folder of exported bundles, one sub-folder each (`fabricad export --out models/NAME`)."""
    active_model: str | None = None
    """Bundle to serve by default; the first one found when unset."""
    models_rescan_s: float = Field(10.0, ge=0)
    """Seconds between looks for bundles added to `models_dir` while the service runs (0: only at
    start and when an unknown name is asked for). With no active model, the first bundle found
    (or `active_model`, once it appears) becomes active, so a line started before its model was
    exported becomes ready by itself."""
    database_url: str = "sqlite:///fabricad.db"
    image_store: Path = Path("defect-images")
    image_retention: int = Field(10_000, ge=0)
    """Most defect images (and overlays) kept on disk; older files are removed, records stay."""
    api_keys: dict[str, Role] = {}
    """key → role, for machines (a line controller, a script); people sign in as named users
    (`fabricad users add`). Operators acknowledge defects and run rolls; admins also switch models,
    thresholds and cameras, and manage users. With no keys and no users every mutating endpoint
    answers 401."""
    session_hours: float = Field(12.0, gt=0, le=24 * 31)
    """How long a user's sign-in lasts (users: `fabricad users add`); one shift and a bit by default."""
    require_key_for_reads: bool = False
    max_upload_bytes: int = Field(32 * 1024 * 1024, ge=1)
    max_pixels: int = Field(40_000_000, ge=1)
    cors_origins: list[str] = []
    report_dir: Path = Path("roll-reports")
    """Where the report of each ended roll is written (PDF, JSON, CSV, roll map)."""
    media_dir: Path = Path("media")
    """Video files and image folders that `media:NAME` camera sources may name (simulated cameras)."""
    cameras: list[CameraSpec] = []
    """Cameras started with the service (more can be added at run time by the API)."""
    line_outputs: list[SinkSpec] = []
    """Where verdicts, defects and stop signals go, and roll commands come from: MQTT brokers,
    an OPC UA server and Modbus TCP PLCs (`fabricad.service.line_io`, docs/line.md), e.g. `[{"name": "plc", "host": "10.0.0.5",
    "stop_rule": {"mode": "any"}}, {"kind": "opcua", "name": "scada", "users": {"plc": "secret"}}]`."""
    line_outbox_dir: Path = Path("line-outbox")
    """Each line output's queue on disk (what a broker that is away will get when it is back)."""
    max_batch: int = Field(8, ge=1, le=64)
    """Frames from all cameras inferred together at most."""
    inference_workers: int = Field(1, ge=1, le=64)
    """Camera batches in flight at once: 1 in-process; the replica count with a remote engine."""
    inspect_workers: int = Field(2, ge=1, le=64)
    """Uploaded images (`/v1/inspect`) decoded and inferred at once; more wait in line. Two keep
    both cores of a small PC busy (one decodes while the other infers); unbounded, sixteen
    clients' runs fight over the cores and the slowest answers take longer (BENCHMARKS.md,
    service load). Raise it for a remote engine."""
    engine: Literal["local", "triton", "ray"] = "local"
    """Where models run: in this process (ONNX Runtime), or a remote engine at `engine_url` —
    a Triton server (`fabricad export --format triton` repository) or `fabricad engine ray`."""
    engine_url: str | None = None
    """e.g. http://gpu-host-a:8000 (Triton HTTP), grpc://gpu-host-a:8001, http://gpu-host-a:8100 (Ray Serve)"""
    threads: int | None = None
    ort_spinning: Spinning = "never"
    """How ONNX Runtime's worker threads wait for work: never spin (the default), spin while a run
    is active, or always. Under concurrent load (the line's normal state: several cameras and
    clients) spinning workers take the cores HTTP, decoding and capture need; a lone caller gets
    1-2 ms per Lite1 tile back with "during_run" (BENCHMARKS.md, service load)."""
    providers: list[str] | None = None
    """ONNX Runtime providers by name (tensorrt, cuda, cpu); automatic when unset."""
    runtime: Literal["onnxruntime", "openvino"] = "onnxruntime"
    """What runs the bundles in this process: ONNX Runtime, or Intel's OpenVINO (`pip install
    'fabricad[openvino]'`; INT8 1.5× ONNX Runtime's on the EPYC VM, BENCHMARKS.md) on `openvino_device`."""
    openvino_device: str = "CPU"
    """OpenVINO's device: CPU, GPU (Intel graphics), NPU or AUTO."""
    jobs_dir: Path = Path("jobs")
    """Where retraining jobs work: the labelled frames each learns from, the fine-tune's checkpoint,
    the candidate bundle, its status and log (`fabricad.service.retraining`)."""
    retrain_python: str | None = None
    """The Python that runs retraining (`python -m fabricad finetune`): one with the training extra
    (`pip install 'fabricad[train]'`). This service's own interpreter when unset; a line PC with the
    runtime install only names another environment's here, or retrains nowhere."""
    retrain_data: dict[str, Path] = {}
    """Model name → its training images, for models whose images are not at the path their
    checkpoint names (trained on another machine): a fine-tune keeps learning from them."""
    retrain_steps: int = Field(200, ge=10, le=100_000)
    """Fine-tune steps of a retrain from the operators' false-alarm labels."""
    model_history: int = Field(5, ge=0, le=100)
    """Bundles kept per model after an activation or rollback replaced them (`models_dir/.history`)."""
    align_texture: bool = True
    """Score a scan whose weave is sheared, mirrored or squeezed against the training scans' turned
    back to them, for bundles that carry a texture reference (fabricad.data.alignment). Off: every scan
    is scored as it comes, e.g. where a line's fabric really runs at two angles and should alarm."""

    yaml_file: Path | None = Field(None, exclude=True)

    @field_validator("ort_spinning", mode="before")
    @classmethod
    def _spinning_from_bool(cls, value):
        """Earlier versions took a boolean (true: spin always, false: never); keep old .env files working."""
        if isinstance(value, bool):
            return "always" if value else "never"
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return "always" if value.lower() in ("true", "1") else "never"
        return value

    @model_validator(mode="after")
    def _engine_needs_url(self) -> ServiceSettings:
        if self.engine != "local" and not self.engine_url:
            raise ValueError(f"engine {self.engine!r} needs engine_url (FABRICAD_ENGINE_URL)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        import os

        sources = [init_settings, env_settings, dotenv_settings]
        yaml_path = os.environ.get("FABRICAD_CONFIG")
        if yaml_path:
            check_yaml_keys(Path(yaml_path))
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)


def check_yaml_keys(path: Path) -> None:
    """A settings file's unknown keys are typos (`inspect_worker: 4`) that would otherwise be
    ignored and leave the service running on a default nobody chose: refuse them by name."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"settings file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} must hold a mapping of settings at the top level")
    known = [name for name in ServiceSettings.model_fields if name != "yaml_file"]
    for key in data:
        if key not in known:
            raise ConfigError(f"settings file {path}: unknown setting {key!r}{did_you_mean(str(key), known, n=2)}")


def load_settings(**values) -> ServiceSettings:
    """The service's settings, or a `ConfigError` that names the bad setting as it was given
    (`FABRICAD_INSPECT_WORKERS`, a key of the YAML file) instead of a validation traceback."""
    try:
        return ServiceSettings(**values)
    except ValidationError as exc:
        names = {name: f"FABRICAD_{name.upper()}" for name in ServiceSettings.model_fields}
        raise ConfigError(f"invalid service settings: {validation_message(exc, names=names)}") from None
