"""ufl demo: the whole pipeline end to end (tiny sizes), its table and the files it leaves."""

import json

from click.testing import CliRunner

from ufl.cli import main


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
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "already exists" in again.stderr
