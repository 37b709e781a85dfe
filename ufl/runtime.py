"""Where and how code runs: device choice, seeding, mixed precision.

CPU runs are reproducible bit for bit for a seed (deterministic algorithms, fixed seeds, per-epoch
generators); CUDA runs use AMP (bfloat16 where the GPU supports it, else float16 with a gradient
scaler), and channels_last while training, trading bit-exactness for speed (cuDNN autotuning measured no gain:
README); evaluation runs in full precision with deterministic cuDNN kernels (:func:`cudnn_exact`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch

from .errors import UflError

__all__ = ["resolve_device", "seed_everything", "Precision", "precision_for", "PRECISIONS", "named_precision",
           "precision_name", "loader_kwargs", "seed_worker", "cudnn_exact", "torch_threads", "usable_cpus",
           "default_threads", "progress_disable", "forward_lanes", "run_lanes"]

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available (the local rank's GPU under torchrun), else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UflError(f"--device {device} was asked for but no CUDA GPU is visible; use --device cpu or auto")
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise UflError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UflError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                           f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
        torch.cuda.set_device(dev)
        return dev
    if device != "cpu":
        raise UflError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive NumPy/Python seeds from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


@dataclass(frozen=True)
class Precision:
    """Mixed-precision settings for one device: ``autocast()`` context and whether to scale grads."""

    device_type: str
    dtype: torch.dtype | None  # None: full precision

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def scaler(self) -> "torch.amp.GradScaler":
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def precision_for(device: torch.device, amp: bool = True) -> Precision:
    """AMP on CUDA (bfloat16 when supported, else float16); full precision on CPU."""
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Precision("cuda", dtype)
    return Precision(device.type, None)


#: ``--precision`` names and their autocast dtypes (``fp32``: no autocast).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def named_precision(name: str | None, device: torch.device) -> Precision:
    """The :class:`Precision` of a ``--precision`` name on ``device``.

    ``fp32``: full precision; ``bf16``: bfloat16 autocast (CPU and CUDA; no gradient scaling, its
    exponent range is float32's); ``fp16``: float16 autocast with a gradient scaler, CUDA only (on
    the CPU it is refused: it is slower there than bf16 and needs the scaler's loss of exactness).
    """
    if name not in PRECISIONS:
        raise UflError(f"unknown precision {name!r}; use one of {', '.join(PRECISIONS)}")
    if name == "fp16" and device.type != "cuda":
        raise UflError("--precision fp16 needs a CUDA GPU (it uses a gradient scaler there); on the CPU use "
                       "bf16 or fp32")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UflError("--precision bf16: this GPU does not support bfloat16; use fp16 or fp32")
    return Precision(device.type, PRECISIONS[name])


def precision_name(precision: Precision) -> str:
    """The ``--precision`` name of ``precision`` (inverse of :func:`named_precision`)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[precision.dtype]


@contextlib.contextmanager
def cudnn_exact():
    """Evaluation: deterministic cuDNN kernels, chosen without timing, so that a head gives the same
    numbers at registration and at every later evaluation. Restores the previous settings on exit."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's CPU intra-op threads set to ``n`` inside the block (None: as they are). Float32 sums
    split over another number of threads add up in another order (differences of about 1e-8), so an
    evaluation repeats a registration's numbers exactly with the registration's thread count."""
    saved = torch.get_num_threads()
    if n is None or n == saved:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads() -> int:
    """torch's CPU threads when the user sets none: ``$OMP_NUM_THREADS`` when it is a positive number,
    else :func:`usable_cpus` (the ``--threads`` default of every command that computes)."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        n = 0
    return n if n > 0 else usable_cpus()


def progress_disable(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a bar that is wanted when ``progress``: None (tqdm then draws it only when
    stderr is a terminal, so redirected logs get no carriage-return/escape clutter) or True."""
    return None if progress else True


def loader_kwargs(device: torch.device, num_workers: int | None = None) -> dict:
    """DataLoader settings: workers and pinned memory on CUDA; on a CPU of 2 cores or fewer no worker
    processes (they would take cores from the model's OpenMP threads and cost a start-up per epoch).

    Workers are not persistent: each epoch's loader reseeds them, so a resumed run is exact.
    """
    if num_workers is None:
        cpus = usable_cpus()
        num_workers = min(8, max(0, cpus - 1)) if device.type == "cuda" else (0 if cpus <= 2 else min(4, cpus // 2))
    kwargs = {"num_workers": num_workers, "pin_memory": device.type == "cuda", "worker_init_fn": seed_worker}
    if num_workers > 0:
        kwargs["persistent_workers"] = False
        kwargs["prefetch_factor"] = 4 if device.type == "cuda" else 2
    return kwargs


def forward_lanes(device: torch.device, lanes: int | None = None) -> tuple[int, int]:
    """``(lanes, torch threads per lane)`` of a loop whose batches are decoded and run through a
    model side by side (:func:`run_lanes`). ``lanes`` None: 2 on a CPU with 2 or more torch threads
    (one batch's decoding then overlaps another's forward, and two forwards on half the threads each
    keep the cores busier than one on all of them), 1 on CUDA. Every lane gets the same number of
    threads (their results are then the same whichever lane runs a batch)."""
    threads = torch.get_num_threads()
    if device.type != "cpu":
        return 1, threads
    lanes = max(1, min(2 if lanes is None else int(lanes), threads))
    return lanes, threads // lanes


Item = TypeVar("Item")


def run_lanes(items: Iterator[Item], step: Callable[[Item], None], lanes: int = 1, threads: int | None = None) -> None:
    """``step(item)`` for every item of ``items`` on ``lanes`` threads (the caller's among them),
    each with ``threads`` torch CPU threads; each lane takes the next item under a lock (so a
    DataLoader iterator, which is not thread-safe, can be shared: a lane decodes its batch while
    the others compute). The first error of any lane (in time) stops the others after their current
    item and is raised again in the caller's thread; a KeyboardInterrupt there comes first."""
    if lanes <= 1:
        with torch_threads(threads):
            for item in items:
                step(item)
        return
    lock = threading.Lock()
    errors: list[BaseException] = []  # in the order they happened (appended under the lock)

    def lane() -> None:
        with torch_threads(threads):  # torch's threads are per calling thread (OpenMP): this lane's only
            while True:
                with lock:
                    item = lock if errors else next(items, lock)  # the lock itself marks the end
                if item is lock:
                    return
                step(item)

    def run() -> None:
        try:
            lane()
        except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
            with lock:
                errors.append(e)

    helpers = [threading.Thread(target=run, name=f"lane-{k}", daemon=True) for k in range(1, lanes)]
    for thread in helpers:
        thread.start()
    try:
        run()
    finally:
        for thread in helpers:
            thread.join()
    if errors:
        raise next((e for e in errors if isinstance(e, KeyboardInterrupt)), errors[0])
