"""Sizing the transfer benchmark: does NYUD pretraining help the frozen-backbone PASCAL heads, and what does it cost?

    python bench/transfer_probe.py [--json] [--knob default,0,2] [--seeds 0,1] [--size 64] [--train 48]
                                   [--val 16] [--pretrain-epochs 4] [--head-epochs 6] [--batch-size 8]
                                   [--lr 1e-3] [--views 1] [--tasks human_parts,saliency,normals]

For each value of the relatedness knob (``make_synthetic(nyud_persons=...)``; ``default`` = the
generator's own rooms), generated data (data seed 0), and for each seed: Medusa pretrained on the
NYUD-like data (semseg + depth, normals + edges auxiliary, as ``ufl reproduce``'s ``_pretrain_step``)
and frozen (``Workspace.from_checkpoint(..., register=False)``), against a frozen random-init
HRNet-18 (``torch.manual_seed(seed)`` then ``Workspace.from_backbone``, as the planned ``random``
control). Both cache PASCAL train + val and train a Medusa head per task with the same
``HeadTrainingConfig`` (same seed, so the same data order): a paired comparison per seed. The gap
is pretrained minus random, signed so that positive means pretrained is better (normals' mean
angular error: random minus pretrained); over >= 2 seeds its mean and 95 % t-interval.

Timings (seconds, wall clock) of each step are reported so that a preset can be sized:
``pretrain`` (one NYUD Medusa training), ``cache`` (PASCAL train + val features of one workspace),
``head:<task>`` (one head), ``init`` (workspace creation); with ``--time-models`` / ``--oracle``
also ``pretrain:<model>`` (another NYUD model, e.g. MTI-Net) and ``oracle:<task>`` (a single-task
PASCAL model trained with its backbone unfrozen, as many epochs as the pretraining). NOTE: the figures depend on the load
of the machine; the step timings are medians over the runs of this invocation, and
``transfer_seed_estimate_seconds`` adds them up as one seed of the planned ``transfer`` preset
(5 NYUD pretrainings, the ``--oracle`` runs, 7 workspaces with their heads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, machine  # noqa: E402
from ufl.checkpoint import has_checkpoint  # noqa: E402
from ufl.synthetic import make_synthetic  # noqa: E402
from ufl.evidence import paired_interval, verdict  # noqa: E402
from ufl.taskspec import get_spec  # noqa: E402
from ufl.training.pretrain import PretrainConfig, pretrain  # noqa: E402
from ufl.workspace import HeadTrainingConfig, Workspace  # noqa: E402

BACKBONE = "hrnet_w18_small_v2"


def gap_table(reports: list[dict]) -> str:
    """Markdown: one row per (settings, knob, head epochs) of saved ``--json`` reports, one column per
    task: mean gap, 95 % CI and verdict (held: CI > 0, not held: CI < 0, undecided), per-seed gaps."""
    tasks = list(dict.fromkeys(g["task"] for r in reports for g in r["gaps"]))
    lines = ["| px / train / val / pretrain ep / head ep | `--nyud-persons` | seeds | "
             + " | ".join(f"{t} gap" for t in tasks) + " |", "|---|---|---|" + "---|" * len(tasks)]
    for report in reports:
        a = report["settings"]
        rows: dict[tuple, dict[str, dict]] = {}
        for g in report["gaps"]:
            rows.setdefault((g["knob"], g.get("head_epochs", a["head_epochs"])), {})[g["task"]] = g
        for (knob, epochs), by_task in rows.items():
            cells = []
            for task in tasks:
                g = by_task.get(task)
                if g is None:
                    cells.append("")
                    continue
                ci = "" if g["ci95"] is None else f" [{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}] {g['verdict']}"
                cells.append(f"{g['mean']:+.2f}{ci} ({', '.join(f'{d:+.1f}' for d in g['per_seed'])})")
            seeds = len(next(iter(by_task.values()))["per_seed"])
            lines.append(f"| {a['size']} / {a['train']} / {a['val']} / {a['pretrain_epochs']} / {epochs} | {knob} | "
                         f"{seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: Where the default rooms sort among the knob values: 0..1 persons in two room types, 0.8 % person
#: pixels (README), between ``--nyud-persons 0`` (0 %) and 1 (7.4 %).
DEFAULT_KNOB_ORDER = 0.5


def dose_table(reports: list[dict]) -> str:
    """Markdown: for each pair of knob values of saved reports with the same settings, seeds and head
    epochs, the per-seed paired difference of the gaps (higher knob minus lower), its mean, 95 %
    interval and verdict, per task. The random floor does not depend on the knob (only the NYUD-like
    data changes), so the difference of the gaps is that of the pretrained heads (checked)."""
    runs: dict[tuple, dict[str, dict]] = {}
    for report in reports:
        a = report["settings"]
        setting = (a["size"], a["train"], a["val"], a["pretrain_epochs"])
        protocol = (a.get("lr"), a.get("batch_size"), a.get("views"))  # must match to be paired
        for run in report["runs"]:
            for key, scores in run.items():
                if key.split(":")[0] == "pretrained":  # "pretrained:EPOCHS"; early reports: "pretrained"
                    epochs = int(key.split(":")[1]) if ":" in key else int(a["head_epochs"])
                    runs.setdefault((*setting, epochs, run["knob"], protocol), {})[run["seed"]] = \
                        (scores, run[key.replace("pretrained", "random")])
    lines = ["| px / train / val / pretrain ep / head ep | `--nyud-persons` | seeds | task | gap difference, "
             "mean [95 % CI] verdict (per seed) |", "|---|---|---|---|---|"]
    keys = sorted(runs, key=lambda k: (k[:5], DEFAULT_KNOB_ORDER if k[5] == "default" else float(k[5])))
    for i, low in enumerate(keys):
        for high in keys[i + 1:]:
            if high[:5] != low[:5] or high[6] != low[6] or runs[high].keys() != runs[low].keys():
                continue
            seeds = sorted(runs[low])
            for task in sorted(set(runs[low][seeds[0]][0]) & set(runs[high][seeds[0]][0])):
                if any(runs[low][s][1][task] != runs[high][s][1][task] for s in seeds):
                    raise ValueError(f"knobs {low[5]} and {high[5]}: the random floors of {task} differ")
                diffs = [runs[high][s][0][task] - runs[low][s][0][task] for s in seeds]
                if not get_spec(task).higher_is_better:  # a positive difference means a larger gap
                    diffs = [-d for d in diffs]
                mean, ci = paired_interval(diffs)
                interval = "" if ci is None else f" [{ci[0]:+.2f}, {ci[1]:+.2f}] {verdict(ci)}"
                lines.append(f"| {' / '.join(str(v) for v in low[:5])} | {high[5]} - {low[5]} | {len(seeds)} | "
                             f"{task} | {mean:+.2f}{interval} ({', '.join(f'{d:+.1f}' for d in diffs)}) |")
    return "\n".join(lines)


def knob_value(text: str) -> float | None:
    return None if text == "default" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--knob", default="default", help="comma-separated nyud_persons values ('default' = None)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--size", type=int, default=64, help="image height of generated data and of training")
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--val", type=int, default=16)
    parser.add_argument("--pretrain-epochs", type=int, default=4)
    parser.add_argument("--head-epochs", default="6", help="comma-separated: each value trains (replaces) the "
                        "heads of the same workspaces again, a gap per value")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--tasks", default="human_parts,saliency,normals")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-models", default="", help="comma-separated other NYUD models (e.g. mti-net) to "
                        "pretrain once per seed as Medusa is, for their timing ('pretrain:<model>') and NYUD metrics")
    parser.add_argument("--oracle", default="", help="comma-separated PASCAL tasks to train single-task with the "
                        "backbone unfrozen (the oracle control), once per seed: timing 'oracle:<task>' and metric")
    parser.add_argument("--out", default=None, help="keep data and runs here (default: a temporary folder)")
    parser.add_argument("--table", nargs="+", metavar="REPORT.json", help="only print the markdown gap table of "
                        "reports saved with --json")
    args = parser.parse_args()
    if args.table:
        reports = [json.loads(Path(f).read_text()) for f in args.table]
        print(gap_table(reports))
        if len({run["knob"] for r in reports for run in r["runs"]}) > 1:
            print()
            print(dose_table(reports))
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    tmp = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ufl-transfer-probe-"))
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = args.tasks.split(",")
    head_epochs = [int(e) for e in args.head_epochs.split(",")]
    nyud_size = (args.size, 32 * max(1, round(args.size * 4 / 3 / 32)))  # 4:3, sides multiples of 32
    pascal_size = (args.size, args.size)
    timings: dict[str, list[float]] = {}

    def timed(key: str, fn):
        t0 = time.perf_counter()
        value = fn()
        timings.setdefault(key, []).append(time.perf_counter() - t0)
        return value

    def workspace(path: Path, make, data: Path, seed: int) -> Workspace:
        """The workspace at ``path`` (made and cached, timed, unless a previous invocation left it)."""
        if (path / "workspace.json").is_file():
            return Workspace(path)
        ws = timed("init", make)
        timed("cache", lambda: ws.cache_features("pascal", ["train", "val"], data_root=data, size=pascal_size,
                                                 views=args.views, device="cpu", seed=seed, progress=False,
                                                 workers=0))
        return ws

    def heads(ws: Workspace, seed: int, epochs: int) -> dict[str, float]:
        config = HeadTrainingConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr, seed=seed)
        out = {}
        for task in tasks:
            result = timed(f"head:{task}:{epochs}", lambda: ws.add_task(task, config=config, device="cpu",
                                                                         progress=False, workers=0, replace=True))
            out[task] = result.metrics[get_spec(task).metric]
        return out

    runs, gaps = [], []
    for knob_text in args.knob.split(","):
        knob = knob_value(knob_text)
        data = tmp / f"data-{knob_text}"
        if not (data / "NYUD_MT").is_dir():
            timed("make_synthetic", lambda: make_synthetic(data, size=args.size, n_train=args.train, n_val=args.val,
                                                           seed=0, progress=False, nyud_persons=knob))
        for seed in seeds:
            run = tmp / f"run-{knob_text}-{seed}"
            resumed = has_checkpoint(run)  # left by a previous invocation with the same --out: reused
            result = (lambda f: f() if resumed else timed("pretrain", f))(lambda: pretrain(PretrainConfig(
                out=str(run), data_root=str(data), size=nyud_size, model="medusa", tasks=("semseg", "depth"),
                aux=("normals", "edges"), epochs=args.pretrain_epochs, batch_size=args.batch_size, lr=args.lr,
                val_every=args.pretrain_epochs, workers=0, device="cpu", seed=seed, progress=False, resume=resumed)))
            ws_pre = workspace(tmp / f"ws-pre-{knob_text}-{seed}",
                               lambda: Workspace.from_checkpoint(tmp / f"ws-pre-{knob_text}-{seed}", run,
                                                                 register=False), data, seed)

            def random_ws():
                torch.manual_seed(seed)
                return Workspace.from_backbone(tmp / f"ws-rand-{knob_text}-{seed}", BACKBONE, None)
            ws_rand = workspace(tmp / f"ws-rand-{knob_text}-{seed}", random_ws, data, seed)
            row = {"knob": knob_text, "seed": seed, "nyud": result.metrics}
            for epochs in head_epochs:
                pre, rnd = heads(ws_pre, seed, epochs), heads(ws_rand, seed, epochs)
                row[f"pretrained:{epochs}"], row[f"random:{epochs}"] = pre, rnd
                print(f"knob {knob_text} seed {seed} head epochs {epochs}: pretrained {pre} random {rnd}",
                      file=sys.stderr)
            for model in filter(None, args.time_models.split(",")):
                other = timed(f"pretrain:{model}", lambda: pretrain(PretrainConfig(
                    out=str(tmp / f"run-{model}-{knob_text}-{seed}"), data_root=str(data), size=nyud_size,
                    model=model, tasks=("semseg", "depth"), aux=("normals", "edges"), epochs=args.pretrain_epochs,
                    batch_size=args.batch_size, lr=args.lr, val_every=args.pretrain_epochs, workers=0,
                    device="cpu", seed=seed, progress=False)))
                row[f"nyud:{model}"] = other.metrics
            for task in filter(None, args.oracle.split(",")):
                oracle = timed(f"oracle:{task}", lambda: pretrain(PretrainConfig(
                    out=str(tmp / f"oracle-{task}-{knob_text}-{seed}"), dataset="pascal", data_root=str(data),
                    size=pascal_size, model="single-task", tasks=(task,), aux=(), epochs=args.pretrain_epochs,
                    batch_size=args.batch_size, lr=args.lr, val_every=args.pretrain_epochs, workers=0,
                    device="cpu", seed=seed, progress=False)))
                row.setdefault("oracle", {})[task] = oracle.metrics[task][get_spec(task).metric]
            runs.append(row)
        for epochs, task in ((e, t) for e in head_epochs for t in tasks):
            sign = 1.0 if get_spec(task).higher_is_better else -1.0
            diffs = [sign * (r[f"pretrained:{epochs}"][task] - r[f"random:{epochs}"][task])
                     for r in runs if r["knob"] == knob_text]
            mean, ci = paired_interval(diffs)
            gaps.append({"knob": knob_text, "head_epochs": epochs, "task": task, "metric": get_spec(task).metric,
                         "per_seed": diffs, "mean": mean, "ci95": None if ci is None else list(ci),
                         "verdict": None if ci is None else verdict(ci)})
    steps = {key: statistics.median(values) for key, values in timings.items()}
    # One seed of the planned transfer preset: 5 NYUD pretrainings (Medusa, MTI-Net, 3 Medusa
    # ablations, each costing about a Medusa run), the oracle runs, 7 workspaces (init, cache, heads).
    report_seed = None
    if "pretrain" in steps and "cache" in steps:  # (not when everything was reused)
        last = head_epochs[-1]
        ufl = steps["init"] + steps["cache"] + sum(steps[f"head:{t}:{last}"] for t in tasks)
        report_seed = {"head_epochs": last,
                       "pretrain_x5": 4 * steps["pretrain"] + steps.get("pretrain:mti-net", steps["pretrain"]),
                       "oracle": sum(v for k, v in steps.items() if k.startswith("oracle:")),
                       "workspaces_x7": 7 * ufl}
        report_seed["total"] = sum(v for k, v in report_seed.items() if k != "head_epochs")
    report = {"machine": machine(), "settings": vars(args), "runs": runs, "gaps": gaps, "step_seconds": steps,
              "transfer_seed_estimate_seconds": report_seed,
              "seconds": round(time.perf_counter() - started, 1)}
    emit(report, args.json)


if __name__ == "__main__":
    main()
