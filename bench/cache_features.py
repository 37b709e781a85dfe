"""Benchmark: `ufl cache-features` against the bare backbone forward over the same images.

    python bench/cache_features.py [--json] [--images 64] [--size 128] [--batch-size 16] [--device auto]

On generated PASCAL-like data (``ufl make-synthetic``), in one process:

* ``forward``: the frozen backbone over every image, already decoded and resized in memory
  (pure compute, the floor for any caching);
* ``cache``: ``Workspace.cache_features`` writing the same images into a fresh HDF5 cache
  (decoding the JPEG and every target, the forward pass, float16 conversion and the write);
* ``ratio = cache / forward`` (target <= 1.15 on CPU: decoding and writing hide behind compute);
* bytes per image on disk, and the read throughput of the cache (``FeatureCacheDataset``) against
  reading the same bytes from a raw file with NumPy.

On CUDA it also reports the GPU busy fraction (backbone kernel time / wall time of the caching
run, from CUDA events). Prints one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, sync  # noqa: E402
from feature_cache import FeatureCacheDataset  # noqa: E402
from ufl.datasets.synthetic import make_synthetic  # noqa: E402
from ufl.models import Backbone  # noqa: E402
from ufl.runtime import Precision, resolve_device  # noqa: E402
from ufl.workspace import Workspace  # noqa: E402
from ufl.workspace.cache import dataset_specs, open_split, resolve_data  # noqa: E402
from ufl.workspace.views import ViewDataset, backbone_features  # noqa: E402


def time_forward(ws, images: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Seconds of the backbone forward alone, run as cache-features runs it (float16 autocast on CUDA)."""
    backbone = ws.backbone(device)
    images = images.to(device)
    precision = Precision("cuda", torch.float16) if device.type == "cuda" else None
    backbone_features(backbone, images[:batch_size], precision)  # warm-up (kernel selection)
    sync(device)
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        backbone_features(backbone, images[i:i + batch_size], precision)
    sync(device)
    return time.perf_counter() - start


def read_throughput(path: Path, tmp: Path) -> dict[str, float]:
    """Samples/s reading the whole cache through the Dataset vs the same bytes raw with NumPy."""
    data = FeatureCacheDataset(path)
    n = len(data)
    start = time.perf_counter()
    for i in range(n):
        data[i]
    cache_s = time.perf_counter() - start
    item = data[0]
    raw = tmp / "raw.bin"
    sizes = [f.numel() * 2 for f in item["features"]]
    with open(raw, "wb") as f:
        for i in range(n):
            for feature in data[i]["features"]:
                f.write(feature.to(torch.float16).numpy().tobytes())
    per_sample = sum(sizes)
    start = time.perf_counter()
    with open(raw, "rb") as f:
        for i in range(n):
            f.seek(i * per_sample)
            buf = f.read(per_sample)
            offset = 0
            for feature, size in zip(item["features"], sizes):
                torch.from_numpy(np.frombuffer(buf, np.float16, size // 2, offset).reshape(feature.shape).astype(np.float32))
                offset += size
    raw_s = time.perf_counter() - start
    data.close()
    return {"cache_samples_per_s": n / cache_s, "raw_samples_per_s": n / raw_s, "cache_vs_raw": raw_s / cache_s,
            "feature_bytes_per_sample": per_sample}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--images", type=int, default=256, help="training images to cache")
    parser.add_argument("--dataset", choices=["pascal", "nyud"], default="pascal", help="generated data set to cache")
    parser.add_argument("--size", type=int, default=128, help="input height (multiple of 32; NYUD: 4:3)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers of the caching run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best of each is kept")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_synthetic(tmp / "data", size=args.size, n_train=args.images, n_val=2, seed=0, progress=False,
                       workers=min(8, os.cpu_count() or 1))
        ws = Workspace.create(tmp / "ws", Backbone("hrnet_w18_small_v2", warn_random_init=False), "random init")
        size = (args.size, args.size * 4 // 3 // 32 * 32 if args.dataset == "nyud" else args.size)
        folder, _ = resolve_data(ws, args.dataset, tmp / "data", None, size)
        rows = ViewDataset(open_split(ws, args.dataset, "train", folder, dataset_specs(ws, args.dataset, None)), 1,
                           size)
        images = torch.stack([rows[i]["image"] for i in range(len(rows))])

        forward_times, cache_times, busy = [], [], []
        for repeat in range(args.repeats):
            forward_times.append(time_forward(ws, images, args.batch_size, device))
            with _kernel_timer(ws, device) as kernel_seconds:
                result = ws.cache_features(args.dataset, ["train"], root=folder, size=size, device=str(device),
                                           batch_size=args.batch_size, workers=args.workers, overwrite=repeat > 0,
                                           progress=False)[0]
            cache_times.append(result.seconds)
            if device.type == "cuda":
                busy.append(kernel_seconds() / result.seconds)
        path = result.path
        on_disk = path.stat().st_size / result.rows
        reads = read_throughput(path, tmp)

    forward_s, cache_s = min(forward_times), min(cache_times)
    report = {
        "machine": machine(), "device": str(device), "dataset": args.dataset, "images": args.images, "size": list(size),
        "batch_size": args.batch_size, "ratio": cache_s / forward_s, "cache_seconds": cache_s,
        "forward_seconds": forward_s, "cache_images_per_s": args.images / cache_s,
        "forward_images_per_s": args.images / forward_s, "bytes_per_image": on_disk,
        "gpu_busy_fraction": max(busy) if busy else None, **reads,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>26}: {value:.4g}" if isinstance(value, float) else f"{key:>26}: {value}")


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
