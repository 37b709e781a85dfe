"""Issue 13 (hardening): paths from the manifest stay inside the workspace, OS errors are one line
and keep the training, refusals of mismatched caches, task names, finite floats, and `ufl doctor`.

One small workspace (random-init HRNet-W18-small, PASCAL cached at 64 px, a 1-epoch saliency head)
is built once through the CLI and copied per test.
"""

import errno
import json
import os
import shutil
import time

import pytest
from click.testing import CliRunner

from ufl.cli import main
from ufl.errors import SpecError
from ufl.taskspec import TaskSpec

OLD = time.time() - 3600  # an mtime past doctor's grace period


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_error_line(result) -> str:
    """The run failed with exactly one `ufl: error:` line and no traceback; that line."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("ufl: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="session")
def small_workspace(synthetic_root, tmp_path_factory):
    """init --backbone (random init) + cache-features pascal at 64 px + add-task saliency, by the CLI."""
    root = tmp_path_factory.mktemp("hard") / "ws"
    for args in (["init", "--backbone", "hrnet_w18_small_v2", "--pretrained", "none"],
                 ["cache-features", "--dataset", "pascal", "--data-root", synthetic_root, "--size", "64",
                  "--device", "cpu", "--workers", "0", "--batch-size", "4"],
                 ["add-task", "saliency", "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--workers", "0"]):
        result = _invoke(*args, "--workspace", root)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def ws(small_workspace, workspace_copy):
    return workspace_copy(small_workspace)


def _edit_manifest(ws, change):
    path = ws.root / "workspace.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# -- 1: no file outside the workspace is touched ------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("where", ["relative", "absolute", "symlink"])
def test_a_head_path_leading_outside_is_never_deleted(ws, tmp_path, where):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    if where == "relative":
        head = "../victim.txt"
    elif where == "absolute":
        head = str(victim)
    else:
        (ws.root / "heads" / "evil.safetensors").symlink_to(victim)
        head = "heads/evil.safetensors"
    _edit_manifest(ws, lambda d: d["tasks"]["saliency"].update(head=head))
    for args in (["remove-task", "saliency"], ["add-task", "saliency", "--replace", "--epochs", "1", "--device", "cpu"],
                 ["evaluate", "--task", "saliency", "--device", "cpu"]):
        line = _one_error_line(_invoke(*args, "--workspace", ws.root))
        assert "saliency" in line and ("outside" in line or "not a path relative" in line)
        assert victim.read_text() == "precious"
    assert "saliency" in ws.tasks  # refused: still registered


@pytest.mark.slow
def test_a_head_that_does_not_match_its_hash_is_not_deleted(ws):
    path = ws.root / ws.task("saliency")["head"]
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    line = _one_error_line(_invoke("remove-task", "saliency", "--workspace", ws.root))
    assert "does not match its recorded hash" in line and "--keep-file" in line
    assert path.is_file() and "saliency" in ws.tasks
    assert _invoke("remove-task", "saliency", "--keep-file", "--workspace", ws.root).exit_code == 0
    assert path.is_file() and "saliency" not in ws.tasks


@pytest.mark.slow
def test_remove_task_json_names_the_task_and_the_file_deleted_or_kept(ws, small_workspace, tmp_path):
    head = ws.root / ws.task("saliency")["head"]
    result = _invoke("remove-task", "saliency", "--json", "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"task": "saliency", "file": str(head), "kept_file": None}
    assert not head.exists() and "saliency" not in ws.tasks
    other = tmp_path / "keep"  # a second copy (workspace_copy gives one per test)
    shutil.copytree(small_workspace, other)
    kept = other / json.loads((other / "workspace.json").read_text())["tasks"]["saliency"]["head"]
    result = _invoke("remove-task", "saliency", "--keep-file", "--json", "--workspace", other)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"task": "saliency", "file": None, "kept_file": str(kept)}
    assert kept.is_file()
    line = _one_error_line(_invoke("remove-task", "saliency", "--json", "--workspace", ws.root))
    assert "not registered" in line


@pytest.mark.slow
def test_replace_keeps_an_old_head_that_does_not_match_its_hash(ws, caplog):
    old = ws.root / ws.task("saliency")["head"]
    old.write_bytes(old.read_bytes()[:-1] + b"\0")
    result = _invoke("add-task", "saliency", "--replace", "--epochs", "1", "--batch-size", "4", "--device", "cpu",
                     "--workers", "0", "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    assert "does not match its recorded hash, so it is not deleted" in caplog.text
    new = ws.root / ws.task("saliency")["head"]
    assert old.is_file() and new != old and ws.head("saliency") is not None
    report = ws.doctor()  # the kept file is now an orphan the user may inspect or let --fix remove
    assert [(f.kind, f.path) for f in report.problems] == [("orphan_head", str(old))]


# -- 4: OS errors are one line; a trained head is never lost --------------------------------------
def _fail_writes_under(monkeypatch, folder, error=errno.ENOSPC):
    """Every safetensors write into ``folder`` fails with ``error`` (as a full disk would), also
    into the hidden sibling folder a new workspace is built in (``.NAME.*.creating``)."""
    import safetensors.torch

    original = safetensors.torch.save_file

    def save_file(tensors, filename, metadata=None):
        written_in = os.path.dirname(os.path.abspath(filename))
        staging = (os.path.dirname(written_in) == os.path.dirname(os.path.abspath(folder))
                   and os.path.basename(written_in).startswith(f".{os.path.basename(folder)}.")
                   and written_in.endswith(".creating"))
        if written_in == os.path.abspath(folder) or staging:
            raise OSError(error, os.strerror(error), filename)
        return original(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)  # ufl.io imports it at the call


@pytest.mark.slow
def test_a_full_disk_at_add_task_keeps_the_trained_head(ws, monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    _fail_writes_under(monkeypatch, ws.root / "heads")
    before = sorted(p.name for p in (ws.root / "heads").iterdir())
    line = _one_error_line(_invoke("add-task", "human_parts", "--epochs", "1", "--batch-size", "4", "--device", "cpu",
                                   "--workers", "0", "--workspace", ws.root))
    assert "No space left on device" in line.replace("no space", "No space") and "kept in" in line
    rescued = list(tmp_path.glob("ufl-rescued-head-human_parts-*.safetensors"))
    assert len(rescued) == 1 and str(rescued[0]) in line
    assert sorted(p.name for p in (ws.root / "heads").iterdir()) == before and "human_parts" not in ws.tasks
    monkeypatch.undo()
    result = _invoke("register-rescued", rescued[0], "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    assert not rescued[0].exists()
    record = ws.task("human_parts")
    assert record["training"]["epochs"] == 1 and record["dataset"] == "pascal"
    evaluated = json.loads(_invoke("evaluate", "--task", "human_parts", "--json", "--device", "cpu",
                                   "--workspace", ws.root).stdout)
    assert evaluated["tasks"]["human_parts"]["drift"] == 0.0  # the very head that was trained


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_os_errors_at_init_are_one_line(tmp_path, monkeypatch, error):
    _fail_writes_under(monkeypatch, tmp_path / "ws", error)
    line = _one_error_line(_invoke("init", "--backbone", "hrnet_w18_small_v2", "--pretrained", "none",
                                   "--workspace", tmp_path / "ws"))
    assert os.strerror(error) in line and str(tmp_path / "ws") in line
    assert ("free space" if error == errno.ENOSPC else "permissions") in line


def test_a_safetensors_error_is_one_line(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", lambda *a, **k: (_ for _ in ()).throw(SafetensorError("bad header")))
    line = _one_error_line(_invoke("init", "--backbone", "hrnet_w18_small_v2", "--pretrained", "none",
                                   "--workspace", tmp_path / "ws"))
    assert "bad header" in line


def test_a_too_long_name_and_a_file_in_the_path_are_one_line(tmp_path):
    long = tmp_path / ("w" * 300)
    line = _one_error_line(_invoke("init", "--backbone", "hrnet_w18_small_v2", "--pretrained", "none",
                                   "--workspace", long))
    assert "too long" in line
    (tmp_path / "file.txt").write_text("x")
    for args in (["init", "--backbone", "hrnet_w18_small_v2", "--pretrained", "none"], ["list-tasks"], ["doctor"]):
        line = _one_error_line(_invoke(*args, "--workspace", tmp_path / "file.txt" / "sub"))
        assert "file.txt" in line


# -- 5: a val cache of another size is refused; overwriting it needs --force ----------------------
@pytest.mark.slow
def test_overwriting_the_evaluated_val_cache_needs_force_and_evaluate_refuses_another_size(ws):
    cache = ws.cache_file("pascal", "val", 1)
    before = cache.read_bytes()
    args = ["cache-features", "--dataset", "pascal", "--split", "val", "--size", "96", "--overwrite", "--device",
            "cpu", "--workers", "0", "--workspace", ws.root]
    line = _one_error_line(_invoke(*args))
    assert "--force" in line and "saliency" in line
    assert cache.read_bytes() == before
    assert _invoke(*args, "--force").exit_code == 0
    line = _one_error_line(_invoke("evaluate", "--all-tasks", "--device", "cpu", "--workspace", ws.root))
    assert "96x96" in line and "64x64" in line and "saliency" in line and "--replace" in line


# -- 6: a stale .partial of a killed --overwrite does not block the next one ----------------------
@pytest.mark.slow
def test_a_stale_partial_does_not_block_the_next_overwrite(ws, monkeypatch):
    from feature_cache import BackgroundWriter, FeatureCacheReader, partial_path

    original = BackgroundWriter.put
    monkeypatch.setattr(BackgroundWriter, "put", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed while rebuilding the train cache at 96 px
        ws.cache_features("pascal", ["train"], size=(96, 96), overwrite=True, device="cpu", progress=False,
                          workers=0)
    path = ws.cache_file("pascal", "train", 1)
    assert partial_path(path).is_file()
    monkeypatch.setattr(BackgroundWriter, "put", original)
    result = _invoke("cache-features", "--dataset", "pascal", "--split", "train", "--size", "64", "--overwrite",
                     "--device", "cpu", "--workers", "0", "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    assert not partial_path(path).exists()
    with FeatureCacheReader(path, ws.fingerprint) as reader:
        assert tuple(reader.attrs["input_size"]) == (64, 64)


# -- 7: predict never writes two images to one folder ---------------------------------------------
@pytest.mark.slow
def test_predict_gives_images_with_one_stem_their_own_folders(ws, synthetic_root, tmp_path, write, rng):
    image = next((synthetic_root / "PASCAL_MT" / "JPEGImages").iterdir())
    a = tmp_path / "a" / "x.jpg"
    a.parent.mkdir()
    shutil.copy(image, a)
    b = write.image(tmp_path / "b" / "x.png", rng.integers(0, 255, (40, 50, 3)))
    result = _invoke("predict", a, b, "--all-tasks", "--out", tmp_path / "out", "--device", "cpu",
                     "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    from PIL import Image

    assert Image.open(tmp_path / "out" / "a_x" / "saliency.png").size == Image.open(a).size
    assert Image.open(tmp_path / "out" / "b_x" / "saliency.png").size == (50, 40)
    assert not (tmp_path / "out" / "x").exists()


# -- 8: task names ------------------------------------------------------------------------------
def test_task_names_are_short_lower_case_identifiers():
    from ufl.taskspec import check_task_name

    assert check_task_name("a" * 64) == "a" * 64
    spec = {"name": "road", "kind": "segmentation", "channels": 3}
    assert TaskSpec.from_dict(spec).name == "road"
    for bad in ("road\n", "a" * 65, "Road", "1road", "", "road-2"):
        with pytest.raises(SpecError, match="name"):
            TaskSpec.from_dict({**spec, "name": bad})
        with pytest.raises(SpecError):
            check_task_name(bad)


@pytest.mark.slow
def test_the_cli_refuses_invalid_task_names(ws):
    for args in (["add-task", "saliency", "--as", "s" * 65], ["evaluate", "--task", "semseg,Road"],
                 ["predict", __file__, "--task", "Bad", "--out", ws.root / "p"]):
        line = _one_error_line(_invoke(*args, "--workspace", ws.root))
        assert "invalid" in line and "lower-case letters" in line


# -- 9: finite floats, manifest records, a remove-task that cannot delete -------------------------
@pytest.mark.slow
@pytest.mark.parametrize("option", ["--lr", "--weight-decay"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_float_options_refuse_nan_and_inf(ws, option, value):
    result = _invoke("add-task", "saliency", option, value, "--workspace", ws.root)
    assert result.exit_code == 2 and "finite" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("option", ["--ewc-lambda", "--si-lambda", "--distill-alpha"])
def test_continual_float_options_refuse_nan(option):
    result = _invoke("continual", option, "nan")
    assert result.exit_code == 2 and "finite" in result.output


def test_every_float_option_of_the_cli_is_finite():
    """No float option anywhere in the CLI takes NaN (a new option must use FiniteFloat)."""
    import click

    from ufl.cli.base import FiniteFloat

    def walk(command):
        for param in command.params:
            if isinstance(param.type, click.types.FloatParamType):
                assert isinstance(param.type, FiniteFloat), f"{command.name} {param.name}"
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(main)


@pytest.mark.parametrize("weight", [float("inf"), float("nan")])
def test_a_spec_loss_weight_must_be_finite(weight):
    with pytest.raises(SpecError, match="finite"):
        TaskSpec.from_dict({"name": "road", "kind": "segmentation", "channels": 3, "loss": {"weight": weight}})


@pytest.mark.slow
@pytest.mark.parametrize("key", ["head", "head_sha256", "spec", "eval", "registered", "dataset"])
def test_a_task_record_missing_a_key_is_one_line(ws, key):
    _edit_manifest(ws, lambda d: d["tasks"]["saliency"].pop(key))
    line = _one_error_line(_invoke("list-tasks", "--workspace", ws.root))
    assert "workspace.json" in line and "'saliency'" in line and repr(key) in line


@pytest.mark.slow
def test_extra_keys_in_task_records_are_allowed(ws):
    _edit_manifest(ws, lambda d: d["tasks"]["saliency"].update(precision="float16", history=[{"epoch": 1}]))
    assert ws.task("saliency")["precision"] == "float16"


@pytest.mark.slow
def test_remove_task_keeps_the_task_when_its_file_cannot_be_deleted(ws, monkeypatch):
    head = ws.root / ws.task("saliency")["head"]
    real = os.replace

    def refuse(src, dst):
        if os.path.dirname(str(src)) == str(ws.root / "heads"):
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    line = _one_error_line(_invoke("remove-task", "saliency", "--workspace", ws.root))
    assert "Permission denied" in line and "heads" in line
    monkeypatch.undo()
    assert "saliency" in ws.tasks and head.is_file()


@pytest.mark.slow
def test_a_failed_manifest_write_at_remove_task_puts_the_head_back(ws, monkeypatch):
    import ufl.workspace.manifest

    head = ws.root / ws.task("saliency")["head"]
    monkeypatch.setattr(ufl.workspace.manifest, "write_json",
                        lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError):
        ws.remove_task("saliency")
    monkeypatch.undo()
    assert "saliency" in ws.tasks and head.is_file()
    assert not list((ws.root / "heads").glob(".*"))


# -- 11 and `ufl doctor` --------------------------------------------------------------------------
@pytest.mark.slow
def test_doctor_reports_a_clean_workspace_after_a_normal_run(ws):
    result = _invoke("doctor", "--workspace", ws.root, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["checked"]["tasks"] == 1 and report["checked"]["caches"] == 2
    assert [f for f in report["findings"] if f["severity"] == "problem"] == []
    assert ws.doctor().ok


def _litter(ws):
    """What interrupted runs leave: a 0-byte manifest temp, a head temp, a cache skeleton, a stale
    rebuild, a stale shard and an orphan head (all old enough to be stale)."""
    files = [ws.root / ".workspace.json.abc123.tmp", ws.root / "heads" / ".saliency-1.safetensors.x.safetensors.tmp",
             ws.root / "caches" / ".pascal-val-1v.h5.q1.creating", ws.root / "caches" / "pascal-val-1v.h5.partial",
             ws.root / "caches" / "pascal-train-1v.shard0of2.h5", ws.root / "heads" / "road-0badf00d.safetensors"]
    for path in files:
        path.write_bytes(b"")
        os.utime(path, (OLD, OLD))
    return files


@pytest.mark.slow
def test_doctor_finds_and_fixes_the_litter_of_interrupted_runs(ws):
    registered = {p: p.read_bytes() for p in [ws.root / ws.task("saliency")["head"], ws.root / "backbone.safetensors",
                                              *sorted((ws.root / "caches").iterdir())]}
    files = _litter(ws)
    result = _invoke("doctor", "--workspace", ws.root)
    assert result.exit_code == 1
    for path in files:
        assert str(path) in result.output
    assert all(path.exists() for path in files)  # without --fix nothing is removed
    result = _invoke("doctor", "--fix", "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    assert not any(path.exists() for path in files)
    assert {p: p.read_bytes() for p in registered} == registered  # registered head and caches untouched
    assert _invoke("doctor", "--workspace", ws.root).exit_code == 0


@pytest.mark.slow
def test_doctor_leaves_what_is_in_use_or_recent(ws):
    import h5py

    partial = ws.root / "caches" / "pascal-val-1v.h5.partial"
    with h5py.File(partial, "w"):
        os.utime(partial, (OLD, OLD))
        report = ws.doctor(fix=True)  # a running rebuild holds it open
    assert partial.exists() and not report.ok and "another process" in report.problems[0].skipped
    fresh = ws.root / "caches" / ".pascal-val-1v.h5.q2.creating"
    fresh.write_bytes(b"")
    assert not ws.doctor(fix=True).ok and fresh.exists()


@pytest.mark.slow
def test_doctor_reports_a_tampered_head_and_never_removes_it(ws):
    head = ws.root / ws.task("saliency")["head"]
    head.write_bytes(head.read_bytes()[:-1] + b"\1")
    result = _invoke("doctor", "--fix", "--workspace", ws.root)
    assert result.exit_code == 1 and "does not match its recorded hash" in result.output
    assert head.is_file()


@pytest.mark.slow
def test_doctor_restores_a_head_renamed_by_an_interrupted_remove_task(ws):
    head = ws.root / ws.task("saliency")["head"]
    aside = head.with_name(f".{head.name}.removing")
    os.replace(head, aside)  # killed between the rename and the manifest update
    assert _invoke("doctor", "--workspace", ws.root).exit_code == 1
    result = _invoke("doctor", "--fix", "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    assert head.is_file() and not aside.exists()


@pytest.mark.slow
def test_doctor_reports_a_manifest_record_pointing_outside(ws):
    head = ws.root / ws.task("saliency")["head"]
    _edit_manifest(ws, lambda d: d["tasks"]["saliency"].update(head="../../victim.txt"))
    report = ws.doctor(fix=True)
    assert not report.ok and any("outside" in f.message for f in report.problems)
    orphan = [f for f in report.findings if f.kind == "orphan_head"]
    assert [f.path for f in orphan] == [str(head)] and not orphan[0].fixable
    assert head.is_file()  # the head the damaged record lost is kept


@pytest.mark.slow
def test_writes_under_the_lock_clean_their_own_stale_temp_files(ws):
    stale = [ws.root / ".workspace.json.zzz.tmp", ws.root / "heads" / ".x.safetensors.zzz.safetensors.tmp"]
    for path in stale:
        path.write_bytes(b"")
    ws.register("saliency", ws.head("saliency"), {k: v for k, v in ws.task("saliency").items()}, replace=True)
    skeleton = ws.root / "caches" / ".pascal-val-1v.h5.partial.k2j4.creating"
    skeleton.write_bytes(b"")
    os.utime(skeleton, (OLD, OLD))
    ws.cache_features("pascal", ["val"], device="cpu", progress=False)  # already cached; cleans up first
    assert not any(path.exists() for path in [*stale, skeleton])


def test_doctor_without_a_workspace_is_one_line(tmp_path):
    line = _one_error_line(_invoke("doctor", "--workspace", tmp_path))
    assert "no workspace" in line


@pytest.mark.slow
def test_a_cache_path_leading_outside_is_refused(ws, tmp_path):
    victim = tmp_path / "victim.h5"
    victim.write_bytes(b"precious")
    _edit_manifest(ws, lambda d: d["caches"]["pascal/val/1v"].update(file=str(victim)))
    line = _one_error_line(_invoke("evaluate", "--all-tasks", "--device", "cpu", "--workspace", ws.root))
    assert "pascal/val/1v" in line and "not a path relative" in line
    assert victim.read_bytes() == b"precious"


@pytest.mark.slow
def test_doctor_finds_a_flipped_byte_in_a_cache_row_and_keeps_the_file(ws):
    import h5py

    cache = ws.cache_file("pascal", "val", 1)
    with h5py.File(cache, "r") as f:
        offset = f["features/1"].id.get_chunk_info_by_coord((2, 0, 0, 0)).byte_offset
    with open(cache, "r+b") as fh:
        fh.seek(offset + 5)
        byte = fh.read(1)
        fh.seek(offset + 5)
        fh.write(bytes([byte[0] ^ 0xFF]))
    result = _invoke("doctor", "--fix", "--json", "--workspace", ws.root)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["cache_checksums"]
    problems = [f for f in report["findings"] if f["severity"] == "problem"]
    assert [f["kind"] for f in problems] == ["cache"] and "row 2" in problems[0]["message"]
    assert "features/1" in problems[0]["message"] and cache.is_file()


@pytest.mark.slow
def test_doctor_reports_a_damaged_backbone_and_a_truncated_cache(ws):
    backbone = ws.root / "backbone.safetensors"
    backbone.write_bytes(backbone.read_bytes()[:1000])
    cache = ws.cache_file("pascal", "train", 1)
    cache.write_bytes(cache.read_bytes()[:5000])
    result = _invoke("doctor", "--fix", "--json", "--workspace", ws.root)
    assert result.exit_code == 1
    problems = [f for f in json.loads(result.stdout)["findings"] if f["severity"] == "problem"]
    assert sorted(f["kind"] for f in problems) == ["backbone", "cache"]
    assert backbone.is_file() and cache.is_file()  # reported, never removed
