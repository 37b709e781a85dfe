"""Retrain the heads of finished transfer workspaces with another schedule (probe k-heads64.json).

    python heads_on_caches.py OUT SEED TASKS EPOCHS LR

Copies OUT/seed<SEED>/ufl/{medusa,random}/workspace (a ``ufl reproduce --preset transfer`` run) to
./ws-<model>-<SEED> and trains a head per task on their cached PASCAL features with
``HeadTrainingConfig(epochs, batch_size=8, lr, seed=SEED)`` (1 thread), for each of the
comma-separated EPOCHS; prints ``seed epochs lr model task metric seconds`` per head.
"""
import os
import shutil
import sys
import time

import torch

from ufl.taskspec import get_spec
from ufl.workspace import HeadTrainingConfig, Workspace

MODELS = ("medusa", "random")


def main(src: str, seed: int, tasks: list[str], epochs: list[int], lr: float) -> None:
    torch.set_num_threads(1)
    for model in MODELS:
        folder = f"ws-{model}-{seed}"
        if not os.path.isdir(folder):
            shutil.copytree(f"{src}/seed{seed}/ufl/{model}/workspace", folder)
    for n_epochs in epochs:
        for model in MODELS:
            ws = Workspace(f"ws-{model}-{seed}")
            for task in tasks:
                started = time.time()
                result = ws.add_task(task, config=HeadTrainingConfig(epochs=n_epochs, batch_size=8, lr=lr, seed=seed),
                                     device="cpu", progress=False, workers=0, replace=True)
                print(seed, n_epochs, lr, model, task, round(result.metrics[get_spec(task).metric], 2),
                      round(time.time() - started, 1), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), [int(e) for e in sys.argv[4].split(",")],
         float(sys.argv[5]))
