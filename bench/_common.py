"""What every bench script reports and needs: the machine it ran on, and a device synchronisation
before reading a timer."""

from __future__ import annotations

import json
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


def emit(report: dict, as_json: bool) -> None:
    """Print a bench's report: one JSON object (``--json``) or one ``key: value`` line per entry."""
    if as_json:
        print(json.dumps(report))
        return
    width = max(map(len, report)) + 2
    for key, value in report.items():
        print(f"{key:>{width}}: {value:.4g}" if isinstance(value, float) else f"{key:>{width}}: {value}")
