"""Backends run a batch of uint8 NHWC RGB images through a model: ONNX Runtime and OpenVINO here,
PyTorch in `fabricad.training.torch_backend` (the training side; this runtime never imports torch).

Both return (maps (B, H, W) float32, scores (B,) float32) for input-sized images; tiling,
thresholds and regions live in the engine above them, identical for every backend.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from fabricad.errors import FabricadError, missing_extra
from fabricad.inference.bundle import BundleMeta, is_openvino_ir, read_bundle
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
        if is_openvino_ir(self.meta):
            raise FabricadError(f"{bundle} is an OpenVINO IR (fabricad export --format openvino): it runs on OpenVINO, not "
                                "ONNX Runtime (FABRICAD_RUNTIME=openvino, predict --backend openvino)")
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


class OpenVinoBackend:
    """The bundle's own graph on Intel's OpenVINO runtime: fp32 as it is, INT8 bundles with their
    quantise/dequantise pairs run as integer kernels. On the 2-core EPYC VM its INT8 ran 1.5× ONNX
    Runtime's (BENCHMARKS.md, CPU inference); the maps are the same model's (a test compares them). `device`: CPU, GPU (Intel graphics), NPU, AUTO.

    One compiled model, one inference request per calling thread: a request is not thread-safe,
    and the service infers from several threads."""

    def __init__(self, bundle: str | Path, threads: int | None = None, device: str = "CPU"):
        try:
            import openvino as ov
        except ImportError:
            raise missing_extra("openvino") from None
        self.meta, model_path = read_bundle(bundle)
        core = ov.Core()
        wanted = device.upper()
        if wanted != "AUTO" and wanted.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
            raise FabricadError(f"OpenVINO device {device!r} is not available here (available: {', '.join(core.available_devices)})")
        # f32, not the bf16 OpenVINO picks by itself on CPUs with AMX: the bundle's threshold was
        # calibrated on f32 maps. "LATENCY": one frame's tiles at a time, as the line needs them.
        # The precision hint is a CPU property; GPUs and NPUs choose their own.
        config = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_PRECISION_HINT": "f32"} if wanted == "CPU" else {})}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(str(model_path), wanted, config)
        except RuntimeError as exc:
            raise FabricadError(f"OpenVINO cannot compile {model_path} for {wanted}: {str(exc).splitlines()[0]}") from None
        self._outputs = (self.compiled.output("anomaly_map"), self.compiled.output("score"))
        self._local = threading.local()
        self.name = f"openvino[{wanted}]"
        self.input_size = (self.meta.input.height, self.meta.input.width)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer({"image": np.ascontiguousarray(images)})
        maps, scores = result[self._outputs[0]], result[self._outputs[1]]
        # copies: the request's output buffers are overwritten by this thread's next call
        return maps[:, 0].astype(np.float32, copy=True), scores.astype(np.float32, copy=True)
