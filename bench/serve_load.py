"""Load test of ``ufl serve`` on loopback, and one backbone pass for N heads vs N single-task passes.

    python bench/serve_load.py [--json] [--requests 200] [--clients 8] [--size 64]

Builds a small workspace on generated PASCAL-like data (ConvNeXt-atto, random init; saliency,
semseg and human_parts heads, one epoch each), starts ``ufl serve`` as a subprocess on 127.0.0.1
(a free port; nothing else is ever contacted), and sends ``--requests`` POST /predict requests (the
val images as PNG, ``format=png``) from ``--clients`` concurrent clients. Reports throughput
(requests/s), p50/p99 latency (ms) and errors (non-200 answers or failed connections).

Then, in-process on one batch of images: the backbone once + every head (what the server does)
against one backbone + head pass per task (N separate single-task models), interleaved, median of
``--repeats``; ``speedup = separate / shared``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine  # noqa: E402
from ufl.synthetic import make_synthetic  # noqa: E402
from ufl.serve import ModelServer  # noqa: E402
from ufl.workspace import HeadTrainingConfig, Workspace  # noqa: E402

TASKS = ("saliency", "semseg", "human_parts")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="ufl-serve-load-"))
    make_synthetic(tmp / "data", size=args.size, n_train=8, n_val=8, seed=0)
    ws = Workspace.from_backbone(tmp / "ws", "convnext_atto", pretrained=None)
    ws.cache_features("pascal", data_root=tmp / "data", size=(args.size, args.size), device="cpu", progress=False,
                      batch_size=4, workers=0)
    for task in TASKS:
        ws.add_task(task, config=HeadTrainingConfig(epochs=1, batch_size=4, lr=1e-3), device="cpu", progress=False,
                    workers=0)
    images = [p.read_bytes() for p in sorted((tmp / "data" / "PASCAL_MT" / "JPEGImages").glob("*.jpg"))[:8]]

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "ufl", "serve", "--workspace", str(ws.root), "--host", "127.0.0.1",
                             "--port", str(port), "--device", "cpu"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        for _ in range(600):
            try:
                httpx.get(f"{base}/tasks", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)

        def one(i: int) -> tuple[float, bool]:
            start = time.perf_counter()
            try:
                r = httpx.post(f"{base}/predict", files={"image": ("x.jpg", images[i % len(images)], "image/jpeg")},
                               timeout=120)
                ok = r.status_code == 200 and set(r.json()) == set(TASKS)
            except httpx.HTTPError:
                ok = False
            return time.perf_counter() - start, ok

        for i in range(4):  # warm-up
            one(i)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - started
        health = httpx.get(f"{base}/health").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    latencies = sorted(r[0] * 1000 for r in results)
    load = {"requests": args.requests, "clients": args.clients, "seconds": round(wall, 2),
            "throughput_rps": round(args.requests / wall, 2),
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1),
            "errors": sum(not r[1] for r in results),
            "mean_batch": round(health["requests"] / max(health["batches"], 1), 2)}

    server = ModelServer(ws, device="cpu")
    from PIL import Image
    import io
    batch = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in images]
    shared, separate = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        server.predict_batch(batch, [None] * len(batch))
        shared.append(time.perf_counter() - start)
        start = time.perf_counter()
        for task in TASKS:
            server.predict_batch(batch, [[task]] * len(batch))
        separate.append(time.perf_counter() - start)
    heads = {"tasks": len(TASKS), "images": len(batch), "shared_ms": round(statistics.median(shared) * 1000, 1),
             "separate_ms": round(statistics.median(separate) * 1000, 1)}
    heads["speedup"] = round(heads["separate_ms"] / heads["shared_ms"], 2)
    report = {"machine": machine(), "backbone": "convnext_atto", "size": args.size, "load": load,
              "one_backbone_n_heads": heads}
    if args.json:
        print(json.dumps(report))
        return
    print(f"{load['requests']} requests from {load['clients']} clients: {load['throughput_rps']} req/s, "
          f"p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, errors {load['errors']}, "
          f"mean batch {load['mean_batch']}")
    print(f"{heads['tasks']} tasks on {heads['images']} images: one backbone pass {heads['shared_ms']} ms, "
          f"{heads['tasks']} single-task passes {heads['separate_ms']} ms ({heads['speedup']}x)")
    print(report["machine"])


if __name__ == "__main__":
    main()
