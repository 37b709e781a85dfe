"""Benchmark: a second ``ufl evaluate`` on an unchanged workspace with an edges head, against the first.

    python bench/evaluate_cache.py [--json] [--workspace WS] [--size 96] [--val 32] [--repeats 2]

``ufl evaluate`` keeps each image's edge counts in ``WORKSPACE/eval-cache/edges`` (a hash of the
prediction, the ground truth and the protocol settings, see ``ufl.evalcache``) and each task's
metrics in ``WORKSPACE/eval-cache/metrics`` (a hash of the head file, the val cache's content id,
the protocol and the code, see ``ufl.workspace.evaluate.metrics_key``): an unchanged task is
evaluated again without running its head. Per repeat, interleaved: the ``eval-cache`` folder is
removed, then ``evaluate --all-tasks`` runs twice (``first``: every head's forward pass and metric,
matching every image at 99 thresholds; ``second``: reading the metrics). ``edges_ratio`` times a
third run with only the metrics removed (heads run again, edge counts read), as before the metrics
were cached. Timed two ways: through the Python API in this process
(``Workspace.evaluate``), and as the command a user types (``python -m ufl evaluate --all-tasks
--json``, a fresh interpreter each time, so its start-up is included). Best of the repeats; the
metrics of the two runs must be equal. Target: ``ratio`` (second / first, API) <= 0.2.

Without ``--workspace`` a workspace is generated: PASCAL-like data at ``--size`` px (8 train,
``--val`` val images), a random-init HRNet-18, and two heads trained for one epoch (edges and
saliency). Prints one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import emit, machine  # noqa: E402
from ufl.models import Backbone  # noqa: E402
from ufl.workspace import HeadTrainingConfig, Workspace  # noqa: E402
from ufl.workspace.evaluate import METRICS_CACHE  # noqa: E402


def build(root: Path, size: int, val: int) -> Path:
    from ufl.synthetic import make_synthetic

    make_synthetic(root / "data", size=size, n_train=8, n_val=val, seed=0, progress=False)
    ws = Workspace.create(root / "ws", Backbone("hrnet_w18_small_v2", warn_random_init=False), "random init")
    ws.cache_features("pascal", data_root=root / "data", size=(size, size), device="cpu", progress=False)
    for task in ("edges", "saliency"):
        ws.add_task(task, config=HeadTrainingConfig(epochs=1, batch_size=4, lr=1e-3), device="cpu", progress=False)
    return ws.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--workspace", default=None, help="an existing workspace (default: generate one)")
    parser.add_argument("--size", type=int, default=96, help="generated images' size (multiple of 32)")
    parser.add_argument("--val", type=int, default=32, help="generated val images")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the best of each is kept")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workspace) if args.workspace else build(Path(tmp), args.size, args.val)
        cache = root / "eval-cache"
        times: dict[str, list[float]] = {k: [] for k in ("api_first", "api_second", "api_edges_only", "cli_first",
                                                         "cli_second")}
        results = []
        cached = []
        for _ in range(args.repeats):
            shutil.rmtree(cache, ignore_errors=True)
            for key in ("api_first", "api_second", "api_edges_only"):
                if key == "api_edges_only":
                    shutil.rmtree(root / METRICS_CACHE, ignore_errors=True)
                start = time.perf_counter()
                evaluation = Workspace(root).evaluate(device="cpu", progress=False)
                times[key].append(time.perf_counter() - start)
                results.append(evaluation.to_dict())
                cached.append(evaluation.cached)
            shutil.rmtree(cache, ignore_errors=True)
            for key in ("cli_first", "cli_second"):
                start = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "ufl", "evaluate", "--workspace", str(root), "--all-tasks",
                                       "--json", "--device", "cpu"], env=env, capture_output=True, text=True, check=True)
                times[key].append(time.perf_counter() - start)
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        tasks = sorted(Workspace(root).tasks)
        edges = [n for n in tasks if Workspace(root).spec(n).kind == "edges"]
    if any(r["tasks"] != results[0]["tasks"] for r in results):
        raise SystemExit("the metrics differ between runs")
    if any(any(c.values()) for c in cached[0::3]) or not all(all(c.values()) for c in cached[1::3]):
        raise SystemExit("a first run read the metrics cache, or a second run did not")
    best = {k: min(v) for k, v in times.items()}
    report = {"machine": machine(), "tasks": tasks, "edge_tasks": edges, "repeats": args.repeats,
              "ratio": best["api_second"] / best["api_first"], "cli_ratio": best["cli_second"] / best["cli_first"],
              "edges_ratio": best["api_edges_only"] / best["api_first"],
              **{f"{k}_seconds": v for k, v in best.items()}, "runs": times}
    emit(report, args.json)


if __name__ == "__main__":
    main()
