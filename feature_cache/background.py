"""Writing a feature cache on a background thread, so that a GPU loop never waits on the disk.

:class:`BackgroundWriter` queues the batches of :meth:`FeatureCacheWriter.write` and writes them
on one thread; CUDA tensors are copied to pinned host memory without blocking the producer.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import FeatureCacheError
from .convert import ArrayLike, as_numpy
from .writer import FeatureCacheWriter

__all__ = ["BackgroundWriter"]

_STOP = object()


class BackgroundWriter:
    """Writes batches on a thread behind a bounded queue, so a GPU loop never waits on disk.

    ``put`` takes ownership of the batch WITHOUT copying CPU arrays or tensors: the caller must not
    modify them after ``put`` (a DataLoader's batches and a forward pass's outputs are fresh each
    step, so the caching loop never does). CUDA tensors are copied to pinned CPU memory with a
    non-blocking copy (the thread waits for the copy's CUDA event). ``put`` returns at once; the
    thread calls ``writer.write``. At most ``max_pending`` batches wait, which bounds memory and blocks the
    producer only when the disk is truly slower than the GPU. An exception in the thread is raised
    again in the caller's thread at the next ``put`` or at ``close`` (in every producer thread that
    calls them afterwards: several may put).
    """

    def __init__(self, writer: FeatureCacheWriter, max_pending: int = 4) -> None:
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(max_pending)))
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="feature-cache-writer", daemon=True)
        self._thread.start()

    def put(self, indices: ArrayLike, features: Sequence[ArrayLike],
            targets: Mapping[str, ArrayLike] | None = None,
            view_params: ArrayLike | None = None) -> None:
        """Queue one batch (the arguments of :meth:`FeatureCacheWriter.write`).

        NOTE: the arrays are used as they are, later, on the writer thread: do not modify them
        after this call (pass copies if you must reuse buffers).
        """
        self._raise_pending()
        if self._closed:
            raise FeatureCacheError(f"background writer of {self.writer.path} is closed")
        item = (_to_host(indices), [_to_host(x) for x in features],
                {k: [_to_host(x) for x in v] if isinstance(v, (list, tuple)) else _to_host(v)
                 for k, v in (targets or {}).items()},
                None if view_params is None else _to_host(view_params))
        self._queue.put(item)

    def close(self, finalize: bool = False) -> None:
        """Wait until every queued batch is written; re-raise a writer error; optionally finalise."""
        self._stop()
        self._raise_pending()
        if finalize:
            self.writer.finalize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # keep draining so a producer blocked on put() wakes up and sees the error
            try:
                indices = _from_host(item[0])
                features = [_from_host(x) for x in item[1]]
                targets = {k: [_from_host(x) for x in v] if isinstance(v, list) else _from_host(v)
                           for k, v in item[2].items()}
                view_params = None if item[3] is None else _from_host(item[3])
                self.writer.write(indices, features, targets, view_params)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                self._error = e

    def _raise_pending(self) -> None:
        error = self._error  # kept: every later put() and close(), from any thread, raises the same error
        if error is not None:
            self._closed = True
            raise error

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # stop the thread without hiding the original exception
            self._stop()

    def _stop(self) -> None:
        """Queue the end marker once and wait for the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()


def _to_host(x: ArrayLike) -> Any:
    """``x`` on the CPU: CUDA tensors copied (non-blocking, pinned), everything else as it is
    (ownership passes to the writer; see :meth:`BackgroundWriter.put`)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_cuda:
            host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
            host.copy_(x, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            return (host, event)
        return x
    return x if isinstance(x, np.ndarray) else np.asarray(x)


def _from_host(x: Any) -> np.ndarray:
    if isinstance(x, tuple):  # (pinned tensor, CUDA event): wait for the copy to land
        host, event = x
        event.synchronize()
        return as_numpy(host)
    return as_numpy(x)
