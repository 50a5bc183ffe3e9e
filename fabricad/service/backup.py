"""`fabricad backup` / `fabricad restore`: the defect log, rolls, thresholds and teach-ins (the
database), the defect images and the roll reports, in one archive — taken while the service runs.

Consistency: the database is copied first, as one snapshot (SQLite's online backup API;
PostgreSQL's `pg_dump`, one transaction), then the files. The defect log writes a defect's
images before its row, so every defect in the snapshot has its images on disk when they are
copied; an image that retention removed between the two is marked missing in the snapshot
(SQLite) rather than left pointing at nothing. Defects logged after the snapshot are not in the
archive, by design: it is the state at `created_at`.

Restore goes into a service that is stopped, onto an empty database unless `force`; the schema
is then migrated (Alembic), so an archive from an older release opens in this one.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from tqdm import tqdm

from fabricad.errors import FabricadError
from fabricad.service.database import Database
from fabricad.service.records import DefectRecord, RollRecord
from fabricad.service.settings import ServiceSettings

FORMAT = 1
FOLDERS = {"images": "image_store", "reports": "report_dir"}  # archive folder → setting


def _kind(url: str) -> str:
    backend = make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise FabricadError(f"backup knows SQLite and PostgreSQL databases, not {backend}")
    return backend


def _pg_url(url: str) -> str:
    """A libpq URL for pg_dump/pg_restore (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_tool(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if found is None:
        raise FabricadError(f"a PostgreSQL backup needs {name} (apt-get install postgresql-client)")
    return str(found)


def _snapshot_sqlite(url: str, target: Path) -> None:
    source = make_url(url).database
    if not source or not Path(source).is_file():
        raise FabricadError(f"no database at {source}")
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst)  # one consistent snapshot, while the service goes on writing


def _dump_postgres(url: str, target: Path) -> dict:
    """pg_dump of one exported snapshot, the manifest's counts read in that same snapshot."""
    import psycopg

    with psycopg.connect(_pg_url(url)) as connection:
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = connection.execute("SELECT pg_export_snapshot()").fetchone()[0]
        defects, last = connection.execute("SELECT count(*), coalesce(max(id), 0) FROM defects").fetchone()
        rolls = connection.execute("SELECT count(*) FROM rolls").fetchone()[0]
        schema = connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        done = subprocess.run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", f"--snapshot={snapshot}",
                               "--file", str(target), _pg_url(url)], capture_output=True, text=True)
        connection.rollback()
    if done.returncode != 0:
        raise FabricadError(f"pg_dump failed: {done.stderr.strip()[-500:]}")
    return {"defects": defects, "last_defect_id": last, "rolls": rolls, "schema": schema}


def _counts(url: str) -> dict:
    database = Database(url, upgrade=False)
    try:
        with database.session() as session:
            return {"defects": session.scalar(select(func.count(DefectRecord.id))) or 0,
                    "last_defect_id": session.scalar(select(func.max(DefectRecord.id))) or 0,
                    "rolls": session.scalar(select(func.count(RollRecord.id))) or 0,
                    "schema": database.revision()}
    finally:
        database.dispose()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def backup(settings: ServiceSettings, out: Path, progress: bool = True) -> dict:
    """Write `out` (a .tar.gz); returns its manifest."""
    kind = _kind(settings.database_url)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fabricad-backup-") as scratch:
        work = Path(scratch)
        started = time.time()
        if kind == "sqlite":
            database_file = work / "database.sqlite3"
            _snapshot_sqlite(settings.database_url, database_file)
            counts = _counts(f"sqlite:///{database_file}")
        else:
            database_file = work / "database.pgdump"
            counts = _dump_postgres(settings.database_url, database_file)
        manifest = {"format": FORMAT, "created_at": started, "database": kind, **counts, "files": {}}
        with tarfile.open(out.with_name(out.name + ".partial"), "w:gz") as archive:
            for folder, setting in FOLDERS.items():
                root = Path(getattr(settings, setting))
                added = 0
                for path in tqdm(_files(root), desc=f"backup: {folder}", unit="file", disable=not progress):
                    try:
                        archive.add(path, f"{folder}/{path.relative_to(root)}")
                        added += 1
                    except FileNotFoundError:  # removed by retention since it was listed
                        continue
                manifest["files"][folder] = added
            if kind == "sqlite":
                manifest["images_missing"] = _mark_missing(database_file, Path(settings.image_store))
            archive.add(database_file, database_file.name)
            info = tarfile.TarInfo("manifest.json")
            body = json.dumps(manifest, indent=2).encode()
            info.size, info.mtime = len(body), int(started)
            archive.addfile(info, io.BytesIO(body))
        out.with_name(out.name + ".partial").replace(out)  # a half-written archive never has the final name
    return manifest


def _mark_missing(snapshot: Path, image_store: Path) -> int:
    """Null the snapshot's image references that are no longer on disk (pruned meanwhile)."""
    missing = 0
    with sqlite3.connect(snapshot) as db:
        for row_id, image, overlay in db.execute("SELECT id, image_file, overlay_file FROM defects "
                                                 "WHERE image_file IS NOT NULL").fetchall():
            if not (image_store / image).is_file() or (overlay and not (image_store / overlay).is_file()):
                db.execute("UPDATE defects SET image_file = NULL, overlay_file = NULL WHERE id = ?", (row_id,))
                missing += 1
    return missing


def read_manifest(archive: Path) -> dict:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            return json.loads(tar.extractfile("manifest.json").read())
    except (OSError, tarfile.TarError, KeyError, json.JSONDecodeError) as exc:
        raise FabricadError(f"{archive}: not a fabricad backup ({exc})") from None


def restore(settings: ServiceSettings, archive: Path, force: bool = False, progress: bool = True) -> dict:
    """Put `archive` back under `settings` (the service stopped); returns its manifest."""
    manifest = read_manifest(archive)
    if manifest.get("format") != FORMAT:
        raise FabricadError(f"{archive}: backup format {manifest.get('format')} is not {FORMAT}")
    kind = _kind(settings.database_url)
    if kind != manifest["database"]:
        raise FabricadError(f"{archive} holds a {manifest['database']} database; the settings name a {kind} one")
    if not force and _has_data(settings.database_url):
        raise FabricadError("the target database already holds defects or rolls; restore with --force to replace them")
    with tempfile.TemporaryDirectory(prefix="fabricad-restore-") as scratch, tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for member in members:  # names come from the archive: nothing may land outside its folder
            if member.name.startswith("/") or ".." in Path(member.name).parts or not (member.isfile() or member.isdir()):
                raise FabricadError(f"{archive}: refusing the entry {member.name!r}")
        for folder, setting in FOLDERS.items():
            root = Path(getattr(settings, setting))
            wanted = [m for m in members if m.isfile() and m.name.startswith(folder + "/")]
            for member in tqdm(wanted, desc=f"restore: {folder}", unit="file", disable=not progress):
                target = root / member.name[len(folder) + 1:]
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
        name = "database.sqlite3" if kind == "sqlite" else "database.pgdump"
        tar.extract(name, scratch, filter="data")
        if kind == "sqlite":
            target = Path(make_url(settings.database_url).database)
            target.parent.mkdir(parents=True, exist_ok=True)
            for stale in (target, target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
                stale.unlink(missing_ok=True)
            shutil.copyfile(Path(scratch) / name, target)
        else:
            done = subprocess.run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--dbname",
                                   _pg_url(settings.database_url), str(Path(scratch) / name)], capture_output=True, text=True)
            if done.returncode != 0:
                raise FabricadError(f"pg_restore failed: {done.stderr.strip()[-500:]}")
    Database(settings.database_url).dispose()  # migrates an older archive's schema to this release's
    return manifest


def _has_data(url: str) -> bool:
    try:
        database = Database(url, upgrade=False)
    except FabricadError:
        return False  # nothing there yet
    try:
        with database.session() as session:
            return bool(session.scalar(select(func.count(DefectRecord.id))) or session.scalar(select(func.count(RollRecord.id))))
    except Exception:  # noqa: BLE001 — no tables yet: an empty database
        return False
    finally:
        database.dispose()
