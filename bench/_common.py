"""What every bench script reports and needs: the machine it ran on, and a device synchronisation
before reading a timer."""

from __future__ import annotations

import os
import platform

import torch


def machine() -> str:
    """Processor, CPU count, torch version and the GPU's name when there is one."""
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}{gpu}"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
