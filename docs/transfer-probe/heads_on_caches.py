"""Retrain the heads of finished transfer workspaces with another schedule (probe k-heads64.json).

    python heads_on_caches.py OUT SEED TASKS EPOCHS LR

Copies OUT/seed<SEED>/ufl/{medusa,random}/workspace (a ``ufl reproduce --preset transfer`` run) to
./ws-<model>-<SEED> and trains a head per task on their cached PASCAL features with
``HeadTrainingConfig(epochs, batch_size=8, lr, seed=SEED)`` (1 thread); prints
``seed epochs lr model task metric seconds`` per head.
"""
import sys, time, torch, shutil, os
from ufl.workspace import HeadTrainingConfig, Workspace
from ufl.taskspec import get_spec
torch.set_num_threads(1)
src, seed = sys.argv[1], int(sys.argv[2]); tasks = sys.argv[3].split(","); epochs=[int(e) for e in sys.argv[4].split(",")]; lr=float(sys.argv[5])
for m in ["medusa","random"]:
    d=f"ws-{m}-{seed}"
    if not os.path.isdir(d): shutil.copytree(f"{src}/seed{seed}/ufl/{m}/workspace", d)
for ep in epochs:
  for m in ["medusa","random"]:
    ws = Workspace(f"ws-{m}-{seed}")
    for t in tasks:
        t0=time.time()
        r = ws.add_task(t, config=HeadTrainingConfig(epochs=ep, batch_size=8, lr=lr, seed=seed), device="cpu", progress=False, workers=0, replace=True)
        print(seed, ep, lr, m, t, round(r.metrics[get_spec(t).metric],2), round(time.time()-t0,1), flush=True)
