"""Several folder datasets in one workspace, and a second task on a cached folder dataset
(issue 17, items 1 and 2): nothing of the first dataset or its registered tasks changes."""

import hashlib
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ufl.cli import main
from ufl.errors import WorkspaceError
from ufl.taskspec import load_spec
from ufl.workspace import Workspace
from ufl.workspace.cache import open_split
from ufl.workspace.folders import name_from_folder, resolve_dataset
from ufl.workspace.targets import open_cache, target_file
from ufl.workspace.views import ViewDataset

TRAIN = ("--epochs", "1", "--batch-size", "2", "--device", "cpu")


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _ok(*args):
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder(root, write, rng, tasks, n=6):
    """A folder dataset: n 64x64 images, splits 4 train / rest val, one target folder per task."""
    for i in range(n):
        image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        write.image(root / "images" / f"im{i}.png", image)
        for task, classes in tasks.items():
            write.png(root / task / f"im{i}.png", (image[..., i % 3] // (256 // classes)).astype(np.uint8))
    write.text(root / "splits" / "train.txt", [f"im{i}" for i in range(4)])
    write.text(root / "splits" / "val.txt", [f"im{i}" for i in range(4, n)])
    return root


def _spec(path, name, classes):
    path.write_text(f"name: {name}\nkind: segmentation\nchannels: {classes}\n")
    return path


@pytest.fixture
def setup(tmp_path, write, rng):
    ws = Workspace.from_backbone(tmp_path / "ws", "resnet18")
    mydata = _folder(tmp_path / "mydata", write, rng, {"colour4": 4, "foreground": 2})
    mydata2 = _folder(tmp_path / "elsewhere" / "mydata2", write, rng, {"bright": 2})
    specs = {name: _spec(tmp_path / f"{name}.yaml", name, c) for name, c in
             (("colour4", 4), ("foreground", 2), ("bright", 2))}
    # the first dataset: cached with 2 views (flips), one task registered
    _ok("cache-features", "--workspace", ws.root, "--dataset", "folder", "--root", mydata, "--spec", specs["colour4"],
        "--size", "64x64", "--views", "2", "--device", "cpu")
    _ok("add-task", "--workspace", ws.root, "--spec", specs["colour4"], "--dataset", "folder", *TRAIN)
    return ws, mydata, mydata2, specs


@pytest.mark.slow
def test_a_second_folder_dataset_and_a_second_task_leave_the_first_untouched(setup, tmp_path):
    ws, mydata, mydata2, specs = setup
    assert ws.tasks["colour4"]["dataset"] == "mydata"
    first = ws.read()["data"]["mydata"]
    caches = {key: _sha(ws.root / r["file"]) for key, r in ws.read()["caches"].items()}

    # 1. a second folder dataset: its own name, caches and manifest entry
    result = _ok("cache-features", "--workspace", ws.root, "--dataset", "folder", "--root", mydata2, "--spec",
                 specs["bright"], "--size", "64x64", "--device", "cpu")
    assert "mydata2/train/1v" in result.output and "already cached" not in result.output
    data = ws.read()["data"]
    assert data["mydata"] == first and data["mydata2"]["root"] == str(mydata2.resolve())
    assert [s["name"] for s in data["mydata2"]["specs"]] == ["bright"]
    _ok("add-task", "--workspace", ws.root, "--spec", specs["bright"], "--dataset", "folder", "--root", mydata2, *TRAIN)
    assert ws.tasks["bright"]["dataset"] == "mydata2"

    # 2. a second task on the first dataset: no re-caching, its targets in files beside the caches
    result = _ok("add-task", "--workspace", ws.root, "--spec", specs["foreground"], "--dataset", "folder", "--root",
                 mydata, *TRAIN)
    assert ws.tasks["foreground"]["dataset"] == "mydata"
    assert {key: _sha(ws.root / ws.read()["caches"][key]["file"]) for key in caches} == caches  # features untouched
    assert [s["name"] for s in ws.read()["data"]["mydata"]["specs"]] == ["colour4", "foreground"]
    for key in caches:
        record = ws.read()["caches"][key]
        assert record["tasks"] == ["colour4"] and set(record["targets"]) == {"foreground"}
        assert (ws.root / record["targets"]["foreground"]["file"]) == target_file(ws.root / record["file"], "foreground")

    # doctor counts the target files as the caches' own (checked, not litter); probe reads them
    from ufl.probe import probe_task
    from ufl.workspace.doctor import doctor

    report = doctor(ws.root)
    assert report.ok and not [f for f in report.findings if ".targets-" in f.path], report.lines()
    assert probe_task(ws, spec_file=specs["foreground"], dataset="mydata", images=4, pixels_per_image=16,
                      store=False).task == "foreground"

    # the registered tasks of both datasets evaluate as registered; visualize draws both datasets
    result = _ok("evaluate", "--workspace", ws.root, "--all-tasks", "--json", "--device", "cpu")
    report = json.loads(result.stdout)
    assert set(report["tasks"]) == {"colour4", "bright", "foreground"}
    assert all(r["drift"] == 0.0 for r in report["tasks"].values()), report
    result = _ok("visualize", "--workspace", ws.root, "--out", tmp_path / "vis", "--num", "1", "--no-attention",
                 "--device", "cpu", "--dataset", "folder")
    assert {p.name for p in (tmp_path / "vis").iterdir()} == {"visualize-mydata.png", "visualize-mydata2.png"}

    # --overwrite re-caches with every task's targets in the cache itself: still drift 0
    _ok("cache-features", "--workspace", ws.root, "--dataset", "folder", "--dataset-name", "mydata", "--overwrite",
        "--force", "--size", "64x64", "--views", "2", "--device", "cpu")
    record = ws.find_cache("mydata", "train")
    assert record["tasks"] == ["colour4", "foreground"] and "targets" not in record
    assert not list((ws.root / "caches").glob("*.targets-*"))
    report = ws.evaluate(device="cpu", progress=False).to_dict()
    assert all(r["drift"] == 0.0 for r in report["tasks"].values()), report


@pytest.mark.slow
def test_added_targets_are_the_targets_of_the_cached_views(setup):
    ws, mydata, _, specs = setup
    _ok("cache-features", "--workspace", ws.root, "--dataset", "folder", "--spec", specs["colour4"], "--spec",
        specs["foreground"], "--views", "2", "--device", "cpu")
    record = ws.find_cache("mydata", "train")
    assert record["views"] == 2 and set(record["targets"]) == {"foreground"}
    rows = open_cache(ws, record, ["colour4", "foreground"])
    expected = ViewDataset(open_split(ws, "mydata", "train", mydata, [load_spec(specs["foreground"])]), 2, (64, 64))
    assert len(rows) == len(expected) == 8
    for i in range(len(rows)):
        item = rows[i]
        assert torch.equal(item["foreground"], expected[i]["foreground"]) and item["id"] == expected[i]["id"]
        assert len(item["features"]) == 4 and item["colour4"].shape == (64, 64)
    assert torch.equal(rows[1]["foreground"], rows[0]["foreground"].flip(-1))  # view 1 is the flip
    report = ws.doctor()  # the target files are the caches' own: checked, not litter
    assert report.ok and not report.findings, report.lines()


@pytest.mark.slow
def test_which_folder_dataset_is_meant(setup, tmp_path, write, rng):
    ws, mydata, mydata2, specs = setup
    assert resolve_dataset(ws, "folder") == "mydata"  # the only one
    assert resolve_dataset(ws, "folder", root=mydata) == "mydata"
    assert resolve_dataset(ws, "folder", root=mydata2) == "mydata2"  # a new one, named after its folder
    assert resolve_dataset(ws, "pascal") == "pascal"
    assert name_from_folder(tmp_path / "My-Data 2") == "my_data_2" and name_from_folder(tmp_path / "nyud") == "folder_nyud"
    _ok("cache-features", "--workspace", ws.root, "--dataset", "folder", "--root", mydata2, "--spec", specs["bright"],
        "--size", "64x64", "--device", "cpu", "--split", "val")
    result = _invoke("add-task", "--workspace", ws.root, "--spec", specs["bright"], "--dataset", "folder", *TRAIN)
    assert result.exit_code == 1 and "several folder datasets" in result.stderr and "--dataset-name" in result.stderr
    assert "mydata2" in result.stderr and "Traceback" not in result.output
    # another folder with the same name is not taken for the first: it needs its own name
    other = _folder(tmp_path / "copy" / "mydata", write, rng, {"colour4": 4})
    result = _invoke("cache-features", "--workspace", ws.root, "--dataset", "folder", "--root", other, "--spec",
                     specs["colour4"], "--size", "64x64", "--device", "cpu")
    assert result.exit_code == 1 and "--dataset-name" in result.stderr and str(other.resolve()) in result.stderr
    with pytest.raises(WorkspaceError, match="not .*another --dataset-name"):
        resolve_dataset(ws, "folder", root=other, name="mydata")
    assert resolve_dataset(ws, "folder", root=other, name="mydata_copy") == "mydata_copy"
    # a changed spec under a registered name would change what the task was trained on
    _spec(specs["colour4"], "colour4", 5)
    result = _invoke("cache-features", "--workspace", ws.root, "--dataset", "folder", "--root", mydata, "--spec",
                     specs["colour4"], "--device", "cpu")
    assert result.exit_code == 1 and "another spec" in result.stderr and "--overwrite" in result.stderr
