"""One process of a distributed training run (started by torchrun in test_training's DDP test):
trains with the arguments given and writes this rank's weights digest."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from fabricad.config import FabricadConfig
from fabricad.training import train


def main(data: str, out: str, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    config = FabricadConfig().with_overrides([f"data.path={data}", *overrides])
    result = train(config, out, progress=False)
    rank = int(os.environ.get("RANK", 0))
    Path(out, f"digest-rank{rank}.txt").write_text(result.weights_digest)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
