"""What runs the frozen teacher, side by side in one run: PyTorch eager vs ONNX Runtime.

    python benchmarks/teacher_runtime.py [--fabric 03] [--steps 48] [--tiles 64] [--write BENCHMARKS.md]

For each `train.teacher_runtime` (torch, onnxruntime), in the same process and on the same data:
the real `fabricad train` loop for `--steps` steps of the default configuration (data loading,
augmentation, the held-out pass at each epoch's end included: what a user waits for), then
evaluation of the trained model on `--tiles` test tiles (ms per tile, after one warm-up batch
that builds the ONNX Runtime session: a few seconds once per model and input size). The two runtimes alternate
twice (torch, ORT, torch, ORT) so a drift of the machine's speed shows instead of favouring one.
Uses the AITEX fabric when the data is there, else a generated twill.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import torch

from fabricad.config import FabricadConfig
from fabricad.data import load_dataset
from fabricad.evaluation.evaluate import predict
from fabricad.training import load_model, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import data_root  # noqa: E402
from service_load import emit  # noqa: E402

RUNTIMES = ("torch", "onnxruntime")


def dataset_overrides(fabric: str, work: Path) -> tuple[list[str], str]:
    if data_root().is_dir():
        return [f"data.path={data_root()}", f"data.category={fabric}"], f"AITEX fabric {fabric} (256² tiles)"
    from fabricad.data.synthetic import generate_category

    category = generate_category(work / "synthetic", "twill", size=(256, 256), n_train=48, n_test_good=16,
                                 n_test_defect=16, progress=False)
    return [f"data.path={category}"], "generated twill, 256² (no AITEX data here)"


def one_round(runtime: str, overrides: list[str], steps: int, tiles: int, work: Path) -> tuple[float, float]:
    """(seconds per training step, ms per evaluated tile) with this teacher runtime."""
    config = FabricadConfig().with_overrides(
        [*overrides, "train.max_minutes=null", f"train.max_steps={steps}", f"train.teacher_runtime={runtime}"])
    result = train(config, work / runtime, progress=True)
    model, ckpt = load_model(result.checkpoint)
    model.teacher.use_runtime(runtime, torch.device("cpu"))
    split = load_dataset(config.data.path, config.data.category)
    size = ckpt.config.data.image_size
    predict(model, split.test[:8], size, batch_size=8, progress=False)  # builds the ORT session: not timed
    predictions = predict(model, split.test[:tiles], size, batch_size=8, progress=False)
    return result.seconds / result.steps, 1000 * predictions.seconds_per_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fabric", default="03")
    parser.add_argument("--steps", type=int, default=48, help="training steps per round (AITEX: 24 per epoch)")
    parser.add_argument("--tiles", type=int, default=64, help="test tiles evaluated per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    measured: dict[str, list[tuple[float, float]]] = {r: [] for r in RUNTIMES}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        overrides, what = dataset_overrides(args.fabric, work)
        for round_ in range(args.rounds):
            for runtime in RUNTIMES:
                measured[runtime].append(one_round(runtime, overrides, args.steps, args.tiles, work / str(round_)))
                print(runtime, measured[runtime][-1], flush=True)

    step = {r: float(np.median([m[0] for m in measured[r]])) for r in RUNTIMES}
    tile = {r: float(np.median([m[1] for m in measured[r]])) for r in RUNTIMES}
    rows = [f"| {r} | {step[r]:.2f} ({', '.join(f'{m[0]:.2f}' for m in measured[r])}) | {840 / step[r]:.0f} | "
            f"{tile[r]:.0f} ({', '.join(f'{m[1]:.0f}' for m in measured[r])}) |" for r in RUNTIMES]
    emit("\n".join([
        f"Command: `python benchmarks/teacher_runtime.py --fabric {args.fabric} --steps {args.steps} --tiles {args.tiles}` "
        f"({date.today()}, {platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}); data: {what}; the default configuration otherwise.",
        "",
        "| teacher runtime | s per training step (median; rounds) | steps in 14 min | eval ms per tile, batch 8 (median; rounds) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"ONNX Runtime vs PyTorch: training steps {step['torch'] / step['onnxruntime']:.2f}× as fast, "
        f"evaluation {tile['torch'] / tile['onnxruntime']:.2f}× as fast.",
    ]), args.write)


if __name__ == "__main__":
    main()
