"""Memory and time to load a tiled test set: each tile cut from its own decode of the source
(before 2026-12-01) vs one decode per source (`ImageDataset.image` now).

    python benchmarks/dataset_memory.py [--fabric 02]

Each way runs in its own process, so each peak resident set is its own; the baseline is the
same process with the dataset listed but no image loaded.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(fabric: str, way: str) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from aitex import data_root

    from fabricad.data import load_dataset
    from fabricad.data.images import resize
    from fabricad.training.dataset import ImageDataset

    split = load_dataset(data_root(), fabric)
    dataset = ImageDataset(split.test, (256, 256))
    started = time.perf_counter()
    if way == "per tile":  # what ImageDataset.image did: the tile of a fresh decode, kept
        kept = [resize(sample.load(), dataset.size) for sample in split.test]
    elif way == "per source":
        kept = [dataset.image(i) for i in range(len(dataset))]
    else:
        kept = []
    return {"tiles": len(kept), "seconds": time.perf_counter() - started,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fabric", default="02")
    parser.add_argument("--way", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(json.dumps(measure(args.fabric, args.way)))
        return
    rows = {}
    for way in ("baseline", "per tile", "per source"):
        out = subprocess.run([sys.executable, __file__, "--fabric", args.fabric, "--way", way],
                             capture_output=True, text=True, check=True).stdout
        rows[way] = json.loads(out.strip().splitlines()[-1])
    base = rows.pop("baseline")["peak_mb"]
    print(f"AITEX fabric {args.fabric}, test tiles at 256²:\n\n| decode | tiles | seconds | peak memory above the baseline |\n|---|---|---|---|")
    for way, row in rows.items():
        print(f"| {way} | {row['tiles']} | {row['seconds']:.1f} | {row['peak_mb'] - base:.0f} MB |")


if __name__ == "__main__":
    main()
