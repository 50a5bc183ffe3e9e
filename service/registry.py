"""Exported bundles the service can run, and which one is active.

Hot swap: the new engine is loaded completely before the active reference is switched, and a
request keeps the engine object it started with, so no request fails or mixes two models.

New bundles join while the service runs: onboarding a fabric must not stop the cameras of the
others. The folder is scanned at start, by the service every `models_rescan_s`, and whenever a
name is asked for that is not known yet (so activating a bundle exported a moment ago just
works). A bundle is only ever added: one already known keeps the entry it was found with (a
changed model goes out under a new name), and a half-copied one is skipped until its
`model.json` changes.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from fabricad.errors import FabricadError
from fabricad.export.bundle import BundleMeta, read_bundle
from fabricad.inference.backends import Spinning
from fabricad.inference.engine import InferenceEngine

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

    @property
    def version(self) -> str:
        return self.meta.sha256[:12]


class ModelRegistry:
    def __init__(self, models_dir: Path, providers: list[str] | None = None, threads: int | None = None,
                 engine: str = "local", engine_url: str | None = None, spinning: Spinning = "never",
                 align: bool = True):
        self.models_dir = Path(models_dir)
        self.providers = providers
        self.threads = threads
        self.engine_kind = engine
        self.engine_url = engine_url
        self.spinning = spinning
        self.align = align
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._entries: dict[str, ModelEntry] = {}
        self._skipped: dict[str, tuple[float, str]] = {}
        """name → (mtime of its model.json, why) of bundles that could not be read: tried again
        only once the file changes, so a broken folder is logged once, not at every scan"""
        self._folder_missing = False
        self._active: str | None = None
        self.errors: dict[str, str] = {}
        """why a model could not be loaded, by name (shown by /readyz)"""
        self.scan()

    def scan(self) -> list[str]:
        """Discover bundles not known yet; the names added. A broken bundle is logged and
        skipped, never fatal."""
        if not self.models_dir.is_dir():
            if not self._folder_missing:
                log.warning("models folder %s does not exist", self.models_dir)
            self._folder_missing = True
            return []
        self._folder_missing = False
        added = []
        with self._scan_lock:
            for folder in sorted(p for p in self.models_dir.iterdir() if p.is_dir()):
                meta_file = folder / "model.json"
                if not meta_file.is_file() or not SAFE_NAME.match(folder.name) or folder.name in self._entries:
                    continue
                mtime = meta_file.stat().st_mtime
                if self._skipped.get(folder.name, (None,))[0] == mtime:
                    continue
                try:
                    meta, _ = read_bundle(folder)
                except FabricadError as exc:
                    log.error("skipping bundle %s: %s", folder, exc)
                    self._skipped[folder.name] = (mtime, str(exc))
                    continue
                self._skipped.pop(folder.name, None)
                self._entries = {**self._entries, folder.name: ModelEntry(folder.name, folder, meta)}  # readers never see it change
                added.append(folder.name)
        if added:
            log.info("model bundles found: %s", ", ".join(added))
        return added

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
            return InferenceEngine.load(entry.path, backend="onnx", providers=self.providers, threads=self.threads,
                                        spinning=self.spinning, align=self.align)
        from fabricad.inference.remote import RayServeBackend, TritonBackend

        if self.engine_kind == "triton":
            url = self.engine_url or ""
            protocol = "grpc" if url.startswith("grpc://") else "http"
            backend = TritonBackend(url, entry.meta, entry.name, protocol=protocol)
        else:
            backend = RayServeBackend(self.engine_url or "", entry.meta, entry.name)
        return InferenceEngine(backend, entry.meta, align=self.align)

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
