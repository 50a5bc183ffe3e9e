"""What the cameras of each running roll have seen, kept in memory and written to the roll's
record now and then: a frame arrives every few milliseconds per camera, and writing the whole
coverage per frame would put a database write on the inspection path."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from fabricad.rolls.coverage import RollCoverage
from fabricad.service.records import RollRecord


class CoverageBook:
    """Not locked by itself: `RollTracker` calls it under its own lock."""

    SAVE_EVERY_S = 5.0
    """A running roll's coverage is written this often while frames arrive, so a restarted service
    carries on with all but the last seconds of it; a gap opening or closing is written sooner,
    after SAVE_CHANGE_S (not per frame: a camera too slow for the line opens a gap every frame)."""
    SAVE_CHANGE_S = 1.0

    def __init__(self) -> None:
        self._coverage: dict[str, RollCoverage] = {}  # per running roll: what its cameras saw
        self._saved_at: dict[str, float] = {}

    def seen(self, session: Session, roll_id: str) -> RollCoverage | None:
        """A running roll's coverage in memory, read from the database the first time (after a
        restart); None once the roll has ended (a frame still in flight then adds nothing)."""
        if roll_id not in self._coverage:
            stored = session.get(RollRecord, roll_id)
            if stored is None or stored.status != "running":
                return None
            self._coverage[roll_id] = stored.coverage
        return self._coverage[roll_id]

    def save(self, stored: RollRecord) -> None:
        """Write the roll's coverage (and the length it implies) into its record, in the session
        `stored` belongs to."""
        seen = self._coverage.get(stored.id)
        if seen is not None:
            stored.coverage_json = seen.to_json()
            stored.length_m = max(stored.length_m, seen.furthest_m)
            self._saved_at[stored.id] = time.time()

    def due(self, roll_id: str, changed: bool) -> bool:
        """Whether the roll's coverage should be written now (`changed`: a gap opened or closed)."""
        return time.time() - self._saved_at.get(roll_id, 0.0) >= (self.SAVE_CHANGE_S if changed else self.SAVE_EVERY_S)

    def snapshot(self, roll_id: str) -> RollCoverage | None:
        """A copy of a running roll's coverage in memory (frames keep arriving); None if none."""
        seen = self._coverage.get(roll_id)
        return seen.copy() if seen is not None else None

    def forget(self, roll_id: str) -> None:
        self._coverage.pop(roll_id, None)
        self._saved_at.pop(roll_id, None)
