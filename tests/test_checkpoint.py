"""Checkpoints and atomic writes: a crash never loses the last good state; damage is detected."""

import os

import pytest
import torch

from ufl.checkpoint import load_checkpoint, save_checkpoint
from ufl.errors import UflError
from ufl.io import atomic_path, read_json, write_json


def _save(run, epoch, value=1.0):
    model = {"w": torch.full((2, 3), value), "module.b": torch.arange(3.0)}
    optim = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    optim.param_groups[0]["params"][0].grad = torch.ones(2)
    optim.step()
    return save_checkpoint(run, model, {"epoch": epoch, "model": "medusa"}, optim.state_dict())


def test_round_trip_strips_ddp_prefix_and_keeps_optimizer(tmp_path):
    _save(tmp_path, 3, value=2.0)
    ckpt = load_checkpoint(tmp_path, with_optimizer=True)
    assert ckpt.epoch == 3 and ckpt.meta["model"] == "medusa"
    assert set(ckpt.model_state) == {"w", "b"} and torch.equal(ckpt.model_state["w"], torch.full((2, 3), 2.0))
    state = ckpt.optimizer_state["state"][0]
    assert torch.equal(state["exp_avg"], torch.full((2,), 0.1)) and ckpt.optimizer_state["param_groups"][0]["lr"] == 0.1
    fresh = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    fresh.load_state_dict(ckpt.optimizer_state)


def test_a_new_save_replaces_the_old_weights_file(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.glob("epoch-*.safetensors")) == ["epoch-0002.safetensors"]
    assert load_checkpoint(tmp_path).epoch == 2


def test_damaged_weights_and_records_are_refused(tmp_path):
    _save(tmp_path, 1)
    weights = next(tmp_path.glob("epoch-*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(UflError, match="do not match their recorded hash"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(UflError, match="checkpoint record .* is not valid JSON"):
        load_checkpoint(tmp_path)
    with pytest.raises(UflError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "missing")


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "state.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"version": 2, "half')
            raise RuntimeError("killed mid-write")
    assert read_json(target) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert oct(os.stat(target).st_mode & 0o777) != "0o600"
