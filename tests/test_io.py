"""ufl.io: atomic writes (the file appears only on success; a failure keeps the old file and
leaves no temporary behind), strict JSON, and safetensors weights."""

import json
import os
import stat

import pytest
import torch

from ufl.errors import UflError
from ufl.io import atomic_path, json_safe, load_weights, read_json, save_weights, write_json


def test_the_file_appears_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "deep" / "folder" / "result.txt"  # parent folders are created
    with atomic_path(target, suffix=".txt") as tmp:
        assert tmp.parent == target.parent and tmp != target
        assert tmp.name.startswith(".result.txt.") and tmp.name.endswith(".txt.tmp")
        tmp.write_text("done")
        assert not target.exists()  # readers never see a half-written file
    assert target.read_text() == "done"
    assert [p.name for p in target.parent.iterdir()] == ["result.txt"]


def test_success_replaces_an_existing_file(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    target = tmp_path / "state.bin"
    target.write_bytes(b"old contents")
    with pytest.raises(type(error)):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise error
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_a_failure_without_an_old_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "new.txt") as tmp:
            tmp.write_text("partial")
            raise ValueError("bad input")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.txt"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="rename refused"):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_the_file_gets_the_usual_permissions_not_mkstemps_0600(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    with atomic_path(tmp_path / "f") as tmp:
        tmp.write_text("x")
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o666 & ~umask


def test_write_json_is_strict_json_with_nan_and_inf_as_null(tmp_path):
    value = {"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": (1, 2), "e": "x"}
    assert json_safe(value) == {"a": None, "b": [1.5, None, {"c": None}], "d": [1, 2], "e": "x"}
    write_json(tmp_path / "out.json", value)
    text = (tmp_path / "out.json").read_text()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("\n")
    assert json.loads(text) == {"a": None, "b": [1.5, None, {"c": None}], "d": [1, 2], "e": "x"}
    assert read_json(tmp_path / "out.json") == json.loads(text)


def test_read_json_errors_are_one_clear_line(tmp_path):
    with pytest.raises(UflError, match=r"task record not found: .*missing.json; run add-task first"):
        read_json(tmp_path / "missing.json", what="task record", hint="run add-task first")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UflError, match=r"JSON file .*bad.json is not valid JSON"):
        read_json(tmp_path / "bad.json")

    class MyError(UflError):
        pass

    with pytest.raises(MyError):
        read_json(tmp_path / "missing.json", error=MyError)


def test_weights_round_trip_bit_for_bit_with_metadata(tmp_path):
    torch.manual_seed(0)
    weight = torch.randn(3, 4)
    state = {"w": weight.t(), "b": torch.arange(5, dtype=torch.int64), "shared": weight}  # a view, a copy
    save_weights(tmp_path / "m.safetensors", state, metadata={"note": "unit"})
    loaded = load_weights(tmp_path / "m.safetensors")
    assert sorted(loaded) == ["b", "shared", "w"]
    assert all(torch.equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype for k in state)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        assert f.metadata() == {"note": "unit"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_missing_or_corrupt_weights_are_a_clear_error(tmp_path):
    with pytest.raises(UflError, match="weights file not found"):
        load_weights(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    with pytest.raises(UflError, match=r"weights file .*bad.safetensors is unreadable .*re-create it"):
        load_weights(tmp_path / "bad.safetensors")


def test_a_staged_workspace_folder_gets_mkdirs_permissions_not_mkdtemps_0700(tmp_path):
    from ufl.workspace.creation import staged_workspace

    umask = os.umask(0o022)
    os.umask(umask)
    with staged_workspace(tmp_path / "ws") as staging:
        (staging / "x").write_text("x")
    assert stat.S_IMODE(os.stat(tmp_path / "ws").st_mode) == 0o777 & ~umask
    assert os.umask(umask) == umask  # the process's umask is left as it was
