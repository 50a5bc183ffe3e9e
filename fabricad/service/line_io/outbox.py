"""A bounded, ordered queue on disk for one sink: what the line must hear survives a broker or PLC
that is down or slow, and a restarted service.

SQLite (the standard library's; WAL, synchronous=NORMAL: a message survives a killed process; a
power cut may lose the last few): `put` appends, `peek` reads the oldest in order, `ack` removes
what was delivered. Past `limit` messages the oldest are dropped and counted, so a PLC that is
gone for a week cannot fill the disk.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path


class Outbox:
    def __init__(self, path: Path, limit: int = 10_000):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.limit = path, limit
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "topic TEXT NOT NULL, payload TEXT NOT NULL, retain INTEGER NOT NULL DEFAULT 0)")
        self.dropped = 0
        """Messages dropped since this outbox was opened because it was full."""

    def put(self, topic: str, payload: dict, retain: bool = False) -> int:
        """Queue one message; returns how many old ones were dropped to make room (usually 0)."""
        with self._lock:
            self._db.execute("INSERT INTO outbox (topic, payload, retain) VALUES (?, ?, ?)",
                             (topic, json.dumps(payload, separators=(",", ":")), int(retain)))
            excess = self._count() - self.limit
            if excess > 0:
                self._db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (excess,))
                self.dropped += excess
            return max(excess, 0)

    def peek(self, limit: int = 100) -> list[tuple[int, str, str, bool]]:
        """The oldest messages, in order: (seq, topic, payload JSON, retain)."""
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, payload, retain FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(seq, topic, payload, bool(retain)) for seq, topic, payload, retain in rows]

    def ack(self, seq: int) -> None:
        """`seq` and everything before it was delivered."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))

    def _count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def __len__(self) -> int:
        with self._lock:
            return self._count()

    def close(self) -> None:
        with self._lock:
            self._db.close()
