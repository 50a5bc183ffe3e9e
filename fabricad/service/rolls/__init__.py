"""The service's side of roll inspection: the rolls on the line, stored (`tracker`), what their
cameras saw (`coverage_book`) and their defects merged from sightings (`sightings`). The pure
geometry, coverage and grading are `fabricad.rolls`."""

from fabricad.service.rolls.tracker import RollStatus, RollTracker

__all__ = ["RollStatus", "RollTracker"]
