"""Backends run a batch of uint8 NHWC RGB images through a model: PyTorch or ONNX Runtime.

Both return (maps (B, H, W) float32, scores (B,) float32) for input-sized images; tiling,
thresholds and regions live in the engine above them, identical for every backend.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from fabricad.errors import FabricadError
from fabricad.export.bundle import BundleMeta, read_bundle
from fabricad.inference.ort_session import Spinning, session_options

log = logging.getLogger(__name__)

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDER_ALIASES = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


class OnnxBackend:
    def __init__(self, bundle: str | Path, providers: list[str] | None = None, threads: int | None = None,
                 trt_cache: str | Path | None = None, spinning: Spinning = "during_run"):
        import onnxruntime as ort

        self.meta, model_path = read_bundle(bundle)
        available = ort.get_available_providers()
        wanted = [PROVIDER_ALIASES.get(p.lower(), p) for p in providers] if providers else None
        if wanted:
            missing = [p for p in wanted if p not in available]
            if missing:
                raise FabricadError(
                    f"ONNX Runtime provider(s) {', '.join(missing)} not available here (available: {', '.join(available)}). "
                    "For CUDA/TensorRT install onnxruntime-gpu (pip install 'fabricad[gpu]') on a machine with an NVIDIA driver."
                )
            chosen = wanted
        else:
            chosen = [p for p in PROVIDER_ORDER if p in available]
        options = session_options(threads, spinning)
        provider_options = []
        for p in chosen:
            if p == "TensorrtExecutionProvider":
                cache = Path(trt_cache or Path(model_path).parent / "trt_cache")
                cache.mkdir(parents=True, exist_ok=True)
                provider_options.append({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                                         "trt_fp16_enable": self.meta.precision != "fp32"})
            else:
                provider_options.append({})
        self.session = ort.InferenceSession(str(model_path), options, providers=chosen, provider_options=provider_options)
        self.providers = self.session.get_providers()
        if wanted and self.providers[0] != wanted[0]:
            # ORT falls back silently when a provider fails to initialise; a user who asked for a GPU must know.
            raise FabricadError(f"requested {wanted[0]} but ONNX Runtime initialised {self.providers[0]} (driver or library missing?)")
        self.name = f"onnxruntime[{self.providers[0].removesuffix('ExecutionProvider')}]"
        self.input_size = (self.meta.input.height, self.meta.input.width)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps, scores = self.session.run(["anomaly_map", "score"], {"image": images})
        return maps[:, 0].astype(np.float32, copy=False), scores.astype(np.float32, copy=False)


class TorchBackend:
    def __init__(self, checkpoint: str | Path, device: str = "auto", threads: int | None = None,
                 precision: str = "fp32"):
        import torch

        from fabricad.training import load_model
        from fabricad.training.device import select_device

        if threads:
            torch.set_num_threads(threads)
        self.device = select_device(device)
        if precision not in ("fp32", "fp16"):
            raise FabricadError(f"PyTorch precision must be fp32 or fp16 (got {precision!r}); int8 is an ONNX bundle's")
        if precision == "fp16" and self.device.type != "cuda":
            raise FabricadError("fp16 inference needs a CUDA device; on CPUs export an int8 ONNX bundle instead")
        # Autocast rather than .half(): BatchNorm statistics and the map's blur and score stay in fp32.
        self.half = precision == "fp16"
        self.model, self.checkpoint = load_model(checkpoint)
        self.model.to(self.device).eval()
        self.name = f"pytorch[{self.device.type}{', fp16' if self.half else ''}]"
        self.input_size = tuple(self.checkpoint.config.data.image_size)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch  # here, not at the top: ONNX-only processes (the service) never load torch

        with torch.inference_mode():
            x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
                maps, scores = self.model(x)
            return maps[:, 0].float().cpu().numpy(), scores.float().cpu().numpy()

    def meta(self) -> BundleMeta:
        """Bundle-equivalent metadata, so the engine treats both backends alike."""
        from fabricad.export.onnx_export import bundle_meta

        ckpt = self.checkpoint
        name = Path(os.fspath(ckpt.config.data.path or "model")).name
        return bundle_meta(ckpt, ckpt.score_stats.get("scores") or [], name=name, opset=0)
