"""ufl demo: the whole pipeline end to end (tiny sizes), its table and the files it leaves."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ufl.cli import main
from ufl.demo import markdown_table, readme_table, replace_readme_table

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_demo_runs_every_step_and_leaves_a_working_workspace(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--size", "64", "--train", "6", "--val", "3", "--pretrain-epochs", "1",
            "--head-epochs", "1", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for task in ("semseg", "depth", "normals", "edges", "human_parts", "saliency"):
        assert task in result.stdout
    assert "trivial" in result.stdout and "drift" in result.stdout
    results = json.loads((out / "results.json").read_text())
    tasks = results["evaluation"]["tasks"]
    assert set(tasks) == {"semseg", "depth", "normals", "edges", "human_parts", "saliency"}
    assert all(t["drift"] == 0.0 for t in tasks.values())
    assert (out / "data" / "NYUD_MT").is_dir() and (out / "workspace" / "workspace.json").is_file()
    assert (out / "evaluate.png").stat().st_size > 1000
    for dataset in ("nyud", "pascal"):  # a prediction picture: a val image with ground truth and prediction
        assert (out / f"visualize-{dataset}.png").stat().st_size > 5000
        assert results["files"][f"visualize-{dataset}"] == str(out / f"visualize-{dataset}.png")
    assert "only on generated data" in result.stderr or "generated data" in \
        CliRunner().invoke(main, ["list-tasks", "--workspace", str(out / "workspace")]).stderr
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "already exists" in again.stderr


def _results() -> dict:
    tasks = {"semseg": ("nyud", "mIoU", True, 4.8312, 1.0712), "depth": ("nyud", "rmse", False, 0.91649, 1.39312),
             "saliency": ("pascal", "maxF", True, 45.04, 0.0)}
    return {"evaluation": {"tasks": {n: {"dataset": d, "metric": m, "higher_is_better": up, "metrics": {m: v},
                                         "trivial": {m: t}, "drift": 0.0}
                                     for n, (d, m, up, v, t) in tasks.items()}},
            "seconds": {"pretrain": 189.2, "total": 293.4}}


@pytest.mark.slow
def test_the_readme_table_is_generated_from_results_and_read_back():
    table = markdown_table(_results())
    assert table.splitlines()[2] == "| semseg | NYUD | mIoU ↑ (40 classes) | 4.83 | 1.07 | 0 |"
    assert table.splitlines()[3] == "| depth | NYUD | RMSE (m) ↓ | 0.916 | 1.39 | 0 |"
    text = "intro\n<!-- demo-table -->\n| old |\n<!-- /demo-table -->\nafter\n"
    replaced = replace_readme_table(text, _results())
    assert replaced.startswith("intro\n") and replaced.endswith("after\n") and "| old |" not in replaced
    rows = readme_table(replaced)
    assert [r[0] for r in rows] == ["semseg", "depth", "saliency"] and rows[2][3:] == ["45.0", "0.0", "0"]
    script = subprocess.run([sys.executable, str(README.parent / "bench" / "demo_table.py"), "--help"],
                            capture_output=True, text=True)
    assert script.returncode == 0 and "results.json" in script.stdout


def test_the_readme_has_a_machine_readable_demo_table():
    rows = readme_table(README.read_text())
    assert [r[0] for r in rows] == ["semseg", "depth", "normals", "edges", "human_parts", "saliency"]
    assert all(len(r) == 6 for r in rows)


def _close(printed: str, measured: float) -> bool:
    """``printed`` is ``measured`` rounded to the digits it shows (half a unit of its last digit)."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - measured) <= 0.5 * 10 ** -decimals + 1e-9


@pytest.mark.slow
def test_readme_demo_table_matches_a_default_demo_run(tmp_path):
    """``ufl demo`` with its defaults prints what the README's table says, within rounding (about 5
    minutes on 2 cores; regenerate the table with ``python bench/demo_table.py OUT/results.json
    --write README.md`` when the demo's numbers change on purpose)."""
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    env.pop("OMP_NUM_THREADS", None)  # the demo's default: every usable core, as the README's run
    subprocess.run([sys.executable, "-m", "ufl", "demo", "--out", str(out), "--device", "cpu"], check=True,
                   capture_output=True, text=True, env=env)
    results = json.loads((out / "results.json").read_text())
    measured = results["evaluation"]["tasks"]
    for row in readme_table(README.read_text()):
        name, ufl_value, trivial = row[0], row[3], row[4]
        metric = measured[name]["metric"]
        assert _close(ufl_value, measured[name]["metrics"][metric]), (name, ufl_value, measured[name])
        assert _close(trivial, measured[name]["trivial"][metric]), (name, trivial, measured[name])
        assert measured[name]["drift"] == 0.0
