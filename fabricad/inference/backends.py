"""Backends run a batch of uint8 NHWC RGB images through a model: ONNX Runtime here, PyTorch in
`fabricad.training.torch_backend` (the training side; this runtime never imports torch).

Both return (maps (B, H, W) float32, scores (B,) float32) for input-sized images; tiling,
thresholds and regions live in the engine above them, identical for every backend.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fabricad.errors import FabricadError
from fabricad.inference.bundle import BundleMeta, read_bundle
from fabricad.inference.ort_session import Spinning, session_options

log = logging.getLogger(__name__)

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDER_ALIASES = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


class OnnxBackend:
    def __init__(self, bundle: str | Path | None, providers: list[str] | None = None, threads: int | None = None,
                 trt_cache: str | Path | None = None, spinning: Spinning = "during_run",
                 graph: tuple[BundleMeta, Path] | None = None):
        """`bundle`: an exported bundle folder; or `graph`: the metadata and graph file of one
        being written (export calibrates the threshold on the graph it ships)."""
        import onnxruntime as ort

        self.meta, model_path = graph if graph is not None else read_bundle(bundle)
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
