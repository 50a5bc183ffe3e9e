"""Where a roll has got to at a given time, from what the line told the service.

By preference: the encoder feed (its last reading, extrapolated with the speed between its last
two readings, or the line speed with a single reading), else the line speed × time since the
roll started. A frame that carries its own position (an encoder-stamped line-scan frame) needs
none of this.
"""

from __future__ import annotations


def position_at(at: float, readings: list[list[float]], speed_m_per_min: float | None, started_at: float) -> float | None:
    """Metres of the roll past the cameras at time `at`; None when nothing says (no encoder
    reading, no line speed). `readings`: the last encoder readings, `[time, metres]`, oldest first."""
    if readings:
        t1, p1 = readings[-1]
        if len(readings) == 2 and readings[1][0] > readings[0][0]:
            speed = (p1 - readings[0][1]) / (t1 - readings[0][0])
        else:
            speed = (speed_m_per_min or 0.0) / 60
        return p1 + speed * (at - t1)
    if speed_m_per_min is None:
        return None
    return speed_m_per_min / 60 * (at - started_at)
