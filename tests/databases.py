"""The database the service tests run on: a SQLite file per test by default, or a fresh
database on a real PostgreSQL server (Debian's `postgresql`) that the test session starts
itself, with `pytest --database postgresql` (`.ci/run` runs the service tests both ways)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

SERVER_URL = "FABRICAD_TEST_POSTGRES"
"""Set (to the server's admin URL) while the session's PostgreSQL runs; read by `database_url`,
and inherited by the services the tests start."""


def database_url(workdir: Path) -> str:
    """The database for one test's service (the same for the same `workdir`, so a restarted
    service finds what the first one wrote)."""
    server = os.environ.get(SERVER_URL)
    if not server:
        return f"sqlite:///{workdir / 'defects.db'}"
    import psycopg

    name = "t_" + hashlib.sha1(str(Path(workdir).resolve()).encode()).hexdigest()[:20]
    with psycopg.connect(server, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            connection.execute(f'CREATE DATABASE "{name}"')
    return server.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"


def postgres_binaries() -> Path | None:
    """Where Debian's PostgreSQL keeps initdb and pg_ctl (they are not on PATH there)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


class PostgresServer:
    """A throwaway PostgreSQL cluster on loopback: initdb in a temporary folder, trust
    authentication, a free port. As root (CI containers) it runs as the `postgres` user, since
    PostgreSQL refuses to run as root."""

    def __init__(self, binaries: Path):
        self.binaries = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="fabricad-pg-"))
        self.data = self.folder / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "fabricad", "-A", "trust", "-E", "UTF8", "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        self.url = f"postgresql://fabricad@127.0.0.1:{self.port}/postgres"
        deadline = time.time() + 30
        while subprocess.run([str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True).returncode != 0:
            if time.time() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(self.folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self.as_user, str(self.binaries / tool), *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stderr[-2000:]}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


TABLES_SINCE_0_1_0 = ("users", "sessions", "audit_log", "operating_points")
COLUMNS_SINCE_0_1_0 = (("roll_defects", "defect_type"), ("roll_defects", "type_confidence"),
                       ("teach_ins", "zones"), ("teach_in_scores", "zone_scores_json"), ("teach_in_scores", "selvedge_score"))


def forget_migrations(connection) -> None:
    """Turn a current SQLite database into what a release before migrations left: no
    `alembic_version`, and none of the tables and columns later migrations added (`sqlite3`
    connection)."""
    for table in ("alembic_version", *TABLES_SINCE_0_1_0):
        connection.execute(f"DROP TABLE {table}")
    for table, column in COLUMNS_SINCE_0_1_0:
        connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
