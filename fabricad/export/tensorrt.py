"""TensorRT engines, built through what is installed: ONNX Runtime's TensorRT execution
provider (engine cached inside the bundle) or NVIDIA's `trtexec` (a `model.plan` file).
Where neither exists the caller gets an error that says so; nothing pretends to have built one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from fabricad.errors import FabricadError
from fabricad.inference.bundle import read_bundle


def tensorrt_route() -> str | None:
    try:
        import onnxruntime as ort

        if "TensorrtExecutionProvider" in ort.get_available_providers():
            return "onnxruntime"
    except ImportError:
        pass
    return "trtexec" if shutil.which("trtexec") else None


def require_tensorrt() -> str:
    route = tensorrt_route()
    if route is None:
        raise FabricadError(
            "TensorRT is not available on this machine: ONNX Runtime has no TensorrtExecutionProvider "
            "(install onnxruntime-gpu with TensorRT libraries) and `trtexec` is not on PATH. "
            "Export with --format onnx and run it on CPU or CUDA instead."
        )
    return route


def build_engine(bundle: Path, max_batch: int = 16, fp16: bool = True, route: str | None = None) -> Path:
    """Build (and cache) a TensorRT engine for the bundle; returns the engine's location.
    `route="trtexec"` forces a standalone `model.plan` (what Triton's TensorRT backend loads)."""
    route = route or require_tensorrt()
    meta, model_path = read_bundle(bundle)
    h, w = meta.graph_input
    if route == "onnxruntime":
        from fabricad.inference.backends import OnnxBackend

        backend = OnnxBackend(bundle, providers=["tensorrt", "cuda", "cpu"])
        for batch in (1, max_batch):  # build profiles for the batch sizes the line uses
            backend(np.zeros((batch, h, w, 3), np.uint8))
        return bundle / "trt_cache"
    plan = bundle / "model.plan"
    command = [
        "trtexec", f"--onnx={model_path}", f"--saveEngine={plan}",
        f"--minShapes=image:1x{h}x{w}x3", f"--optShapes=image:{max_batch}x{h}x{w}x3", f"--maxShapes=image:{max_batch}x{h}x{w}x3",
    ] + (["--fp16"] if fp16 else [])
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FabricadError(f"trtexec failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return plan
