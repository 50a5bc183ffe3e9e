"""GPU inference speed, side by side in one run: PyTorch CUDA fp32 and fp16, ONNX Runtime's CUDA
and TensorRT providers where installed, and the CPU backends of the same machine for scale.

    python -m benchmarks.gpu_speed --model runs/bench-aitex/02/rd [--data DIR --category C] [--write BENCHMARKS.md]

A backend that cannot run on the machine gets a row with the reason — the message a user would
see — never a made-up figure. Per backend: tiles/s at batch 1, 16 and 64, median batch-1
latency, a 4096x256 scan end to end through the engine (decode → tiles → verdict), the largest
anomaly-map difference from PyTorch CUDA fp32 on 16 tiles, and tile image AUROC on the test set.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.common import emit
from benchmarks.inference_speed import (
    median_ms,
    scan_latency,
    test_tiles,
    throughput,
    tile_auroc,
)
from fabricad.data import load_dataset
from fabricad.export.onnx_export import export_bundle
from fabricad.export.tensorrt import tensorrt_route
from fabricad.inference.backends import OnnxBackend
from fabricad.inference.engine import InferenceEngine
from fabricad.training import load_model
from fabricad.training.torch_backend import TorchBackend
from fabricad.training.trainer import holdout_split


def machine() -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    try:
        import onnxruntime as ort

        ort_text = f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())})"
    except ImportError:
        ort_text = "no onnxruntime"
    trt = tensorrt_route() or "no TensorRT (no ORT TensorRT provider, no trtexec)"
    return f"{gpu}; {os.cpu_count()} CPU threads; torch {torch.__version__}; {ort_text}; TensorRT route: {trt}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint (folder)")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--category")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput figure")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    model, ckpt = load_model(args.model)
    split = load_dataset(args.data or Path(ckpt.config.data.path), args.category or ckpt.config.data.category)
    train_samples, holdout = holdout_split(split.train, ckpt.config)
    tmp = Path(tempfile.mkdtemp())
    export_bundle(model, ckpt, tmp / "fp32", holdout_samples=holdout)
    export_bundle(model, ckpt, tmp / "fp16", precision="fp16", holdout_samples=holdout)

    candidates = {
        "PyTorch CUDA fp32": lambda: TorchBackend.from_checkpoint(args.model, "cuda"),
        "PyTorch CUDA fp16 (autocast)": lambda: TorchBackend.from_checkpoint(args.model, "cuda", precision="fp16"),
        "ONNX Runtime CUDA fp32": lambda: OnnxBackend(tmp / "fp32", ["cuda"]),
        "ONNX Runtime CUDA fp16": lambda: OnnxBackend(tmp / "fp16", ["cuda"]),
        "ONNX Runtime TensorRT fp16": lambda: OnnxBackend(tmp / "fp16", ["tensorrt"], trt_cache=tmp / "trt"),
        "PyTorch CPU fp32": lambda: TorchBackend.from_checkpoint(args.model, "cpu", threads),
        "ONNX Runtime CPU fp32": lambda: OnnxBackend(tmp / "fp32", ["cpu"], threads),
    }
    h, w = ckpt.config.data.image_size
    tiles = np.stack([cv2.resize(train_samples[i % len(train_samples)].load(), (w, h)) for i in range(64)])
    wide = next((s.path for s in split.test if s.crop is not None), None)  # a scan of a tiled dataset
    noise = np.random.default_rng(0).integers(0, 255, (h, 16 * w, 3), dtype=np.uint8)
    png = wide.read_bytes() if wide else cv2.imencode(".png", noise)[1].tobytes()
    images, labels = test_tiles(split.test, (h, w))
    rows: dict[str, dict] = {}
    reference = None
    for name, make in candidates.items():
        try:
            started = time.perf_counter()
            backend = make()
            backend(tiles[:1])  # first run: CUDA context, cuDNN autotune, TensorRT engine build
            setup_s = time.perf_counter() - started
        except Exception as exc:  # the row records why this backend cannot run here
            rows[name] = {"error": str(exc).splitlines()[0]}
            print(name, "unavailable:", rows[name]["error"], flush=True)
            continue
        maps = backend(tiles[:16])[0]
        reference = maps if reference is None else reference
        meta = backend.meta() if isinstance(backend, TorchBackend) else backend.meta
        engine = InferenceEngine(backend, meta, batch_size=16)
        rows[name] = {
            "setup_s": setup_s,
            "b1": throughput(backend, tiles[:1], args.seconds),
            "b16": throughput(backend, tiles[:16], args.seconds),
            "b64": throughput(backend, tiles, args.seconds),
            "lat_ms": median_ms(lambda run=backend: run(tiles[:1]), 50),
            "scan_ms": scan_latency(engine, png),
            "diff": float(np.abs(maps - reference).max()),
            "auroc": tile_auroc(lambda b, run=backend: run(b)[1], images, labels, batch=64),
        }
        print(name, rows[name], flush=True)
        del backend, engine
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    base = next((r for r in rows.values() if "b16" in r), None)
    lines = [
        f"\n## GPU inference speed ({date.today().isoformat()}, {platform.machine()})\n",
        f"Command: `python -m benchmarks.gpu_speed --model {args.model}` — `{ckpt.config.model.name}` with "
        f"`{ckpt.teacher['name']}` at {h}x{w}, test tiles of {split.name}. Machine: {machine()}.\n",
        "| backend | tiles/s b1 | tiles/s b16 | tiles/s b64 | ×first row (b64) | b1 latency ms | 4096-wide scan ms | "
        "max Δmap | tile AUROC | first call s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | not available here: {r['error']} | | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {r['b1']:.0f} | {r['b16']:.0f} | {r['b64']:.0f} | {r['b64'] / base['b64']:.2f} | {r['lat_ms']:.2f} | "
            f"{r['scan_ms']:.0f} | {r['diff']:.1e} | {r['auroc']:.4f} | {r['setup_s']:.1f} |"
        )
    emit("\n".join(lines), args.write)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
