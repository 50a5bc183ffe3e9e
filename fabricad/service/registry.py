"""Exported bundles the service can run, and which one is active.

Hot swap: the new engine is loaded completely before the active reference is switched, and a
request keeps the engine object it started with, so no request fails or mixes two models.

Bundles change while the service runs: onboarding a fabric, or retraining one, must not stop
the cameras of the others. The folder is scanned at start, by the service every
`models_rescan_s`, and whenever a name is asked for that is not known yet (so activating a bundle
exported a moment ago just works). A new folder joins; a known one whose files changed (exported
again in place) is read again and, if its engine was loaded, reloaded and swapped in like a hot
swap; one removed leaves the list unless its engine is loaded. A bundle caught half-written (its
graph does not match the sha256 in `model.json`) is skipped until its files change again, and the
entry in use stays.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from fabricad.defect_types import TYPES_FILE, load_types
from fabricad.errors import FabricadError
from fabricad.inference.bundle import BundleMeta, read_bundle
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.ort_session import Spinning

log = logging.getLogger(__name__)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class UnknownModel(FabricadError):
    pass


@dataclass
class ModelEntry:
    name: str
    path: Path
    meta: BundleMeta
    engine: InferenceEngine | None = None
    files: tuple = ()
    """`files_of(path)` when it was read: a change means the bundle was written again."""

    @property
    def version(self) -> str:
        return self.meta.sha256[:12]


BUNDLE_SUFFIXES = {".json", ".onnx", ".plan", ".data", ".xml", ".bin"}
"""The files that make a bundle (metadata, graph, TensorRT plan, external weights, an OpenVINO IR); caches the
runtime writes beside them (`trt_cache/`) and notes a person leaves there are not the model."""


def _without_types(files: tuple) -> tuple:
    return tuple(f for f in files if f[0] != TYPES_FILE)


def files_of(folder: Path) -> tuple:
    """(name, size, mtime) of a bundle's files: cheap to take at every scan, and it changes
    whenever an export or a copy writes any of them, whatever order they are written in."""
    return tuple(sorted((p.name, s.st_size, s.st_mtime_ns) for p in folder.iterdir()
                        if p.is_file() and p.suffix in BUNDLE_SUFFIXES for s in [p.stat()]))


class ModelRegistry:
    def __init__(self, models_dir: Path, providers: list[str] | None = None, threads: int | None = None,
                 engine: str = "local", engine_url: str | None = None, spinning: Spinning = "never",
                 align: bool = True, on_load: Callable[[str, str, InferenceEngine], None] | None = None,
                 runtime: str = "onnxruntime", device: str = "CPU"):
        self.models_dir = Path(models_dir)
        self.on_load = on_load
        """Called with (name, version, engine) for every engine loaded, before it serves: the
        service gives it back the threshold set on the line (`fabricad.service.thresholds`)."""
        self.providers = providers
        self.threads = threads
        self.engine_kind = engine
        self.engine_url = engine_url
        self.spinning = spinning
        self.align = align
        # the in-process engine's backend: OpenVINO for every bundle, or by the bundle's own graph
        self.runtime = "openvino" if runtime == "openvino" else "auto"
        self.device = device
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._entries: dict[str, ModelEntry] = {}
        self._skipped: dict[str, tuple] = {}
        """name → `files_of` the folder when it could not be read: tried again only once its
        files change, so a broken folder is logged once, not at every scan"""
        self._folder_missing = False
        self._active: str | None = None
        self.errors: dict[str, str] = {}
        """why a model could not be loaded, by name (shown by /readyz)"""
        self.scan()

    def scan(self) -> list[str]:
        """Discover bundles not known yet and re-read changed ones; the names added or changed.
        A broken bundle is logged and skipped, never fatal."""
        if not self.models_dir.is_dir():
            if not self._folder_missing:
                log.warning("models folder %s does not exist", self.models_dir)
            self._folder_missing = True
            return []
        self._folder_missing = False
        added = []
        with self._scan_lock:
            for folder in sorted(p for p in self.models_dir.iterdir() if p.is_dir()):
                name = folder.name
                if not (folder / "model.json").is_file() or not SAFE_NAME.match(name):
                    continue
                files = files_of(folder)
                known = self._entries.get(name)
                if (known is not None and known.files == files) or self._skipped.get(name) == files:
                    continue
                if known is not None and _without_types(known.files) == _without_types(files):
                    self._new_types(known, files)  # the model is the same: no engine to load again
                    continue
                try:
                    meta, _ = read_bundle(folder)
                    entry = ModelEntry(name, folder, meta, files=files)
                    if known is not None and known.engine is not None:
                        entry.engine = self._load(entry)  # ready before it takes over, as in a hot swap
                except FabricadError as exc:
                    log.error("skipping bundle %s%s: %s", folder, " (the loaded one stays)" if known else "", exc)
                    self._skipped[name] = files
                    continue
                self._skipped.pop(name, None)
                self._entries = {**self._entries, name: entry}  # one assignment: readers never see it half-changed
                added.append(name)
                if known is not None:
                    log.info("model bundle %s changed on disk: %s → %s", name, known.version, entry.version)
                else:
                    log.info("model bundle found: %s (%s)", name, entry.version)
            # A bundle removed from the folder leaves the list, unless it is serving: the engine
            # in memory keeps running until another model takes over.
            gone = [n for n, e in self._entries.items()
                    if not (e.path / "model.json").is_file() and e.engine is None and n != self._active]
            if gone:
                self._entries = {n: e for n, e in self._entries.items() if n not in gone}
                log.info("model bundles removed from %s: %s", self.models_dir, ", ".join(gone))
        return added

    def replace(self, name: str, incoming: Path, kept_as: Path) -> None:
        """Bundle `name` becomes the folder `incoming` (on the models folder's disk) and its current
        folder moves to `kept_as`; the engine is reloaded from the new files before it serves, as
        after an export in place. Both renames happen under the scan lock, so no scan sees the
        name without a bundle."""
        with self._scan_lock:
            current = self.models_dir / name
            current.rename(kept_as)
            incoming.rename(current)
        self.scan()

    def _new_types(self, known: ModelEntry, files: tuple) -> None:
        """Only the bundle's defect-type classifier changed (`fabricad train-types`, a refit from
        the operators' labels): the serving engine takes it over as it is."""
        try:
            types = load_types(known.path)
        except FabricadError as exc:
            log.error("defect types of %s not taken (the loaded ones stay): %s", known.name, exc)
            self._skipped[known.name] = files
            return
        if known.engine is not None:
            known.engine.types = types
        self._skipped.pop(known.name, None)
        self._entries = {**self._entries, known.name: replace(known, files=files)}
        log.info("defect types of %s changed on disk: %s", known.name, ", ".join(types.classes) if types else "none")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> ModelEntry:
        if SAFE_NAME.match(name) and name not in self._entries:
            self.scan()  # exported a moment ago?
        if not SAFE_NAME.match(name) or name not in self._entries:
            raise UnknownModel(f"no model named {name!r}; available: {', '.join(self.names()) or 'none'}")
        return self._entries[name]

    def engine(self, name: str | None = None) -> tuple[ModelEntry, InferenceEngine]:
        """The engine for `name` (default: the active model), loading it on first use."""
        entry = self.entry(name or self.active_name())
        if entry.engine is None:
            with self._lock:
                if entry.engine is None:
                    try:
                        entry.engine = self._load(entry)
                    except FabricadError as exc:
                        self.errors[entry.name] = str(exc)
                        raise
                    self.errors.pop(entry.name, None)
        return entry, entry.engine

    def _load(self, entry: ModelEntry) -> InferenceEngine:
        """In-process ONNX Runtime, or the same bundle served by a remote engine: tiling, thresholds
        and regions stay here either way, so the API and camera pipeline do not change."""
        if self.engine_kind == "local":
            engine = InferenceEngine.load(entry.path, backend=self.runtime, providers=self.providers, threads=self.threads,
                                          spinning=self.spinning, align=self.align, device=self.device)
        else:
            from fabricad.inference.remote import RayServeBackend, TritonBackend

            if self.engine_kind == "triton":
                url = self.engine_url or ""
                protocol = "grpc" if url.startswith("grpc://") else "http"
                backend = TritonBackend(url, entry.meta, entry.name, protocol=protocol)
            else:
                backend = RayServeBackend(self.engine_url or "", entry.meta, entry.name)
            engine = InferenceEngine(backend, entry.meta, align=self.align, types=load_types(entry.path))
        if self.on_load is not None:
            self.on_load(entry.name, entry.version, engine)
        return engine

    def active_name(self) -> str:
        if self._active is None:
            raise UnknownModel(f"no active model (models folder {self.models_dir} holds {len(self._entries)} bundles)")
        return self._active

    @property
    def active(self) -> str | None:
        return self._active

    def activate(self, name: str) -> ModelEntry:
        entry, _ = self.engine(name)  # load first: a bundle that fails to load never becomes active
        with self._lock:
            self._active = name
        log.info("active model is now %s (%s)", name, entry.version)
        return entry
