"""The service's database: one engine, its sessions, and the migrations that keep its schema.

Every table is declared in `records.py` on this module's `Base`; the schema itself is made and
changed only by Alembic migrations (`migrations/versions/`), run at start-up, so a database file
from any earlier release opens in the current one with every record kept. SQLite (WAL,
synchronous=FULL: a committed defect survives a killed process and a power cut) by default,
PostgreSQL by URL (the compose deployment's).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from fabricad.errors import FabricadError

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")


class Base(DeclarativeBase):
    """The declarative base of every table (`records.py`); its metadata is what migrations are
    checked against (tests/test_database.py)."""


class UtcDateTime(TypeDecorator):
    """A moment, written and read back in UTC on every database. SQLite keeps no time zone: a
    plain `DateTime(timezone=True)` reads back naive there (a browser then takes it for local
    time), and a filter given with an offset (`since=…+03:00`) compares wrongly."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic's configuration without an alembic.ini: the migrations ship inside the package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


class Database:
    """The engine, a session factory and the schema's version.

    `upgrade` (on by default) runs the migrations the database has not had yet. Two services
    starting on one new database at once would both try; on SQLite the file lock serialises them,
    on PostgreSQL the migration holds a table lock, so one waits for the other."""

    _upgrading = threading.Lock()

    def __init__(self, url: str, upgrade: bool = True):
        self.url = url
        try:
            self.engine = create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # a malformed URL or a missing driver: say which setting
            raise FabricadError(f"database URL {url!r} (FABRICAD_DATABASE_URL) cannot be used: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if upgrade:
            self.upgrade()

    def upgrade(self, revision: str = "head") -> None:
        try:
            with self._upgrading:
                before = self.revision()
                command.upgrade(alembic_config(self.engine), revision)
                after = self.revision()
        except SQLAlchemyError as exc:  # unreachable server, unwritable file, wrong password
            where = self.engine.url.render_as_string(hide_password=True)
            raise FabricadError(f"database {where} cannot be opened or upgraded: {getattr(exc, 'orig', None) or exc}") from None
        if before != after:
            log.info("database schema %s -> %s", before or "new", after)

    def revision(self) -> str | None:
        """The schema version this database is at; None before its first migration."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A session; with `write`, one transaction committed on leaving (rolled back on error)."""
        with self._sessions() as session:
            if write:
                with session.begin():
                    yield session
            else:
                yield session

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # any failure means "not ready"; the reason is logged by the caller
            return False

    def dispose(self) -> None:
        self.engine.dispose()
