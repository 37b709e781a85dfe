"""Multi-task pretraining: checkpoints, exact resumption, non-finite losses, torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from ufl.checkpoint import load_checkpoint
from ufl.cli import main
from ufl.errors import UflError
from ufl.training import Callback
from ufl.training.pretrain import PretrainConfig, pretrain

SIZE = (64, 96)


def _config(root, out, **kw):
    base = dict(out=str(out), data_root=str(root), size=SIZE, epochs=2, batch_size=4, workers=0, device="cpu",
                progress=False, edge_thresholds=5)
    base.update(kw)
    return PretrainConfig(**base)


class StopAfterFirstEpoch(Callback):
    def after_epoch(self, trainer, state):
        raise KeyboardInterrupt


@pytest.mark.slow
def test_pretrain_writes_checkpoint_log_and_metrics(synthetic_root, tmp_path):
    result = pretrain(_config(synthetic_root, tmp_path / "run", epochs=1))
    assert set(result.metrics) == {"semseg", "depth", "normals", "edges"}
    assert set(result.metrics["depth"]) == {"rmse", "log_rmse"}
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.epoch == 1 and ckpt.meta["tasks"] == ["semseg", "depth"] and ckpt.meta["aux"] == ["normals", "edges"]
    assert ckpt.meta["out_channels"] == {"semseg": 40, "depth": 1, "normals": 3, "edges": 1}
    assert len(ckpt.meta["fingerprint"]) == 64
    assert any(k.startswith("backbone.") for k in ckpt.model_state)
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(synthetic_root, tmp_path):
    pretrain(_config(synthetic_root, tmp_path / "full", model="mt-baseline", aux=()))
    with pytest.raises(KeyboardInterrupt):
        pretrain(_config(synthetic_root, tmp_path / "cut", model="mt-baseline", aux=()), callbacks=[StopAfterFirstEpoch()])
    assert load_checkpoint(tmp_path / "cut").epoch == 1
    pretrain(_config(synthetic_root, tmp_path / "cut", model="mt-baseline", aux=(), resume=True))
    full, cut = load_checkpoint(tmp_path / "full", True), load_checkpoint(tmp_path / "cut", True)
    assert cut.epoch == full.epoch == 2
    for key, value in full.model_state.items():
        assert torch.equal(value, cut.model_state[key]), key
    assert full.meta["metrics"] == cut.meta["metrics"]
    assert full.meta["provenance"] == cut.meta["provenance"]  # a resumed run keeps how it started
    assert full.meta["history"] == cut.meta["history"]
    for idx, state in full.optimizer_state["state"].items():
        assert torch.equal(state["exp_avg"], cut.optimizer_state["state"][idx]["exp_avg"])


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(synthetic_root, tmp_path):
    class PoisonSecondEpoch(Callback):
        def before_epoch(self, trainer, state):
            if state.epoch == 1:
                loss_fn = trainer.loss_fn
                trainer.loss_fn = lambda out, batch: (loss_fn(out, batch)[0] * float("nan"), {})

    with pytest.raises(UflError, match=r"became nan at epoch 2, step 1.*last good checkpoint"):
        pretrain(_config(synthetic_root, tmp_path / "run", model="mt-baseline", aux=()), callbacks=[PoisonSecondEpoch()])
    assert load_checkpoint(tmp_path / "run").epoch == 1


def test_refusals(synthetic_root, tmp_path):
    pretrain(_config(synthetic_root, tmp_path / "run", model="mt-baseline", aux=(), epochs=1))
    with pytest.raises(UflError, match="already holds a checkpoint; pass --resume"):
        pretrain(_config(synthetic_root, tmp_path / "run", model="mt-baseline", aux=(), epochs=1))
    with pytest.raises(UflError, match="settings differ from the checkpoint.*lr"):
        pretrain(_config(synthetic_root, tmp_path / "run", model="mt-baseline", aux=(), epochs=1, lr=1e-3, resume=True))
    with pytest.raises(UflError, match="nothing to resume"):
        pretrain(_config(synthetic_root, tmp_path / "new", resume=True))
    with pytest.raises(UflError, match="dataset 'nyud' has no task 'saliency'"):
        pretrain(_config(synthetic_root, tmp_path / "x", tasks=("saliency",), aux=()))
    with pytest.raises(UflError, match="exactly one task"):
        _config(synthetic_root, tmp_path / "x", model="single-task")


@pytest.mark.slow
def test_pretrain_cli_runs_every_model(synthetic_root, tmp_path):
    for model, extra in (("single-task", ["--tasks", "depth", "--aux", ""]), ("mti-net", [])):
        out = tmp_path / model
        result = CliRunner().invoke(main, ["pretrain", "--data-root", str(synthetic_root), "--size", "64x96",
                                           "--epochs", "1", "--batch-size", "4", "--workers", "0", "--device", "cpu",
                                           "--pretrained", "none", "--out", str(out), "--model", model, *extra])
        assert result.exit_code == 0, result.output
        meta = load_checkpoint(out).meta
        assert meta["model"] == model
        if model == "mti-net":  # --aux normals,edges by default: auxiliary only, nothing to validate
            assert meta["aux"] == ["normals", "edges"] and sorted(meta["metrics"]) == ["depth", "semseg"]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(synthetic_root, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "ufl", "pretrain", "--data-root", str(synthetic_root), "--size", "64x96", "--epochs", "1",
         "--batch-size", "2", "--workers", "0", "--device", "cpu", "--pretrained", "none", "--out", str(out),
         "--model", "mt-baseline", "--aux", ""],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = load_checkpoint(out)
    assert ckpt.epoch == 1 and set(ckpt.meta["metrics"]) == {"semseg", "depth"}
    assert not any(k.startswith("module.") for k in ckpt.model_state)


def test_a_size_the_backbone_cannot_take_is_one_line(synthetic_root, tmp_path):
    result = CliRunner().invoke(main, ["pretrain", "--data-root", str(synthetic_root), "--size", "64x80", "--epochs",
                                       "1", "--device", "cpu", "--pretrained", "none", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "input size 64x80 does not suit backbone hrnet_w18_small_v2" in result.stderr and "64x64" in result.stderr


@pytest.mark.slow
def test_pretrain_cli_logs_tensorboard_prints_json_and_records_provenance(synthetic_root, tmp_path):
    out, logs = tmp_path / "run", tmp_path / "tb"
    result = CliRunner().invoke(main, ["pretrain", "--data-root", str(synthetic_root), "--out", str(out),
                                       "--tasks", "depth", "--aux", "", "--size", "64x96", "--epochs", "1",
                                       "--batch-size", "4", "--workers", "0", "--device", "cpu",
                                       "--pretrained", "none", "--log-dir", str(logs), "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["checkpoint"] == str(out) and "rmse" in printed["metrics"]["depth"]
    assert printed["history"][0]["final_loss"]["depth"] > 0
    assert list(logs.glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs))
    events.Reload()
    assert {"train/loss", "epoch/loss", "epoch/final_loss/depth", "val/depth/rmse"} <= set(events.Tags()["scalars"])
    provenance = load_checkpoint(out).meta["provenance"]
    assert provenance["init"] == "random" and provenance["data"] == [
        {"dataset": "nyud", "root": str((synthetic_root / "NYUD_MT").resolve()), "generated": True}]


def test_the_epoch_line_says_the_loss_sums_deep_supervision():
    from ufl.training.callbacks import format_loss
    from ufl.training.trainer import TrainState

    state = TrainState(epoch_loss=6646.0, epoch_parts={"semseg": 1.39})
    line = format_loss(state)
    assert "loss 6646.0000 (weighted sum over tasks and deep-supervision terms)" in line
    assert line.endswith("final output: semseg 1.3900")
