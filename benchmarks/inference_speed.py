"""Inference speed, side by side in one run: PyTorch eager vs ONNX Runtime fp32 and INT8 vs
OpenVINO fp32 and INT8 (the same two bundles) and OpenVINO's own INT8 (`fabricad export --format
openvino`, NNCF); the OpenVINO rows are skipped when it (or NNCF) is not installed.

    python -m benchmarks.inference_speed --model runs/bench-aitex/02/rd [--data ../shared/data/aitex --category 02]

Measures throughput at batch 1 and 16 on tiles at the graph's input (a tile and its context),
and a 4096x256 scan end to end (PNG bytes -> decode -> tiles -> verdict) through the engine, also
as Mpx/s and Mpx/s per core (what a line needs: a 2 m loom at 0.25 mm/px and 30 m/min is
16 Mpx/s). The tile image AUROC of every bundle row on that category's test tiles, each scored
inside its scan as `fabricad eval` scores it. Prints a Markdown table; --write appends it to a file.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.common import emit, machine
from fabricad.data import load_dataset
from fabricad.data.images import decode_image
from fabricad.errors import FabricadError
from fabricad.export.onnx_export import export_bundle
from fabricad.export.openvino_export import export_openvino
from fabricad.inference.backends import OnnxBackend, OpenVinoBackend
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.metrics import auroc
from fabricad.inference.scoring import score_samples
from fabricad.training import load_model
from fabricad.training.torch_backend import TorchBackend
from fabricad.training.trainer import holdout_split


def throughput(run, batch: np.ndarray, seconds: float = 8.0) -> float:
    """Images per second, after a warm-up, over at least `seconds`."""
    run(batch)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(batch)
        count += len(batch)
    return count / (time.perf_counter() - started)


def median_ms(call, repeats: int) -> float:
    """Median wall time of `call()` in milliseconds, after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def scan_latency(engine: InferenceEngine, png: bytes, repeats: int = 10) -> float:
    """A wide scan end to end: PNG bytes → decode → tiles → verdict."""
    return median_ms(lambda: engine.inspect(decode_image(png)), repeats)


def test_tiles(samples, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NHWC tiles at the network's size, labels) of a test split."""
    h, w = size
    return np.stack([cv2.resize(s.load(), (w, h)) for s in samples]), np.array([s.label for s in samples])


def tile_auroc(scores_of, tiles: np.ndarray, labels: np.ndarray, batch: int = 16) -> float:
    """Tile image AUROC of `scores_of(uint8 batch) -> scores`, run in batches."""
    return auroc(labels, np.concatenate([scores_of(tiles[i : i + batch]) for i in range(0, len(tiles), batch)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint (folder)")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--category")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=8.0, help="per throughput figure")
    parser.add_argument("--repeats", type=int, default=10, help="scans timed per backend (the median is reported)")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, ckpt = load_model(args.model)
    data = args.data or Path(ckpt.config.data.path)
    category = args.category or ckpt.config.data.category
    split = load_dataset(data, category)
    train_samples, holdout = holdout_split(split.train, ckpt.config)
    tmp = Path(tempfile.mkdtemp())
    export_bundle(model, ckpt, tmp / "fp32")
    export_bundle(model, ckpt, tmp / "int8", precision="int8", calibration_samples=train_samples, holdout_samples=holdout)

    backends = {
        "PyTorch eager": TorchBackend.from_checkpoint(args.model, "cpu", args.threads),
        "ONNX Runtime fp32": OnnxBackend(tmp / "fp32", ["cpu"], args.threads),
        "ONNX Runtime INT8": OnnxBackend(tmp / "int8", ["cpu"], args.threads),
    }
    try:
        backends["OpenVINO fp32"] = OpenVinoBackend(tmp / "fp32", args.threads)
        backends["OpenVINO INT8"] = OpenVinoBackend(tmp / "int8", args.threads)
        backends["OpenVINO NNCF INT8"] = OpenVinoBackend(
            export_openvino(args.model, tmp / "nncf", data=data, category=category, progress=False), args.threads)
    except FabricadError as exc:  # not installed: the rows before it
        print(f"OpenVINO rows skipped: {exc}", flush=True)
    h, w = backends["ONNX Runtime fp32"].input_size
    pad = backends["ONNX Runtime fp32"].meta.preprocess.context  # a tile goes in with this much of its neighbours
    rng = np.random.default_rng(0)
    tiles = np.stack([cv2.resize(train_samples[i % len(train_samples)].load(), (w + 2 * pad, h + 2 * pad)) for i in range(16)])
    wide = next((s.path for s in split.test if s.crop is not None), None)
    png = wide.read_bytes() if wide else cv2.imencode(".png", rng.integers(0, 255, (h, 16 * w, 3), dtype=np.uint8))[1].tobytes()
    rows, engines = {}, {}
    for name, backend in backends.items():
        meta = backend.meta() if isinstance(backend, TorchBackend) else backend.meta
        engine = engines[name] = InferenceEngine(backend, meta, batch_size=16)
        rows[name] = {
            "b1": throughput(backend, tiles[:1], args.seconds),
            "b16": throughput(backend, tiles, args.seconds),
            "scan_ms": scan_latency(engine, png, args.repeats),
        }
        print(name, rows[name], flush=True)

    # Each test tile scored inside its scan, as `fabricad eval` and the product score it (its real
    # neighbours as context, the scan's texture alignment, fabric edges): a tile cut out alone
    # loses that and ranks far lower (fabric 02: 0.67 against 0.89), which says nothing of a backend.
    labels = np.array([s.label for s in split.test])
    auroc_rows = {name: auroc(labels, score_samples(engines[name], split.test).scores)
                  for name, backend in backends.items() if not isinstance(backend, TorchBackend)}
    scan_height, scan_width = decode_image(png).shape[:2]
    megapixels = scan_height * scan_width / 1e6

    base = rows["PyTorch eager"]
    lines = [
        f"\n## Inference speed ({machine(args.threads)}, torch {torch.__version__})\n",
        f"Command: `python -m benchmarks.inference_speed --model {args.model}` — model `{ckpt.config.model.name}` "
        f"with `{ckpt.teacher['name']}` at {h}x{w}, test tiles of {split.name}.\n",
        f"| backend | tiles/s batch 1 | tiles/s batch 16 | ×PyTorch (b16) | {megapixels:.2f} Mpx scan end to end, ms | "
        "Mpx/s | Mpx/s per core | tile image AUROC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        value = auroc_rows.get(name)
        rate = megapixels / (r["scan_ms"] / 1000)
        lines.append(f"| {name} | {r['b1']:.1f} | {r['b16']:.1f} | {r['b16'] / base['b16']:.2f} | {r['scan_ms']:.0f} | "
                     f"{rate:.2f} | {rate / args.threads:.2f} | {f'{value:.4f}' if value is not None else '—'} |")
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
