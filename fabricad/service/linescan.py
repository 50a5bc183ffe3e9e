"""Line-scan frames: lines from the camera, frames for the model, each at its exact place on the roll.

A line-scan camera delivers buffers of a few lines each (its `Height`), one per trigger burst of
the encoder. `LineAssembler` stacks them into frames of `lines_per_frame` lines that overlap by
`overlap_lines` (a defect on a frame border is then seen whole in one of them), and stamps each
frame with the index of its first line. Since the camera numbers its buffers (the GigE Vision
block id), a lost buffer is a known gap of lines, not a shift: the frames after it keep their
true position, the lines it held are counted as lost, and no frame spans the gap (a grade must
not vouch for fabric the camera missed; the roll's coverage shows the gap).

Pure NumPy: the GenICam source feeds it; the tests feed it synthetic buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field, model_validator

BLOCK_ID_WRAP = 65535
"""GigE Vision 1.x block ids run 1..65535 and skip 0 on wrapping; 2.x ids are 64-bit and do not wrap."""


class LineScanSettings(BaseModel):
    lines_per_frame: int = Field(256, ge=8, le=65536, description="lines in one frame for the model")
    overlap_lines: int = Field(0, ge=0, description="lines each frame shares with the one before")
    metres_per_line: float = Field(gt=0, le=1, description="fabric advance per line: the encoder's pitch × its divider")

    @model_validator(mode="after")
    def _overlap_below_frame(self) -> LineScanSettings:
        if self.overlap_lines >= self.lines_per_frame:
            raise ValueError("overlap_lines must be below lines_per_frame")
        return self


@dataclass
class AssembledFrame:
    image: np.ndarray
    first_line: int
    """Index of its first line since acquisition started: × metres_per_line = its place."""
    captured_at: float
    """When its first line was taken (host clock, seconds)."""


class LineAssembler:
    def __init__(self, settings: LineScanSettings):
        self.settings = settings
        self.lines_lost = 0
        self.buffers_lost = 0
        self._raw: int | None = None  # the last buffer's block id as the camera sent it
        self._block = 0  # ... unwrapped, counted from the first buffer (0)
        self._rows: list[np.ndarray] = []  # pending lines, contiguous from line _first_line
        self._first_line = 0
        self._taken: list[tuple[int, int, float]] = []  # pending buffers: (first line, lines, time)

    def push(self, block_id: int, lines: np.ndarray, at: float) -> list[AssembledFrame]:
        """One buffer (`lines`: H×W or H×W×C) numbered `block_id`, taken at `at`; returns the
        frames it completes (usually none or one)."""
        if self._raw is None:
            step = None
        else:
            step = block_id - self._raw
            if step < -(BLOCK_ID_WRAP // 2):
                step += BLOCK_ID_WRAP  # a 16-bit id wrapped (65535 → 1)
            if step <= 0:
                return []  # a repeat or a late resend: its lines were given up already
            self._block += step
        self._raw = block_id
        height = lines.shape[0]
        start = self._block * height
        if step is not None and step > 1:
            self.buffers_lost += step - 1
            self.lines_lost += (step - 1) * height
            self._rows, self._taken = [], []  # no frame spans the gap
        if not self._rows:
            self._first_line = start
        self._rows.append(lines)
        self._taken.append((start, height, at))
        return self._emit()

    def _emit(self) -> list[AssembledFrame]:
        out = []
        size, step = self.settings.lines_per_frame, self.settings.lines_per_frame - self.settings.overlap_lines
        while sum(len(r) for r in self._rows) >= size:
            stack = np.concatenate(self._rows, axis=0)
            first = self._first_line
            at = next(t for line, n, t in self._taken if line <= first < line + n)
            out.append(AssembledFrame(stack[:size].copy(), first, at))
            self._rows, self._first_line = [stack[step:]], first + step
            self._taken = [b for b in self._taken if b[0] + b[1] > first + step]
        return out
