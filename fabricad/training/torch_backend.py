"""PyTorch as a backend of the inference engine: a checkpoint on a line PC with torch, and the
model in memory wherever fabricad scores images on the training side — held-out calibration at
the end of training, `fabricad eval`, the baselines. They all go through `InferenceEngine`, the
one image → map → score path, so what is measured and calibrated is what a bundle serves.

The runtime (`fabricad.inference`) never imports this module: it would load torch."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from fabricad.data.alignment import TextureReference
from fabricad.errors import FabricadError
from fabricad.inference.bundle import Preprocess, is_bundle
from fabricad.inference.bundle_meta import bundle_meta, checkpoint_meta, scoring_meta
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.ort_session import Spinning
from fabricad.training.checkpoint import Checkpoint, load_model
from fabricad.training.device import select_device


class TorchBackend:
    """Any detector `(B, 3, H, W) in [0, 1] -> (maps (B, 1, H, W), scores (B,))` on uint8 NHWC
    batches: the distillation model, or a baseline measured beside it."""

    def __init__(self, model, device: torch.device | str = "cpu", input_size: tuple[int, int] | None = None,
                 precision: str = "fp32"):
        self.device = torch.device(device)
        if precision not in ("fp32", "fp16"):
            raise FabricadError(f"PyTorch precision must be fp32 or fp16 (got {precision!r}); int8 is an ONNX bundle's")
        if precision == "fp16" and self.device.type != "cuda":
            raise FabricadError("fp16 inference needs a CUDA device; on CPUs export an int8 ONNX bundle instead")
        # Autocast rather than .half(): BatchNorm statistics and the map's blur and score stay in fp32.
        self.half = precision == "fp16"
        self.model = model
        self.input_size = tuple(input_size) if input_size is not None else None
        self.name = f"pytorch[{self.device.type}{', fp16' if self.half else ''}]"
        self.checkpoint: Checkpoint | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "auto", threads: int | None = None,
                        precision: str = "fp32") -> TorchBackend:
        if threads:
            torch.set_num_threads(threads)
        target = select_device(device)
        model, ckpt = load_model(checkpoint)
        backend = cls(model.to(target).eval(), target, tuple(ckpt.config.data.image_size), precision)
        backend.checkpoint = ckpt
        return backend

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
                maps, scores = self.model(x)
            return maps[:, 0].float().cpu().numpy(), scores.float().cpu().numpy()

    def meta(self):
        """Bundle-equivalent metadata of the checkpoint, so the engine treats both backends alike."""
        ckpt = self.checkpoint
        name = Path(str(ckpt.config.data.path or "model")).name
        return bundle_meta(ckpt, ckpt.score_stats.get("scores") or [], name=name, opset=0)


@contextmanager
def evaluating(model):
    """Eval mode for a pass over held-out images, the model's own mode restored afterwards, so
    training (between epochs) and evaluation can both run one."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        if hasattr(model, "train"):
            model.train(was_training)


def scoring_engine(model, device: torch.device | str, size: tuple[int, int], *, preprocess: Preprocess | None = None,
                   fabric_edges: bool = False, fabric_roi: bool = False, reference: TextureReference | None = None,
                   batch_size: int = 8) -> InferenceEngine:
    """An engine over a model in memory, uncalibrated: scores and maps only."""
    context = getattr(model, "context", 0)
    meta = scoring_meta(tuple(size), preprocess=preprocess or Preprocess(context=context),
                        model={"fabric_edges": fabric_edges, "fabric_roi": fabric_roi})
    return InferenceEngine(TorchBackend(model, device, size), meta, batch_size=batch_size, reference=reference)


def checkpoint_engine(model, checkpoint: Checkpoint, device: torch.device | str, batch_size: int = 8,
                      align: bool = True) -> InferenceEngine:
    """An engine over `model` as `checkpoint` describes it (cut, edges, ROI, texture), uncalibrated."""
    size = tuple(checkpoint.config.data.image_size)
    return InferenceEngine(TorchBackend(model, device, size), checkpoint_meta(checkpoint), batch_size=batch_size,
                           align=align)


def load_engine(path: str | Path, backend: str = "auto", providers: list[str] | None = None,
                threads: int | None = None, device: str = "auto", spinning: Spinning = "during_run",
                precision: str = "fp32", **kwargs) -> InferenceEngine:
    """A bundle folder (ONNX Runtime) or a checkpoint (PyTorch)."""
    path = Path(path)
    if backend == "auto":
        backend = "onnx" if is_bundle(path) else "torch"
    if backend == "onnx":
        return InferenceEngine.load(path, "onnx", providers, threads, spinning, **kwargs)
    if backend == "torch":
        runner = TorchBackend.from_checkpoint(path, device, threads, precision)
        return InferenceEngine(runner, runner.meta(), **kwargs)
    raise FabricadError(f"unknown backend {backend!r}: use auto, onnx or torch")
