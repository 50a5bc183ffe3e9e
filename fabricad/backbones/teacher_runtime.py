"""The frozen teacher run by ONNX Runtime on a CPU.

Why: the teacher never learns, yet in PyTorch eager it is most of a CPU training step. A Lite1
teacher on a batch of eight padded 256² tiles takes 0.94 s of a 1.4 s step on a 2-core AVX2
machine and 0.24 s in ONNX Runtime (depthwise convolutions are where eager PyTorch is slow), so
the same 14-minute budget trains for many more steps (BENCHMARKS.md, "the teacher in ONNX
Runtime"). Evaluation gains the same way. Gradients never flow through the teacher, so nothing is
lost by leaving PyTorch for it.

A session is built per input size (the graph's 'same' padding is frozen for that size, as in
the exported bundles) and checked once against PyTorch on the first real batch: a teacher whose
graph does not reproduce PyTorch falls back to PyTorch with a warning instead of training a
student on wrong targets.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import get_args

import torch
from torch import nn

from fabricad.backbones.static_padding import freeze_same_padding
from fabricad.config import TrainConfig
from fabricad.errors import ConfigError

log = logging.getLogger(__name__)

TEACHER_RUNTIMES: tuple[str, ...] = get_args(TrainConfig.model_fields["teacher_runtime"].annotation)
# Largest |ORT − PyTorch| allowed, relative to the largest |feature| of the check batch: float32
# reorderings give ~1e-6 here; a wrong graph gives order one.
TOLERANCE = 1e-3


class _Unusable(Exception):
    """This teacher cannot run in ONNX Runtime at this size; PyTorch it is."""


class OnnxTeacher:
    """ONNX Runtime sessions for one teacher, one per input size, built on first use.

    Holds no reference to the teacher's modules (the teacher passes its body in), and a deep
    copy of the teacher — export makes one — gets no runtime and runs in PyTorch."""

    def __init__(self, threads: int | None = None):
        self.threads = threads or torch.get_num_threads()
        self.sessions: dict[tuple[int, int], object | None] = {}  # None: this size runs in PyTorch

    def __deepcopy__(self, memo: dict) -> None:
        return None

    def __call__(self, body: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """The features `body(x)` would give, `x` being the normalised input."""
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if size not in self.sessions:
            self.sessions[size] = self._build(body, x)
        session = self.sessions[size]
        if session is None:
            return body(x)
        outputs = session.run(None, {"x": x.detach().contiguous().numpy()})
        return [torch.from_numpy(o) for o in outputs]

    def _build(self, body: nn.Module, x: torch.Tensor):
        try:
            session = self._session(body, x)
            check = x[:1].detach()
            expected = body(check)
            got = [torch.from_numpy(o) for o in session.run(None, {"x": check.contiguous().numpy()})]
            scale = max(float(e.abs().max()) for e in expected) or 1.0
            error = max(float((g - e).abs().max()) for g, e in zip(got, expected)) / scale
            if error > TOLERANCE:
                raise _Unusable(f"its ONNX graph differs from PyTorch by {error:.2e} (relative)")
        except Exception as exc:  # noqa: BLE001 - any failure means: stay in PyTorch, and say so
            log.warning("teacher runs in PyTorch at %dx%d: %s", x.shape[-2], x.shape[-1], exc)
            return None
        log.info("teacher runs in ONNX Runtime at %dx%d (%d threads; max relative difference %.1e)",
                 x.shape[-2], x.shape[-1], self.threads, error)
        return session

    def _session(self, body: nn.Module, x: torch.Tensor):
        import onnxruntime as ort

        # Imported here: both modules import the backbones package, which imports this one.
        from fabricad.inference.bundle import OPSET
        from fabricad.inference.ort_session import session_options

        example = x[:1].detach()
        frozen = freeze_same_padding(body, example)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on static shapes are expected
            torch.onnx.export(frozen, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=["x"],
                              dynamic_axes={"x": {0: "batch"}})
        # Spin only while a run is active: between runs the student's backward needs the cores.
        options = session_options(self.threads, spinning="during_run")
        return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def choose_runtime(requested: str, device: torch.device) -> str:
    """`auto`: ONNX Runtime on a CPU when it is installed, PyTorch on a GPU (its kernels are fast
    there and the features stay on the device)."""
    if requested not in TEACHER_RUNTIMES:
        raise ConfigError(f"teacher runtime must be one of {', '.join(TEACHER_RUNTIMES)}, not {requested!r}")
    if requested == "torch":
        return "torch"
    if device.type != "cpu":
        if requested == "onnxruntime":
            raise ConfigError(f"the ONNX Runtime teacher runs on the CPU only; this run uses {device} "
                              "(use train.teacher_runtime=auto or torch)")
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if requested == "onnxruntime":
            raise ConfigError("train.teacher_runtime=onnxruntime needs the onnxruntime package") from None
        return "torch"
    return "onnxruntime"
