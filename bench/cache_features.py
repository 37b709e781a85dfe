"""Benchmark: `ufl cache-features` against the bare backbone forward, and cache reads against raw reads.

    python bench/cache_features.py [--json] [--dataset pascal] [--images 256] [--size 128] [--batch-size 16]
                                   [--device auto] [--lanes N] [--read-size 512] [--read-rows 192] [--main-size 512]

On generated PASCAL-like data (``ufl make-synthetic``), in one process (JSON keys in brackets):

* ``forward``: the frozen backbone over every image, already decoded and resized in memory
  (pure compute, the floor for any caching), one loop on all of torch's threads
  [``forward_seconds``, ``forward_images_per_s``];
* ``cache``: ``Workspace.cache_features`` writing the same images into a fresh HDF5 cache
  (decoding the JPEG and every target, the forward pass, float16 conversion and the write), with
  its default ``lanes`` on the device (``--lanes``; on a CPU 2: one lane decodes while the other
  computes) [``cache_seconds``, ``cache_images_per_s``, ``bytes_per_image``, ``lanes``];
* [``ratio``] = cache / forward (best of ``--repeats`` interleaved runs each), and
  [``ratio_lanes``] = cache / the bare forward run in the same lanes [``forward_lanes_seconds``]:
  two forwards on one thread each can keep 2 cores busier than one on two, so ``ratio`` is what a
  user gains against the plain loop and ``ratio_lanes`` what the decoding and writing still cost;
* [``main_ms_per_row``]: the caching process's own work per row at ``--main-size`` px besides
  decoding and the forward: ``(loop - forward - decode) / rows`` of a one-process, one-lane run
  (``workers=0``, ``lanes=1``, so that the spans do not overlap; ``loop`` from the DataLoader's first batch to the writer's close, so file
  creation, fsync and registration are not counted; the forward timed around ``backbone_features``,
  the decoding around the DataLoader's dataset access), plus [``write_ms_per_row``], the writer
  thread's ``write()`` time (it overlaps the loop, so this counts it twice at worst: an upper
  bound) [``main_loop_ms_per_row`` is the part without it]; the same three in CPU time of the
  thread that does the work (``time.thread_time``: the caching thread's CPU outside the forward
  and the decoding, the writer thread's CPU in ``write()``), which other processes' load on the
  cores does not inflate [``main_cpu_ms_per_row``, ``main_loop_cpu_ms_per_row``,
  ``write_cpu_ms_per_row``]; each the best of ``--repeats`` runs (one run's figure swings by
  milliseconds on a shared machine). These on ``--main-images`` val rows (the largest: besides the
  features and the working-size targets they keep every target at the image's original size for
  evaluation, padded to the split's largest image: 8.3 MB per 512 px PASCAL-like row here), and the
  same keys prefixed ``train_`` on as many train rows (features and working-size targets, 3.7 MB:
  the rows issue 14's "about 15 ms" was measured on), interleaved;
* [``read_ratio``]: the cache reader (``FeatureCacheReader.features_batch`` + ``targets_batch`` of
  one task, stored dtypes, checksums verified) against raw NumPy reads of the SAME bytes (each
  row's bytes contiguous in a plain file, one ``readinto`` per row into a batch buffer whose parts
  are NumPy views: the cheapest plain reader), both
  in the same shuffled batches of ``--batch-size`` rows from a warm page cache, each reader opened
  once and kept for every pass as a training process keeps its reader over the epochs (the
  warm-up pass also builds the reader's mapping of the file); > 1 means the cache is faster.
  Beside it, interleaved in the same repeats: [``read_ratio_unverified``] the same reader opened
  with ``verify=False`` (what the per-row checksums cost; never the default), and
  [``read_ratio_fresh``] a reader opened anew for each pass (its first touch of every mapped page
  is counted: what a process that reads the cache once gets). On the bench's own cache
  [``read_ratio``, ``read_rows_per_s``, ``raw_rows_per_s``, ``read_ratio_unverified``,
  ``read_ratio_fresh``] and on a ``--read-size`` px cache of the same backbone's feature shapes and
  PASCAL's semseg target [``read_ratio_512``, ``reader_rows_per_s_512``, ``raw_rows_per_s_512``,
  ``read_bytes_per_row_512``, ``read_ratio_512_unverified``, ``read_ratio_512_fresh``],
  and [``read_rows_per_s_512``]: what a head's training loop gets, ``FeatureCacheDataset(dtype=None)``
  through its batch loader (one process, shuffled batches of ``--batch-size``, float16 kept, targets
  decoded to int64) [``read_rows_per_s_512_collate``: the same through a plain DataLoader, whose
  default collate stacks the items again].

On CUDA it also reports the GPU busy fraction (backbone kernel time / wall time of the caching
run, from CUDA events). Prints one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, machine, sync  # noqa: E402
from feature_cache import BackgroundWriter, FeatureCacheDataset, FeatureCacheReader, FeatureCacheWriter  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torch.utils.data._utils import fetch as _fetch  # noqa: E402
from ufl.synthetic import make_synthetic  # noqa: E402
from ufl.models import Backbone  # noqa: E402
from ufl.runtime import Precision, forward_lanes, resolve_device, run_lanes, torch_threads  # noqa: E402
from ufl.workspace import Workspace  # noqa: E402
import ufl.workspace.cache as _cache  # noqa: E402
from ufl.taskspec import get_spec  # noqa: E402
from ufl.workspace.cache import dataset_specs, open_split, resolve_data, target_layout  # noqa: E402
from ufl.workspace.views import ViewDataset, backbone_features  # noqa: E402


def time_forward(ws, images: torch.Tensor, batch_size: int, device: torch.device, lanes: int = 1) -> float:
    """Seconds of the backbone forward alone (float16 autocast on CUDA): one loop on all of torch's
    threads, or ``lanes`` side by side on an equal share of them, as cache-features runs its lanes."""
    backbone = ws.backbone(device)
    images = images.to(device)
    precision = Precision("cuda", torch.float16) if device.type == "cuda" else None
    lanes, threads = forward_lanes(device, lanes)
    with torch_threads(threads):
        backbone_features(backbone, images[:batch_size], precision)  # warm-up (kernel selection)
    sync(device)
    start = time.perf_counter()
    run_lanes(iter(range(0, len(images), batch_size)),
              lambda i: backbone_features(backbone, images[i:i + batch_size], precision), lanes, threads)
    sync(device)
    return time.perf_counter() - start


def _raw_copy(reader: FeatureCacheReader, task: str, raw: Path) -> list[tuple[tuple[int, ...], np.dtype]]:
    """Write every row's bytes (features in their stored dtype, then ``task``'s stored target)
    contiguously into ``raw``; the (shape, dtype) of each part of a row."""
    parts = [(tuple(s), np.dtype(reader.layout.dtype)) for s in reader.scales]
    spec = reader.layout.targets[task]
    parts.append((tuple(spec.shape), np.dtype(spec.dtype)))
    with open(raw, "wb") as f:
        for start in range(0, len(reader), 64):
            rows = np.arange(start, min(start + 64, len(reader)))
            feats = reader.features_batch(rows)
            target = reader.targets_batch(rows, [task], decode=False)[task]
            for j in range(len(rows)):
                for arr in (*feats, target):
                    f.write(np.ascontiguousarray(arr[j]).tobytes())
    return parts


def read_same_bytes(path: Path, task: str, tmp: Path, batch_size: int, repeats: int) -> dict[str, float]:
    """Rows/s of the cache reader (kept open; unverified; opened per pass) and of raw NumPy reads
    of the same bytes (best of ``repeats``, interleaved), shuffled batches, warm page cache."""
    raw = tmp / f"{path.stem}.raw"
    with FeatureCacheReader(path) as reader:
        parts = _raw_copy(reader, task, raw)
        n = len(reader)
    sizes = [int(np.prod(shape)) * dtype.itemsize for shape, dtype in parts]
    row_bytes = sum(sizes)
    order = np.random.default_rng(0).permutation(n)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]

    def cache_pass(reader: FeatureCacheReader | None) -> float:
        with contextlib.nullcontext(reader) if reader is not None else FeatureCacheReader(path) as reader:
            start = time.perf_counter()
            for rows in batches:
                reader.features_batch(rows)
                reader.targets_batch(rows, [task], decode=False)
            return time.perf_counter() - start

    bounds = np.cumsum([0, *sizes])

    def raw_pass(f) -> float:
        # the strongest plain reader: one read per row (its bytes are contiguous in the raw file)
        # into a (B, row_bytes) batch buffer; each part is a view of it, no copy
        start = time.perf_counter()
        for rows in batches:
            buffer = np.empty((len(rows), row_bytes), np.uint8)
            for j, row in enumerate(rows.tolist()):
                f.seek(row * row_bytes)
                f.readinto(buffer[j])
            [buffer[:, a:b].view(dtype).reshape(len(rows), *shape)
             for (shape, dtype), a, b in zip(parts, bounds[:-1], bounds[1:])]
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"cache": [], "unverified": [], "fresh": [], "raw": []}
    with FeatureCacheReader(path) as kept, FeatureCacheReader(path, verify=False) as unverified, \
            open(raw, "rb", buffering=0) as f:
        passes = {"cache": lambda: cache_pass(kept), "unverified": lambda: cache_pass(unverified),
                  "fresh": lambda: cache_pass(None), "raw": lambda: raw_pass(f)}
        for run in passes.values():  # warm the page cache, the mappings and the code paths
            run()
        for _ in range(repeats):
            for key, run in passes.items():
                times[key].append(run())
    raw.unlink()
    best = {key: min(seconds) for key, seconds in times.items()}
    return {"cache_rows_per_s": n / best["cache"], "raw_rows_per_s": n / best["raw"],
            "read_ratio": best["raw"] / best["cache"], "row_bytes": row_bytes,
            "read_ratio_unverified": best["raw"] / best["unverified"],
            "read_ratio_fresh": best["raw"] / best["fresh"]}


def dataset_rows_per_s(path: Path, task: str, batch_size: int, repeats: int) -> dict[str, float]:
    """Rows/s through ``FeatureCacheDataset(dtype=None)`` in one process, shuffled: its batch
    loader (:meth:`FeatureCacheDataset.loader`, whole batches) and a plain DataLoader (items
    collated with ``torch.stack``), interleaved, best of ``repeats`` after a warm-up pass."""
    data = FeatureCacheDataset(path, tasks=[task], dtype=None)
    loaders = {"batched": data.loader(batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)),
               "collate": DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=0,
                                     generator=torch.Generator().manual_seed(0))}
    best = {key: float("inf") for key in loaders}
    for _ in range(repeats + 1):  # the first pass warms up
        for key, loader in loaders.items():
            start = time.perf_counter()
            for _batch in loader:
                pass
            best[key] = min(best[key], time.perf_counter() - start)
    data.close()
    return {key: len(data) / seconds for key, seconds in best.items()}


def synthetic_read_cache(ws, path: Path, size: int, rows: int) -> str:
    """A ``size`` px cache with the workspace backbone's feature shapes and PASCAL's semseg target,
    random contents (no backbone run); returns the task name."""
    backbone = ws.backbone("cpu")
    scales = [(c, size // s, size // s) for c, s in zip(backbone.channels, backbone.strides)]
    task = "semseg"
    writer = FeatureCacheWriter.create(
        path, rows, scales, {task: target_layout(get_spec(task), "pascal", (size, size))},
        fingerprint=ws.fingerprint, input_size=(size, size), backbone=backbone.name, dataset="pascal",
        split="train", strides=backbone.strides)
    rng = np.random.default_rng(0)
    for start in range(0, rows, 16):
        idx = np.arange(start, min(start + 16, rows))
        feats = [rng.standard_normal((len(idx), *s), dtype=np.float32) for s in scales]
        labels = rng.integers(0, 21, (len(idx), size, size)).astype(np.uint8)
        writer.write(idx, feats, {task: labels})
    writer.finalize()
    return task


def main_process_time(ws, dataset: str, folder: Path, size: tuple[int, int], images: int,
                      batch_size: int, tmp: Path, split: str = "val") -> dict[str, float]:
    """Per-row time of the caching process besides forward and decoding (see the module docstring)."""
    spans = {"forward": 0.0, "decode": 0.0, "write": 0.0, "loop_start": 0.0, "loop_end": 0.0}
    cpu = {"forward": 0.0, "decode": 0.0, "write": 0.0, "loop_start": 0.0, "loop_end": 0.0}  # thread CPU
    real_features, real_fetch = _cache.backbone_features, _fetch._MapDatasetFetcher.fetch
    real_write, real_iter, real_close = FeatureCacheWriter.write, DataLoader.__iter__, BackgroundWriter.close

    def loader_iter(self):  # the caching loop starts (setup, file creation done)
        spans["loop_start"], cpu["loop_start"] = time.perf_counter(), time.thread_time()
        return real_iter(self)

    def close(self, *args, **kwargs):  # the caching loop ends (finalising, renaming, registering follow)
        if not spans["loop_end"]:
            spans["loop_end"], cpu["loop_end"] = time.perf_counter(), time.thread_time()
        return real_close(self, *args, **kwargs)

    def timed(key, fn):
        def wrapper(*args, **kwargs):
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spans[key] += time.perf_counter() - start
                cpu[key] += time.thread_time() - start_cpu
        return wrapper

    def fetch(self, index):  # the dataset access (decoding) only; the collate stays main work
        collate = self.collate_fn
        decode_start, decode_cpu = time.perf_counter(), time.thread_time()
        collate_time = [0.0, 0.0]

        def timed_collate(batch):
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return collate(batch)
            finally:
                collate_time[0] += time.perf_counter() - start
                collate_time[1] += time.thread_time() - start_cpu

        self.collate_fn = timed_collate
        try:
            return real_fetch(self, index)
        finally:
            self.collate_fn = collate
            spans["decode"] += time.perf_counter() - decode_start - collate_time[0]
            cpu["decode"] += time.thread_time() - decode_cpu - collate_time[1]

    with mock.patch.object(_cache, "backbone_features", timed("forward", real_features)), \
            mock.patch.object(_fetch._MapDatasetFetcher, "fetch", fetch), \
            mock.patch.object(FeatureCacheWriter, "write", timed("write", real_write)), \
            mock.patch.object(DataLoader, "__iter__", loader_iter), \
            mock.patch.object(BackgroundWriter, "close", close):
        result = ws.cache_features(dataset, [split], root=folder, size=size, device="cpu", batch_size=batch_size,
                                   workers=0, overwrite=True, progress=False, lanes=1)[0]
    rows = result.written
    loop = (spans["loop_end"] - spans["loop_start"] - spans["forward"] - spans["decode"]) / rows
    loop_cpu = (cpu["loop_end"] - cpu["loop_start"] - cpu["forward"] - cpu["decode"]) / rows
    return {"main_ms_per_row": 1000 * (loop + spans["write"] / rows), "main_loop_ms_per_row": 1000 * loop,
            "write_ms_per_row": 1000 * spans["write"] / rows, "main_rows": rows,
            "main_cpu_ms_per_row": 1000 * (loop_cpu + cpu["write"] / rows), "main_loop_cpu_ms_per_row": 1000 * loop_cpu,
            "write_cpu_ms_per_row": 1000 * cpu["write"] / rows,
            "main_forward_ms_per_row": 1000 * spans["forward"] / rows,
            "main_decode_ms_per_row": 1000 * spans["decode"] / rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--images", type=int, default=256, help="training images to cache")
    parser.add_argument("--dataset", choices=["pascal", "nyud"], default="pascal", help="generated data set to cache")
    parser.add_argument("--size", type=int, default=128, help="input height (multiple of 32; NYUD: 4:3)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers of the caching run")
    parser.add_argument("--lanes", type=int, default=None, help="forward lanes of the caching run (default: by device)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best of each is kept")
    parser.add_argument("--skip-ratio", action="store_true",
                        help="cache once and skip the forward timing (ratio: null); the read and main-process keys only")
    parser.add_argument("--read-size", type=int, default=512, help="input size of the read-speed cache")
    parser.add_argument("--read-rows", type=int, default=192, help="rows of the read-speed cache")
    parser.add_argument("--main-size", type=int, default=512, help="input size of the main-process timing")
    parser.add_argument("--main-images", type=int, default=48,
                        help="val and train images cached for the main-process timing (several batches: a run reuses its "
                             "image batch memory from the second batch on)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_synthetic(tmp / "data", size=args.size, n_train=args.images, n_val=2, seed=0, progress=False,
                       workers=min(8, os.cpu_count() or 1))
        make_synthetic(tmp / "data_main", size=args.main_size, n_train=args.main_images, n_val=args.main_images, seed=0,
                       progress=False, workers=min(8, os.cpu_count() or 1))
        ws = Workspace.create(tmp / "ws", Backbone("hrnet_w18_small_v2", warn_random_init=False), "random init")
        size = (args.size, args.size * 4 // 3 // 32 * 32 if args.dataset == "nyud" else args.size)
        folder, _ = resolve_data(ws, args.dataset, tmp / "data", None, size)
        rows = ViewDataset(open_split(ws, args.dataset, "train", folder, dataset_specs(ws, args.dataset, None)), 1,
                           size)
        images = torch.stack([rows[i]["image"] for i in range(len(rows))])

        lanes = forward_lanes(device, args.lanes)[0]
        forward_times, lanes_times, cache_times, busy = [], [], [], []
        for repeat in range(1 if args.skip_ratio else args.repeats):
            if not args.skip_ratio:
                forward_times.append(time_forward(ws, images, args.batch_size, device))
                lanes_times.append(time_forward(ws, images, args.batch_size, device, lanes))
            with _kernel_timer(ws, device) as kernel_seconds:
                result = ws.cache_features(args.dataset, ["train"], root=folder, size=size, device=str(device),
                                           batch_size=args.batch_size, workers=args.workers, overwrite=repeat > 0,
                                           progress=False, lanes=lanes)[0]
            cache_times.append(result.seconds)
            if device.type == "cuda":
                busy.append(kernel_seconds() / result.seconds)
        path = result.path
        on_disk = path.stat().st_size / result.rows
        task = dataset_specs(ws, args.dataset, None)[0].name
        reads = read_same_bytes(path, task, tmp, args.batch_size, args.repeats)
        big = tmp / "read.h5"
        big_task = synthetic_read_cache(ws, big, args.read_size, args.read_rows)
        reads_512 = read_same_bytes(big, big_task, tmp, args.batch_size, args.repeats)
        loader_512 = dataset_rows_per_s(big, big_task, args.batch_size, args.repeats)
        big.unlink()
        main_size = (args.main_size, args.main_size * 4 // 3 // 32 * 32 if args.dataset == "nyud" else args.main_size)
        main_folder, _ = resolve_data(ws, args.dataset, tmp / "data_main", None, main_size)
        runs = [{**main_process_time(ws, args.dataset, main_folder, main_size, args.main_images, args.batch_size, tmp),
                 **{f"train_{key}": value for key, value in main_process_time(
                     ws, args.dataset, main_folder, main_size, args.main_images, args.batch_size, tmp,
                     split="train").items()}}
                for _ in range(args.repeats)]  # val and train interleaved
        main = {key: min(run[key] for run in runs) for key in runs[0]}  # best of --repeats, each key on its own

    forward_s, cache_s = min(forward_times, default=float("nan")), min(cache_times)
    lanes_s = min(lanes_times, default=float("nan"))
    report = {
        "machine": machine(), "device": str(device), "dataset": args.dataset, "images": args.images, "size": list(size),
        "batch_size": args.batch_size, "ratio": None if args.skip_ratio else cache_s / forward_s,
        "cache_seconds": cache_s, "forward_seconds": None if args.skip_ratio else forward_s, "lanes": lanes,
        "forward_lanes_seconds": None if args.skip_ratio else lanes_s,
        "ratio_lanes": None if args.skip_ratio else cache_s / lanes_s,
        "cache_images_per_s": args.images / cache_s,
        "forward_images_per_s": None if args.skip_ratio else args.images / forward_s, "bytes_per_image": on_disk,
        "gpu_busy_fraction": max(busy) if busy else None,
        "read_ratio": reads["read_ratio"], "read_rows_per_s": reads["cache_rows_per_s"],
        "raw_rows_per_s": reads["raw_rows_per_s"], "read_bytes_per_row": reads["row_bytes"],
        "read_ratio_unverified": reads["read_ratio_unverified"], "read_ratio_fresh": reads["read_ratio_fresh"],
        "read_size": args.read_size, "read_ratio_512": reads_512["read_ratio"],
        "read_rows_per_s_512": loader_512["batched"], "read_rows_per_s_512_collate": loader_512["collate"],
        "reader_rows_per_s_512": reads_512["cache_rows_per_s"],
        "raw_rows_per_s_512": reads_512["raw_rows_per_s"], "read_bytes_per_row_512": reads_512["row_bytes"],
        "read_ratio_512_unverified": reads_512["read_ratio_unverified"],
        "read_ratio_512_fresh": reads_512["read_ratio_fresh"],
        "main_size": list(main_size), **main,
    }
    emit(report, args.json)


@contextlib.contextmanager
def _kernel_timer(ws, device: torch.device):
    """Yield a function giving the backbone's GPU time (CUDA events around each forward) in the block."""
    if device.type != "cuda":
        yield lambda: None
        return
    backbone = ws.backbone(device)
    spans: list[list[torch.cuda.Event]] = []

    def before(module, inputs):
        spans.append([torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)])
        spans[-1][0].record()

    def after(module, inputs, output):
        spans[-1][1].record()

    handles = [backbone.register_forward_pre_hook(before), backbone.register_forward_hook(after)]

    def total() -> float:
        torch.cuda.synchronize()
        return sum(start.elapsed_time(end) for start, end in spans) / 1000.0

    try:
        yield total
    finally:
        for handle in handles:
            handle.remove()


if __name__ == "__main__":
    main()
