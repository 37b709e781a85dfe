"""A torch Dataset over a feature cache, safe with DataLoader worker processes.

HDF5 handles must not cross ``fork`` or ``pickle``: a handle inherited by a worker shares the
parent's file state, and concurrent reads through it return wrong data or crash. So the dataset
reads what it needs from the file once (validation, ids, views) and closes it; every process that
first reads an item opens its own handle (checked by process id), and ``__getstate__`` drops the
handle when the dataset is pickled to spawned workers.

Batched reads: the dataset defines ``__getitems__``, which a ``DataLoader`` (torch >= 2.1) calls
with a whole batch of the sampler's indices, so a batch is read with one batched read per dataset
(direct chunk reads for uncompressed caches, see :mod:`feature_cache.reader`) instead of one
``__getitem__`` per row. Items are the same either way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from .errors import FeatureCacheError
from .reader import FeatureCacheReader

__all__ = ["FeatureCacheDataset", "available_memory_bytes"]


def available_memory_bytes() -> int:
    """Memory the OS can give without swapping: ``MemAvailable`` (Linux), else free pages."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1  # unknown: do not refuse


class FeatureCacheDataset(Dataset):
    """Items of a feature cache as tensors.

    Each item is a dict: ``"features"``: list of (C_s, H_s, W_s) tensors (``dtype``), one per
    scale; one entry per task: its target tensor (decoded dtype, e.g. int64 labels, float32 maps);
    ``"id"``: str; ``"index"``: int (row); ``"view"``: int; and ``"view_params"``: (K,) float32
    when the cache stores view parameters. The default collate turns a batch into lists/tensors.

    Args:
        path: cache file.
        fingerprint: expected backbone fingerprint (``None``: not checked).
        tasks: targets to return (default all the cache holds).
        in_memory: read every row into RAM once, here (workers forked later share it); refused
            with a clear error when it would not fit in available memory.
        dtype: dtype of the feature tensors (default float32). ``None`` keeps what the reader
            returns (:attr:`FeatureCacheReader.feature_dtypes`: float16 for a float16 cache): half
            the bytes through the DataLoader and pinned memory, and no float16 -> float32
            conversion on the CPU (about 1.5 ms per 512 px row here, more than the read itself);
            convert on the device instead (``features.to(device).float()``).
        max_memory_bytes: the memory budget for ``in_memory`` (default 80% of available memory).
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str | None = None,
                 tasks: Iterable[str] | None = None, in_memory: bool = False,
                 dtype: torch.dtype | None = torch.float32, max_memory_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.dtype = dtype
        self._reader: FeatureCacheReader | None = None
        self._reader_pid: int | None = None
        self._memory: tuple[list[np.ndarray], dict[str, np.ndarray], np.ndarray] | None = None
        with FeatureCacheReader(self.path, fingerprint) as reader:
            self.tasks = reader._tasks(tasks)
            self.layout = reader.layout
            self.attrs = reader.attrs
            self.ids = reader.ids
            self.view = reader.view
            self.scales = reader.scales
            self.view_param_names = reader.view_param_names
            self.verified = reader.verified
            if in_memory:
                self._check_fits(reader.nbytes(self.tasks), max_memory_bytes)
                self._memory = reader.read_all(self.tasks)

    def _check_fits(self, needed: int, budget: int | None) -> None:
        if budget is None:
            budget = int(0.8 * available_memory_bytes())
        if needed > budget:
            raise FeatureCacheError(
                f"cache {self.path} needs {needed / 2**30:.2f} GiB in memory but only "
                f"{budget / 2**30:.2f} GiB are available; use in_memory=False to read it from disk")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def in_memory(self) -> bool:
        """Whether every row was read into RAM at construction."""
        return self._memory is not None

    def _open(self) -> FeatureCacheReader:
        """This process's reader, opened on first use (a handle from another process is dropped)."""
        if self._reader is None or self._reader_pid != os.getpid():
            self._reader = FeatureCacheReader(self.path, self.fingerprint)
            self._reader_pid = os.getpid()
        return self._reader

    def __getitem__(self, index: int | list[int]) -> dict[str, Any]:
        """Item ``index``; given a list of indices (a :class:`BatchSampler`'s batch, see
        :meth:`loader`), the whole batch already collated (:meth:`batch`)."""
        if isinstance(index, (list, tuple, np.ndarray, torch.Tensor)):
            return self.batch(index)
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """The items of ``indices`` (one batched read per dataset; what a DataLoader calls)."""
        batch = self.batch(indices)
        items = []
        for j, i in enumerate(batch["index"].tolist()):
            item: dict[str, Any] = {"features": [f[j] for f in batch["features"]]}
            for task in self.tasks:
                item[task] = batch[task][j]
            item["id"] = batch["id"][j]
            item["index"] = i
            item["view"] = int(batch["view"][j])
            if "view_params" in batch:
                item["view_params"] = batch["view_params"][j]
            items.append(item)
        return items

    def batch(self, indices: Any) -> dict[str, Any]:
        """The rows ``indices`` as one batch, exactly what ``default_collate`` makes of their items
        (features: list of (B, C_s, H_s, W_s); targets (B, ...); ``"id"`` list; ``"index"``,
        ``"view"`` (B,) int64; ``"view_params"`` (B, K)), read with one batched read per dataset and
        no per-item tensors to stack again."""
        n = len(self)
        rows = []
        for index in np.asarray(indices).reshape(-1).tolist():
            if not -n <= int(index) < n:
                raise IndexError(f"index {index} out of range for {n} samples")
            rows.append(int(index) % n)
        if self._memory is not None:
            features_all, targets_all, params_all = self._memory
            # NOTE: fancy indexing copies, so no returned tensor shares memory with the in-memory cache
            features = [f[rows] for f in features_all]
            targets = {t: targets_all[t][rows] for t in self.tasks}
            params = params_all[rows]
        else:  # freshly allocated arrays: no copy needed
            reader = self._open()
            features = reader.features_batch(rows)
            targets = reader.targets_batch(rows, self.tasks, decode=False)
            params = reader.view_params_batch(rows) if self.view_param_names else None
        out: dict[str, Any] = {"features": [self._feature_tensor(f) for f in features]}
        for t, v in targets.items():
            out[t] = torch.from_numpy(v.astype(self.layout.targets[t].decoded_dtype, copy=False))
        out["id"] = [self.ids[i] for i in rows]
        out["index"] = torch.tensor(rows, dtype=torch.int64)
        out["view"] = torch.from_numpy(self.view[rows].astype(np.int64))
        if params is not None and self.view_param_names:
            out["view_params"] = torch.from_numpy(params.astype(np.float32, copy=False))
        return out

    def loader(self, batch_size: int, shuffle: bool = False, drop_last: bool = False,
               generator: torch.Generator | None = None, **kwargs: Any) -> DataLoader:
        """A DataLoader of whole batches: its sampler's indices go to :meth:`batch` at once.

        The same batches (same order for the same ``generator``) and tensors as
        ``DataLoader(self, batch_size, shuffle, ...)`` with the default collate, without the
        per-item tensors and the ``torch.stack`` that copies them again (at 512 px the stack cost
        more than the read). ``kwargs`` go to the DataLoader (``num_workers``, ``pin_memory``, ...).
        """
        base = RandomSampler(self, generator=generator) if shuffle else SequentialSampler(self)
        # the DataLoader gets the generator too: it draws its workers' base seed from it first, as
        # the plain DataLoader does, so both shuffle alike
        return DataLoader(self, batch_size=None, sampler=BatchSampler(base, batch_size, drop_last),
                          generator=generator, **kwargs)

    def _feature_tensor(self, arr: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(arr)
        return tensor if self.dtype is None else tensor.to(self.dtype)

    def close(self) -> None:
        if self._reader is not None and self._reader_pid == os.getpid():
            self._reader.close()
        self._reader = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None  # never pickle an HDF5 handle; the receiving process opens its own
        state["_reader_pid"] = None
        return state

    def __repr__(self) -> str:
        where = "memory" if self._memory is not None else "disk"
        return f"FeatureCacheDataset({str(self.path)!r}, samples={len(self)}, tasks={self.tasks}, from {where})"
