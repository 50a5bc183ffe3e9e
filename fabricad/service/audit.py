"""The audit log: every acknowledgement, threshold change, model activation, camera change and
roll action, with who took it. A quality manager asks "who called this a false alarm?" or "who
lowered the threshold on Tuesday night?"; the answer is a row here, kept with the defect log and
backed up with it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from fabricad.service.database import Database
from fabricad.service.records import AuditRecord


@dataclass(frozen=True)
class Actor:
    """Who a request (or a line command) acts for.

    kind: "user" (a named account), "key" (an API key, named by the first 8 hex digits of its
    SHA-256 so the log never holds a usable key), "line" (a line output's controller) or "cli"
    (`fabricad users …` on the service's machine, by its login name)."""

    name: str
    role: str | None
    kind: str

    @classmethod
    def of_key(cls, key: str, role: str) -> Actor:
        return cls(f"key:{hashlib.sha256(key.encode()).hexdigest()[:8]}", role, "key")

    @classmethod
    def of_line(cls, output: str) -> Actor:
        return cls(f"line:{output}", None, "line")

    @classmethod
    def of_cli(cls, login: str) -> Actor:
        return cls(f"cli:{login}"[:80], None, "cli")


class AuditLog:
    def __init__(self, database: Database):
        self.database = database

    def record(self, actor: Actor, action: str, target: str | int | None = None, **detail) -> AuditRecord:
        """Write one entry. `detail` holds what changed (a label, a threshold's old and new value);
        it must be JSON (numbers, strings, lists)."""
        row = AuditRecord(at=datetime.now(UTC), actor=actor.name, actor_kind=actor.kind, role=actor.role,
                          action=action, target=None if target is None else str(target)[:160],
                          detail_json=json.dumps(detail, default=str))
        with self.database.session(write=True) as session:
            session.add(row)
        return row

    def list(self, actor: str | None = None, action: str | None = None, target: str | None = None,
             since: datetime | None = None, until: datetime | None = None, limit: int = 200,
             before_id: int | None = None) -> list[AuditRecord]:
        """Newest first; `before_id` pages back through older entries."""
        query = select(AuditRecord)
        for column, value in ((AuditRecord.actor, actor), (AuditRecord.action, action), (AuditRecord.target, target)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(AuditRecord.at >= since)
        if until is not None:
            query = query.where(AuditRecord.at < until)
        if before_id is not None:
            query = query.where(AuditRecord.id < before_id)
        with self.database.session() as session:
            return list(session.scalars(query.order_by(AuditRecord.id.desc()).limit(limit)))
