"""Training on several GPUs or nodes: `torchrun` starts one process per device; each process
reads its place from the environment (WORLD_SIZE, RANK, LOCAL_RANK) and joins the process group.

    torchrun --nproc-per-node 4 -m fabricad.cli train --data … --out runs/x
    torchrun --nnodes 2 --node-rank 0 --master-addr host0 --nproc-per-node 8 -m fabricad.cli train …

The data is sharded so that every (rank, micro-batch) pair sees a disjoint slice of the same
seeded permutation: N processes × batch b give exactly the gradient of one process with batch b
and N accumulation steps (`train.accumulate`), which is what the tests check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistributedContext:
        return cls(int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)))

    def device(self, requested: torch.device) -> torch.device:
        """Each process takes its own GPU; CPU processes share the CPU."""
        if self.enabled and requested.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return requested

    def start(self, device: torch.device) -> None:
        if self.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """BatchNorm running statistics drift apart per process; rank 0's are the model's."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def mean(self, value: float, device: torch.device) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size


class DistillationStep(torch.nn.Module):
    """The training forward as a module: DistributedDataParallel synchronises gradients through
    a module's forward, and the model's is inference (map and score), not the loss."""

    def __init__(self, model: torch.nn.Module, hard_fraction: float = 1.0):
        super().__init__()
        self.model = model
        self.hard_fraction = hard_fraction

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        from fabricad.models.loss import distillation_loss

        teacher, student = self.model.distill(batch)
        return distillation_loss(teacher, student, self.hard_fraction)
