"""Retraining a model from the operators' labels, on the line PC or beside it, and going back.

The loop a mill runs: operators label the frames a model raised for nothing as false alarms;
an admin asks for a retrain; a fine-tune of that model learns those frames as normal fabric
(`fabricad finetune`, in a process of its own: the service stays torch-free and keeps
inspecting, and the job runs at a lower priority than the cameras); the candidate bundle is
compared with the model in use on the same images and offered only if it is not worse; an
activation puts it in place of the old bundle under the same name (cameras, thresholds and
rolls keep naming it), and the old bundle is kept for a rollback.

On disk, all of it readable after a restart:
- `jobs_dir/<model>/<job>/`: the frames the job learns (`false_alarms/`) and checks (`defects/`),
  the fine-tune's checkpoint (`run/`), the candidate (`bundle/`), the worker's `status.json`
  (`fabricad.inference.retraining.RetrainStatus`) and `worker.log`;
- `models_dir/.history/<model>/<when>-<version>/`: the bundles activation or rollback replaced,
  the newest `keep` of them (the registry never serves a folder whose name starts with a dot).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fabricad.errors import FabricadError
from fabricad.inference.bundle import CHECKPOINT_FILE, read_bundle
from fabricad.inference.retraining import RetrainStatus, read_status, write_status
from fabricad.rolls.grading import FALSE_ALARM
from fabricad.service.defect_log import DefectLog
from fabricad.service.registry import ModelRegistry

log = logging.getLogger(__name__)

HISTORY = ".history"
MIN_FALSE_ALARMS = 3
"""Fewer labelled frames than this teach a fine-tune too little to be worth the run."""
VERSION = re.compile(r"^[0-9a-f]{12}$")


class RetrainRefused(FabricadError):
    """The request cannot be carried out now (answered 409 with the reason)."""


@dataclass(frozen=True)
class KeptVersion:
    """A bundle an activation or rollback replaced, kept to go back to."""

    version: str
    kept_at: datetime
    reason: str
    path: Path


class Retraining:
    def __init__(self, jobs_dir: Path, registry: ModelRegistry, defects: DefectLog, *, python: str | None = None,
                 data: dict[str, Path] | None = None, steps: int = 200, keep: int = 5):
        self.jobs_dir = Path(jobs_dir)
        self.registry = registry
        self.defects = defects
        self.python = python or sys.executable
        """the interpreter that runs the fine-tune: one with the training extra (PyTorch)"""
        self.data = dict(data or {})
        """model name → its training images, where they are not at the path its checkpoint names"""
        self.steps = steps
        self.keep = keep
        self._processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.RLock()
        """one action at a time; a status read waits for a job being started (its process known)"""

    # --- what a retrain would use -------------------------------------------------------------
    def frames(self, name: str) -> tuple[list[Path], list[Path]]:
        """Stored frames of `name` that operators labelled false alarms, and those they confirmed
        as defects (any other label), oldest first; frames whose image was pruned are left out."""
        labelled = self.defects.labelled_records(name)
        false_alarms = [p for r in labelled if r.label == FALSE_ALARM for p in [self.defects.file_path(r.image_file)] if p]
        confirmed = [p for r in labelled if r.label != FALSE_ALARM for p in [self.defects.file_path(r.image_file)] if p]
        return false_alarms, confirmed

    def refusal(self, name: str, false_alarms: int) -> str | None:
        """Why `name` cannot be retrained now; None when it can."""
        entry = self.registry.entry(name)
        if not (entry.path / CHECKPOINT_FILE).is_file():
            return ("the bundle carries no training checkpoint to fine-tune: export it with "
                    "`fabricad export --with-checkpoint`")
        if false_alarms < MIN_FALSE_ALARMS:
            return f"{false_alarms} frame(s) labelled false_alarm with their image kept; a retrain needs {MIN_FALSE_ALARMS}"
        status = self.status(name)
        if status is not None and status.state == "running":
            return f"a retrain of {name} is already running (job {status.job})"
        return None

    # --- jobs ------------------------------------------------------------------------------------
    def _job_dirs(self, name: str) -> list[Path]:
        folder = self.jobs_dir / name
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def _latest(self, name: str) -> Path | None:
        dirs = self._job_dirs(name)
        return dirs[-1] if dirs else None

    def status(self, name: str) -> RetrainStatus | None:
        """The newest job of `name`. A job whose process is gone without saying how it ended
        (killed, out of memory, the training extra missing) is recorded as failed, with the end of
        its log."""
        with self._lock:
            folder = self._latest(name)
            if folder is None:
                return None
            status = read_status(folder / "status.json")
            if status is None or status.state != "running" or self._alive(name, status):
                return status
            status = read_status(folder / "status.json") or status  # it may have finished a moment ago
            if status.state == "running":
                status.state, status.phase = "failed", "failed"
                status.error = "the job ended without a result: " + _tail(folder / "worker.log")
                write_status(folder / "status.json", status)
            return status

    def _alive(self, name: str, status: RetrainStatus) -> bool:
        process = self._processes.get(name)
        if process is not None and process.pid == status.pid:
            return process.poll() is None
        if status.pid is None:
            return False
        try:  # a job started before a restart of the service: alive while its process is
            return "finetune" in Path(f"/proc/{status.pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False

    def start(self, name: str, steps: int | None = None) -> RetrainStatus:
        """Copy the labelled frames into a new job folder and start the fine-tune on them."""
        with self._lock:
            false_alarms, confirmed = self.frames(name)
            why = self.refusal(name, len(false_alarms))
            if why:
                raise RetrainRefused(why)
            entry = self.registry.entry(name)
            job = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            folder = self.jobs_dir / name / job
            for kind, paths in (("false_alarms", false_alarms), ("defects", confirmed)):
                (folder / kind).mkdir(parents=True)
                for path in paths:
                    shutil.copy2(path, folder / kind / path.name)
            status = RetrainStatus(job=job, model=name, old_version=entry.version, steps=steps or self.steps,
                                   false_alarm_frames=len(false_alarms), defect_frames=len(confirmed))
            command = [self.python, "-m", "fabricad", "finetune", "--bundle", str(entry.path.resolve()),
                       "--false-alarms", str(folder / "false_alarms"), "--defects", str(folder / "defects"),
                       "--out", str(folder), "--status", str(folder / "status.json"), "--job", job,
                       "--steps", str(status.steps), "--nice", "10", "--quiet"]
            if name in self.data:
                command += ["--data", str(self.data[name])]
            write_status(folder / "status.json", status)
            try:
                with (folder / "worker.log").open("w") as worker_log:
                    process = subprocess.Popen(command, stdout=worker_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               start_new_session=True)  # a Ctrl+C of the service does not cut a job short
            except OSError as exc:
                status.state, status.phase, status.error = "failed", "failed", f"cannot start {self.python}: {exc}"
                write_status(folder / "status.json", status)
                raise RetrainRefused(status.error) from None
            status.pid = process.pid
            self._processes[name] = process
            write_status(folder / "status.json", status)
            log.info("retrain of %s started (job %s, %d false alarms, %d confirmed defects)", name, job,
                     len(false_alarms), len(confirmed))
            return status

    def cancel(self, name: str) -> RetrainStatus:
        """Stop a running job, or drop a finished job's candidate."""
        with self._lock:
            status = self.status(name)
            if status is None or status.state not in ("running", "done"):
                raise RetrainRefused(f"no running or finished retrain of {name} to cancel")
            if status.state == "running":
                process = self._processes.pop(name, None)
                if process is not None:
                    process.terminate()
                    try:
                        process.wait(10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                status.state, status.phase = "cancelled", "cancelled"
            else:
                status.state = "discarded"
            folder = self.jobs_dir / name / status.job
            self._drop_outputs(folder)
            write_status(folder / "status.json", status)
            return status

    @staticmethod
    def _drop_outputs(folder: Path) -> None:
        """A finished job's checkpoint and candidate (tens of MB); its frames, status and log stay."""
        shutil.rmtree(folder / "bundle", ignore_errors=True)
        shutil.rmtree(folder / "run", ignore_errors=True)

    # --- activation and rollback ----------------------------------------------------------------
    def activate(self, name: str) -> RetrainStatus:
        """Put the finished job's candidate in place of the model in use; the old bundle is kept."""
        with self._lock:
            status = self.status(name)
            if status is None or status.state != "done":
                raise RetrainRefused(f"no finished retrain of {name} waits for activation")
            if not status.offered:
                raise RetrainRefused(f"the candidate is worse than the model in use ({'; '.join(status.reasons)}): "
                                     "it is not offered for activation")
            entry = self.registry.entry(name)
            if entry.version != status.old_version:
                raise RetrainRefused(f"{name} changed since the retrain started ({status.old_version} → {entry.version}): "
                                     "its comparison no longer holds; retrain again")
            folder = self.jobs_dir / name / status.job
            self._swap(name, folder / "bundle", f"replaced by retrain {status.job}")
            status.state = "activated"
            write_status(folder / "status.json", status)
            self._drop_outputs(folder)  # the candidate now lives in the models folder
            return status

    def history(self, name: str) -> list[KeptVersion]:
        """The bundles of `name` kept to go back to, newest first."""
        folder = self.registry.models_dir / HISTORY / name
        kept = []
        for path in sorted(folder.iterdir(), reverse=True) if folder.is_dir() else []:
            try:
                note = json.loads((path / "kept.json").read_text())
                kept.append(KeptVersion(note["version"], datetime.fromisoformat(note["kept_at"]), note["reason"], path))
            except (OSError, ValueError, KeyError):
                continue
        return kept

    def rollback(self, name: str, version: str | None = None) -> KeptVersion:
        """Put a kept bundle of `name` back in place (the newest, or `version`); the one in use is
        kept in turn, so a rollback can itself be undone."""
        if version is not None and not VERSION.match(version):
            raise RetrainRefused(f"{version!r} is not a bundle version (12 hex digits)")
        with self._lock:
            kept = [k for k in self.history(name) if version is None or k.version == version]
            if not kept:
                raise RetrainRefused(f"no kept bundle of {name}" + (f" with version {version}" if version else ""))
            target = kept[0]
            self._swap(name, target.path, f"rolled back to {target.version}", move=True)
            return target

    def _swap(self, name: str, incoming: Path, reason: str, move: bool = False) -> None:
        """`incoming` becomes bundle `name`, the current one goes to the history, and the engine
        is reloaded from the new files before it serves (the registry's hot swap)."""
        entry = self.registry.entry(name)
        read_bundle(incoming)  # refuse a candidate whose graph does not match its metadata
        history = self.registry.models_dir / HISTORY / name
        history.mkdir(parents=True, exist_ok=True)
        staged = self.registry.models_dir / HISTORY / f".incoming-{name}"
        shutil.rmtree(staged, ignore_errors=True)
        if move:
            incoming.rename(staged)
            (staged / "kept.json").unlink(missing_ok=True)  # the history's note, not part of the bundle
        else:  # the job folder may be on another disk: copy first, then rename within the models folder
            shutil.copytree(incoming, staged)
        kept_as = history / f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{entry.version}"
        self.registry.replace(name, staged, kept_as)
        (kept_as / "kept.json").write_text(json.dumps({"version": entry.version, "kept_at": datetime.now(UTC).isoformat(),
                                                       "reason": reason}))
        for old in sorted(p for p in history.iterdir() if p.is_dir())[:-self.keep or None]:
            shutil.rmtree(old, ignore_errors=True)
        log.info("model %s: %s (the bundle it replaced is kept as %s)", name, reason, kept_as.name)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return " / ".join(text[-lines:]) or "no output"
