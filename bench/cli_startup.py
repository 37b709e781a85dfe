"""Benchmark: wall time of ``ufl --help`` (and ``ufl list-tasks``), each a fresh interpreter.

    python bench/cli_startup.py [--json] [--repeats 7]

Runs ``python -m ufl --help`` with this checkout first on the path, ``--repeats`` times, interleaved
with a bare ``python -c pass`` (the interpreter's own start-up, for reference) and ``ufl list-tasks``
on an empty workspace; keeps the best of each. Also reports which heavy modules (torch, timm,
torchvision, wandb) ``--help`` imports: none is the point. Target: ``help_seconds`` <= 0.5 on 2 cores.
Prints one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import emit, machine  # noqa: E402

HEAVY = ("torch", "timm", "torchvision", "wandb", "h5py")


def wall(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved runs; the best of each is kept")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}

    with tempfile.TemporaryDirectory() as tmp:
        # an empty workspace, made by a subprocess so that this process stays as light as the CLI
        ws = Path(tmp) / "ws"
        subprocess.run([sys.executable, "-c", "import sys, os; from ufl.workspace.manifest import Manifest; "
                        "os.makedirs(sys.argv[1]); Manifest(sys.argv[1]).create({'fingerprint': 'bench', 'config': {}, 'weights': 'backbone.safetensors', 'channels': [18, 36, 72, 144]})", str(ws)],
                       check=True, env=env)
        commands = {"python_seconds": ["-c", "pass"], "help_seconds": ["-m", "ufl", "--help"],
                    "list_tasks_seconds": ["-m", "ufl", "list-tasks", "--workspace", str(ws)]}
        times: dict[str, list[float]] = {key: [] for key in commands}
        for _ in range(args.repeats):
            for key, command in commands.items():
                times[key].append(wall(command, env))
    probe = ("import sys\nfrom ufl.cli import main\ntry:\n    main(['--help'], prog_name='ufl')\nexcept SystemExit:\n"
             f"    pass\nprint('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("HEAVY=")][-1]
    heavy = [m for m in line[len("HEAVY="):].split(",") if m]

    report = {"machine": machine(), "repeats": args.repeats, **{k: min(v) for k, v in times.items()},
              "help_imports": heavy}
    emit(report, args.json)


if __name__ == "__main__":
    main()
