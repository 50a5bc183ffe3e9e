"""A screening cascade, measured before it is built: what a cheap pass over every tile would cost,
and what it would lose, if only the tiles it flags went through the full model.

    python -m benchmarks.cascade --runs runs/bench-aitex [--fabrics 02 03] [--write BENCHMARKS.md]

The screen is the cheapest signal the model already computes: its own frozen teacher, stopped at
stride 8 (the finest scale the map uses), and each position's distance to the nearest of 64
prototypes of the training tiles' features (k-means: a PatchCore-like memory, small enough to be
a few matrix products). A tile's screen score is its largest distance. The screen's threshold is
set on the held-out normal tiles to pass a share of them (`--pass`); on the test tiles, a tile the
screen passes keeps the full model's score and the others score below every passed tile. Figures:
the screen's own tile AUROC, the share of test normals and of defective tiles it passes, the
cascade's tile AUROC beside the full model's, and the throughput the cascade would have, from the
screen's graph and the full graph timed in ONNX Runtime in the same run:
1 / (screen cost + share of tiles passed), in units of the full model's throughput.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from sklearn.cluster import MiniBatchKMeans

from benchmarks.common import emit, machine
from fabricad.backbones import TeacherEncoder
from fabricad.backbones.teacher import feature_strides
from fabricad.data import load_dataset
from fabricad.data.holdout import holdout_split
from fabricad.export.onnx_export import export_fp32
from fabricad.inference.metrics import auroc
from fabricad.inference.scoring import score_samples
from fabricad.training import load_model
from fabricad.training.dataset import ImageDataset
from fabricad.training.torch_backend import checkpoint_engine

STRIDE, PROTOTYPES = 8, 64


def screen_teacher(checkpoint) -> TeacherEncoder:
    """The checkpoint's own teacher (same weights, verified by hash), stopped at stride 8."""
    config = checkpoint.config.model.teacher
    source = checkpoint.teacher["weights_source"]
    teacher = TeacherEncoder(config.model_copy(update={"weights": source.removeprefix("file:")}),
                             [feature_strides(config.name).index(STRIDE)])
    if teacher.weights_hash != checkpoint.teacher["sha256"]:
        raise SystemExit("the screen's teacher is not the model's")
    return teacher


def features(teacher: TeacherEncoder, samples, size, context: int) -> np.ndarray:
    """(N, C, h, w) stride-8 features of the samples' tiles, their context cut away."""
    dataset, out, cut = ImageDataset(samples, size, context=context), [], context // STRIDE
    with torch.no_grad():
        for start in range(0, len(dataset), 16):
            f = teacher(torch.stack([dataset[i] for i in range(start, min(start + 16, len(dataset)))]))[0]
            out.append(f[:, :, cut:f.shape[2] - cut, cut:f.shape[3] - cut].numpy() if cut else f.numpy())
    return np.concatenate(out)


def screen_scores(feats: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Each tile's largest squared distance to the nearest prototype."""
    n, c, h, w = feats.shape
    vectors = feats.transpose(0, 2, 3, 1).reshape(-1, c)
    near = np.concatenate([((vectors[i:i + 20000, None, :] - prototypes[None]) ** 2).sum(-1).min(1)
                           for i in range(0, len(vectors), 20000)])
    return near.reshape(n, h * w).max(1)


def tiles_per_second(session: ort.InferenceSession, feed: dict, seconds: float) -> float:
    session.run(None, feed)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feed)
        count += len(next(iter(feed.values())))
    return count / (time.perf_counter() - started)


def run_fabric(fabric: str, run: Path, passes: list[float], seconds: float, threads: int) -> list[str]:
    model, checkpoint = load_model(run)
    config = checkpoint.config
    size, context = tuple(config.data.image_size), config.model.context
    split = load_dataset(config.data.path, config.data.category)
    train, held_out = holdout_split(split.train, config)
    teacher = screen_teacher(checkpoint)
    vectors = features(teacher, train[::2], size, context)
    vectors = vectors.transpose(0, 2, 3, 1).reshape(-1, vectors.shape[1])
    vectors = vectors[np.random.default_rng(0).choice(len(vectors), min(len(vectors), 60000), replace=False)]
    prototypes = MiniBatchKMeans(PROTOTYPES, random_state=0, n_init=3, batch_size=4096).fit(vectors).cluster_centers_
    held, test = screen_scores(features(teacher, held_out, size, context), prototypes), \
        screen_scores(features(teacher, split.test, size, context), prototypes)
    full = score_samples(checkpoint_engine(model, checkpoint, "cpu", 16), split.test).scores
    labels = np.array([s.label for s in split.test])

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    height, width = size[0] + 2 * context, size[1] + 2 * context
    with tempfile.TemporaryDirectory() as tmp:
        example = torch.zeros(16, 3, height, width)
        torch.onnx.export(teacher, (example,), f"{tmp}/screen.onnx", dynamo=False, opset_version=17, input_names=["x"])
        export_fp32(model, size, Path(tmp) / "full.onnx")
        screen_rate = tiles_per_second(ort.InferenceSession(f"{tmp}/screen.onnx", options), {"x": example.numpy()}, seconds)
        full_rate = tiles_per_second(ort.InferenceSession(f"{tmp}/full.onnx", options),
                                     {"image": np.zeros((16, height, width, 3), np.uint8)}, seconds)
    cost = full_rate / screen_rate
    rows = [f"| {fabric} | full model | — | — | — | {auroc(labels, full):.4f} | 1.00 |",
            f"| {fabric} | screen alone | — | — | — | {auroc(labels, test):.4f} | {1 / cost:.2f} |"]
    for share in passes:
        passed = test > np.quantile(held, 1 - share)
        cascade = np.where(passed, full, full.min() - 1.0)
        normal_passed = float(passed[labels == 0].mean())
        rows.append(f"| {fabric} | cascade, {share:.0%} of held-out normals pass | {normal_passed:.2f} | "
                    f"{passed[labels == 1].mean():.2f} | {cost:.2f} | {auroc(labels, cascade):.4f} | "
                    f"{1 / (cost + float(passed.mean())):.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-aitex"), help="benchmarks.aitex's --out")
    parser.add_argument("--fabrics", nargs="+", default=["02", "03"])
    parser.add_argument("--pass", dest="passes", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for fabric in args.fabrics
            for row in run_fabric(fabric, args.runs / fabric / "rd", args.passes, args.seconds, args.threads)]
    lines = [f"## A screening cascade, measured ({machine(args.threads)})", "",
             f"`python -m benchmarks.cascade --runs {args.runs} --fabrics {' '.join(args.fabrics)}`: the screen is the "
             f"model's teacher to stride {STRIDE} and each position's distance to the nearest of {PROTOTYPES} k-means "
             "prototypes of the training tiles; its threshold passes a share of the held-out normal tiles. Throughput in "
             "units of the full model's (ONNX Runtime fp32, batch 16, same run): 1 / (screen cost + share passed).", "",
             "| fabric | pass | test normals passed | defective tiles passed | screen cost (× full) | tile AUROC | "
             "throughput (× full) |", "|---|---|---|---|---|---|---|", *rows]
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
