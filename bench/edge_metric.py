"""Benchmark: the protocol's edge evaluation (99 thresholds, thinning, one-to-one matching) per image,
in this process against a pool of worker processes.

    python bench/edge_metric.py [--json] [--size 480x640] [--images 4] [--workers N]

Ground truth: the boundaries of random rectangles; prediction: that map blurred plus uniform
noise (a weak network's output: wide low-probability regions are what make the low thresholds
slow). ``EdgeMetric(workers=0)`` and ``EdgeMetric(workers=N)`` must give the same counts; the
speedup is the ratio of their wall times (pool start-up included). Prints one JSON object with
``--json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.segmentation import find_boundaries

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, machine  # noqa: E402
from ufl.evaluation import edge_workers  # noqa: E402
from ufl.metrics import EdgeMetric  # noqa: E402


def maps(n: int, size: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = size
    preds, edges = [], []
    for _ in range(n):
        labels = np.zeros(size, int)
        for k in range(8):
            y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
            labels[y:y + rng.integers(10, h // 2), x:x + rng.integers(10, w // 2)] = k + 1
        edge = find_boundaries(labels, mode="inner").astype(np.float32)
        edges.append(edge)
        preds.append(np.clip(3 * gaussian_filter(edge, 2) + 0.3 * rng.random(size), 0, 1).astype(np.float32))
    return np.stack(preds), np.stack(edges)


def run(pred: np.ndarray, edges: np.ndarray, workers: int) -> tuple[float, dict]:
    start = time.perf_counter()
    metric = EdgeMetric(workers=workers)
    metric.update(pred, edges)
    state = metric.state()
    return time.perf_counter() - start, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--size", default="480x640", help="HxW of the maps (NYUD: 480x640)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--workers", type=int, default=None, help="pool size (default: as ufl evaluate)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    workers = args.workers if args.workers is not None else max(edge_workers(), 2)
    pred, edges = maps(args.images, size)
    pool_s, pool_state = run(pred, edges, workers)
    here_s, here_state = run(pred, edges, 0)
    same = all(np.array_equal(here_state[k], pool_state[k]) for k in here_state)
    report = {"machine": machine(), "size": list(size), "images": args.images,
              "thresholds": 99, "seconds_per_image": here_s / args.images, "workers": workers,
              "pool_seconds_per_image": pool_s / args.images, "speedup": here_s / pool_s, "same_counts": same}
    emit(report, args.json)
    if not same:
        sys.exit("the pool's counts differ from the in-process counts")


if __name__ == "__main__":
    main()
