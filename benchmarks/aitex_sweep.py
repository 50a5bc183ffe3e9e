"""AITEX-256 sweep: configurations × seeds × fabrics, several jobs at once, one summary table.

    python benchmarks/aitex_sweep.py --out runs/sweep --jobs 6 --seeds 0 1 \\
        --variant "lite0:model.teacher.name=tf_efficientnet_lite0;train.max_steps=1000" \\
        --variant "lite1:model.teacher.name=tf_efficientnet_lite1;train.max_steps=700"
    python benchmarks/aitex_sweep.py --out runs/sweep --summary     # table of what has finished

Each job trains and evaluates one (variant, seed, fabric) with `aitex.py`'s `run_fabric` in its
own process. A result is appended to OUT/results.jsonl as soon as its job ends, so a sweep cut
short keeps what finished and a re-run skips it. Made for a GPU host, where many small jobs share
one GPU; on a CPU use --jobs 1. Step budgets (`train.max_steps`) rather than minutes make a GPU
sweep stand for what a 2-core PC trains in its time budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aitex import KEYS  # noqa: E402

FABRICS = ("00", "01", "02", "03", "04", "06")


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, overrides = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"variant {text!r} must look like NAME:key=value;key=value")
    return name, [o.strip() for o in overrides.split(";") if o.strip()]


def run_job(variant: str, overrides: list[str], seed: int, fabric: str, out: Path, threads: int) -> dict:
    import torch
    from aitex import run_fabric

    torch.set_num_threads(threads)
    started = time.perf_counter()
    job = {"variant": variant, "seed": seed, "fabric": fabric}
    try:
        rows = run_fabric(fabric, [*overrides, f"train.seed={seed}"], out / variant / f"seed{seed}", baseline=False,
                          report=False, progress=False)
        metrics = next(iter(rows.values()))
        job.update({k: metrics.get(k) for k in (*KEYS, "train_seconds", "steps", "epochs", "seconds_per_image")})
    except Exception:  # one failed job must not end the sweep; its traceback is kept
        job["error"] = traceback.format_exc(limit=5)
    job["job_seconds"] = time.perf_counter() - started
    return job


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(results: list[dict]) -> str:
    done = [r for r in results if "error" not in r]
    variants = list(dict.fromkeys(r["variant"] for r in done))
    lines = ["| variant | seeds | fabrics | " + " | ".join(KEYS) + " | steps | train s (here) |",
             "|---" * (len(KEYS) + 5) + "|"]
    per_fabric = ["| variant | fabric | seeds | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 3) + "|"]
    for variant in variants:
        rows = [r for r in done if r["variant"] == variant]
        fabrics = sorted({r["fabric"] for r in rows})
        seeds = sorted({r["seed"] for r in rows})
        # Mean over fabrics per seed, then mean ± sd over the seeds that covered every fabric.
        complete = [s for s in seeds if {r["fabric"] for r in rows if r["seed"] == s} == set(fabrics)]
        cells = []
        for key in KEYS:
            means = [np.mean([r[key] for r in rows if r["seed"] == s and r.get(key) is not None]) for s in complete]
            cells.append(f"{np.mean(means):.3f} ± {np.std(means):.3f}" if means else "n/a")
        lines.append(f"| {variant} | {len(complete)} | {len(fabrics)} | " + " | ".join(cells)
                     + f" | {np.mean([r['steps'] for r in rows]):.0f} | {np.mean([r['train_seconds'] for r in rows]):.0f} |")
        for fabric in fabrics:
            cell = [r for r in rows if r["fabric"] == fabric]
            values = " | ".join(f"{np.mean([r[k] for r in cell if r.get(k) is not None]):.3f}"
                                if any(r.get(k) is not None for r in cell) else "n/a" for k in KEYS)
            per_fabric.append(f"| {variant} | {fabric} | {len(cell)} | {values} |")
    failed = [r for r in results if "error" in r]
    tail = [f"\n{len(failed)} job(s) failed: " + ", ".join(f"{r['variant']}/seed{r['seed']}/{r['fabric']}" for r in failed)] if failed else []
    return "\n".join([*lines, "", *per_fabric, *tail])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[], help="NAME:override;override")
    parser.add_argument("--set", dest="common", action="append", default=[], help="override for every variant")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--fabrics", nargs="+", default=list(FABRICS))
    parser.add_argument("--jobs", type=int, default=1, help="jobs at once")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per job")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--summary", action="store_true", help="only print the table of finished jobs")
    args = parser.parse_args()
    results_path = args.out / "results.jsonl"
    if args.summary:
        print(summary(read_results(results_path)))
        return
    if not args.variant:
        parser.error("give at least one --variant")
    args.out.mkdir(parents=True, exist_ok=True)
    finished = {(r["variant"], r["seed"], r["fabric"]) for r in read_results(results_path) if "error" not in r}
    # Seed-major order: if the sweep is cut short, every variant has its first seed on every fabric.
    todo = [(name, overrides, seed, fabric) for seed in args.seeds for name, overrides in args.variant
            for fabric in args.fabrics if (name, seed, fabric) not in finished]
    print(f"{len(todo)} job(s), {args.jobs} at once; results in {results_path}", flush=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = [pool.submit(run_job, name, [*args.common, *overrides], seed, fabric, args.out, args.threads)
                   for name, overrides, seed, fabric in todo]
        for future in as_completed(futures):
            job = future.result()
            with results_path.open("a") as f:
                f.write(json.dumps(job) + "\n")
            state = "FAILED" if "error" in job else " ".join(f"{k}={job[k]:.3f}" for k in KEYS if job.get(k) is not None)
            print(f"{job['variant']} seed{job['seed']} {job['fabric']}: {state} ({job['job_seconds']:.0f} s)", flush=True)
    text = summary(read_results(results_path))
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
