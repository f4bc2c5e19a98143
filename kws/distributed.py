"""Where `kws train` runs: its device, and its place among processes started by PyTorch's `torchrun`.

Under `torchrun --nproc-per-node N` (and `--nnodes` for several machines) every process runs the same
`kws train` command; `torchrun` tells each its rank through the environment. Each process draws the
epoch's examples from the one global seed, trains on its share of every batch, and PyTorch's
DistributedDataParallel averages the gradients, so the processes hold the same weights after every step.
Only rank 0 writes checkpoints, metrics and progress. Backends: gloo on the CPU, NCCL on GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kws.errors import KwsError

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str) -> torch.device:
    """'auto': CUDA when PyTorch sees a GPU, else the CPU; 'cuda' without one is an error. Under torchrun
    each process on a machine takes the GPU of its local rank."""
    if name not in DEVICES:
        raise KwsError(f"--device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise KwsError("--device cuda: PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False)")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())


def pick_workers(workers: int | None, device: torch.device) -> int:
    """Processes that prepare batches (draw, augment, lay out sequences) beside training. None: 0 on the CPU,
    where a worker would take a core from the arithmetic; on a GPU, this process's share of the cores but
    one, at most 8, so the GPU does not wait for the CPU."""
    if workers is not None:
        if workers < 0:
            raise KwsError(f"--workers must be 0 or more, not {workers}")
        return workers
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(8, cores - 1))


@dataclass(frozen=True)
class World:
    """This process's rank among `size` training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def summed(self, *numbers: float) -> list[float]:
        """Each number added up over all processes (as they are, in a world of one)."""
        if self.size == 1:
            return list(numbers)
        values = torch.tensor(numbers, dtype=torch.float64)
        dist.all_reduce(values)
        return values.tolist()

    def wait_for_all(self) -> None:
        if self.size > 1:
            dist.barrier()


def join(device: torch.device) -> World:
    """This process's World: started by torchrun (WORLD_SIZE above 1), it joins the others' process group."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def leave(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
