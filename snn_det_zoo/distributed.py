"""The process group ``torchrun`` describes, as the benchmark and the trainer use it.

Outside ``torchrun`` (no ``RANK``/``WORLD_SIZE`` in the environment) everything is a single process: rank 0 of
a world of 1, and the collectives are identities.
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["barrier", "gather_objects", "init_from_env", "local_rank", "rank_and_world"]


def init_from_env(device: str) -> None:
    """Join the process group ``torchrun`` describes in the environment (once): NCCL for CUDA, else gloo."""
    import torch.distributed as dist

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend)


def local_rank() -> int:
    """This process's index on its node (``LOCAL_RANK``, 0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    import torch.distributed as dist

    _, world = rank_and_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    import torch.distributed as dist

    if rank_and_world()[1] > 1:
        dist.barrier()
