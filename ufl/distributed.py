"""torchrun support: process group set-up, rank queries and reductions of metric counts.

``torchrun --nproc_per_node N -m ufl <command>`` sets RANK / WORLD_SIZE / LOCAL_RANK; commands that
support it call :func:`init_distributed` once. gloo on CPU, nccl on CUDA. Without torchrun every
function here behaves as a single process (rank 0 of 1).
"""

from __future__ import annotations

import datetime
import os

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["init_distributed", "is_distributed", "rank", "world_size", "is_main", "barrier",
           "all_reduce_sum", "shutdown"]


def init_distributed(device: torch.device) -> bool:
    """Initialise the default process group when launched by torchrun; return True if distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30),
                            device_id=device if device.type == "cuda" else None)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """Sum a NumPy array over all processes (float64/int64 kept exact through float64 or int64)."""
    if not is_distributed():
        return array
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    array = np.asarray(array)
    tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)  # 0-d arrays come back 1-d
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy().reshape(array.shape)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
