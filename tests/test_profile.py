"""``ufl profile``: the JSON contract, linear vs quadratic growth, the FLOP convention, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from ufl.cli import main
from ufl.errors import UflError
from ufl.profile import count_gflops, profile_models, task_set

SMALL = (64, 64)


def increments(values: list[float]) -> list[float]:
    return [b - a for a, b in zip(values, values[1:])]


def rows_of(result: dict, model: str, key: str) -> list:
    return [r[key] for r in result["rows"] if r["model"] == model]


def test_task_set():
    assert task_set(4) == {"semseg": 40, "depth": 1, "normals": 3, "edges": 1}
    eight = task_set(8)
    assert list(eight)[:4] == ["semseg", "depth", "normals", "edges"] and len(eight) == 8
    assert list(eight.values())[4:] == [8, 8, 8, 8]
    assert task_set(2, channels=[5, 6, 7]) == {"task1": 5, "task2": 6}
    with pytest.raises(UflError):
        task_set(0)


@pytest.mark.slow
def test_json_contract():
    result = profile_models(task_counts=(1, 2), size=SMALL)
    assert result["backbone"] == "hrnet_w18_small_v2" and result["size"] == [64, 64] and result["aux"] == []
    assert [(r["model"], r["tasks"]) for r in result["rows"]] == [
        (m, n) for m in ("medusa", "mt-baseline", "mti-net") for n in (1, 2)]
    for row in result["rows"]:
        assert set(row) == {"model", "tasks", "params", "gflops"}
        assert isinstance(row["params"], int) and row["params"] > 3_800_000
        assert isinstance(row["gflops"], float) and row["gflops"] > 0
    json.dumps(result)


@pytest.mark.slow
def test_medusa_linear_mtinet_quadratic():
    counts = (1, 2, 3, 4)
    result = profile_models(task_counts=counts, size=SMALL, models=("medusa", "mti-net"),
                            task_channels=[1] * 4)
    medusa_params = increments(rows_of(result, "medusa", "params"))
    medusa_flops = increments(rows_of(result, "medusa", "gflops"))
    assert len(set(medusa_params)) == 1 and medusa_params[0] > 0  # identical tasks, identical increments
    assert max(medusa_flops) - min(medusa_flops) < 1e-9 and medusa_flops[0] > 0
    mti = increments(rows_of(result, "mti-net", "params"))
    assert all(b > a for a, b in zip(mti, mti[1:]))
    # Quadratic: the second differences are positive and (up to the FPM's integer widths) constant.
    second = increments(mti)
    assert min(second) > 0 and max(second) / min(second) < 1.1


@pytest.mark.slow
def test_medusa_at_least_25_percent_smaller_than_mtinet():
    result = profile_models(task_counts=(4,), size=SMALL, models=("medusa", "mti-net"))
    medusa, mti = rows_of(result, "medusa", "params")[0], rows_of(result, "mti-net", "params")[0]
    assert medusa <= 0.75 * mti


def test_gflops_count_a_multiply_add_as_two():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert count_gflops(conv, (8, 8), device="cpu") == pytest.approx(2 * 3 * 4 * 9 * 8 * 8 / 1e9)


@pytest.mark.slow
def test_gflops_grow_with_input_size():
    small = profile_models(task_counts=(1,), size=(64, 64), models=("medusa",))["rows"][0]["gflops"]
    large = profile_models(task_counts=(1,), size=(128, 128), models=("medusa",))["rows"][0]["gflops"]
    assert large == pytest.approx(4 * small, rel=0.02)


def test_unknown_model_and_bad_size():
    with pytest.raises(UflError, match="unknown model 'segformer'"):
        profile_models(task_counts=(1,), size=SMALL, models=("segformer",))
    with pytest.raises(UflError, match="at least 32"):
        profile_models(task_counts=(1,), size=(16, 16))


@pytest.mark.slow
def test_cli_json():
    result = CliRunner().invoke(main, ["profile", "--tasks", "1,2", "--size", "64x64", "--models",
                                       "medusa,mti-net", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["backbone"] == "hrnet_w18_small_v2"
    assert [(r["model"], r["tasks"]) for r in data["rows"]] == [("medusa", 1), ("medusa", 2),
                                                                 ("mti-net", 1), ("mti-net", 2)]


def test_cli_table_and_backbone():
    result = CliRunner().invoke(main, ["profile", "--tasks", "1", "--size", "64x64", "--backbone", "resnet18",
                                       "--models", "mt-baseline"])
    assert result.exit_code == 0, result.output
    assert "backbone resnet18" in result.output and "mt-baseline" in result.output
    assert "GFLOPs" in result.output


@pytest.mark.parametrize("args, message", [
    (["--size", "64x"], "HxW"),
    (["--size", "16x16"], "at least 32"),
    (["--tasks", "1,x"], "integers"),
    (["--tasks", "0"], "positive"),
])
def test_cli_bad_options(args, message):
    result = CliRunner().invoke(main, ["profile", *args])
    assert result.exit_code == 2 and message in result.output


def test_cli_unknown_model_is_one_line():
    result = CliRunner().invoke(main, ["profile", "--tasks", "1", "--size", "64x64", "--models", "unet"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["ufl: error: unknown model 'unet'; known: medusa, medusa-no-ip, "
                                                  "medusa-no-msa, medusa-no-sfa, mt-baseline, mtan, mti-net, pad-net, "
                                                  "single-task"]


@pytest.mark.slow
def test_cli_json_rows_for_every_poster_model_as_built_with_aux():
    args = ["profile", "--models", "medusa,mt-baseline,mtan,pad-net,mti-net", "--tasks", "4", "--size", "64x64",
            "--json", "--aux", "normals,edges"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ne = json.loads(result.output)
    assert ne["aux"] == ["normals", "edges"]
    assert [r["model"] for r in ne["rows"]] == ["medusa", "mt-baseline", "mtan", "pad-net", "mti-net"]
    params = {r["model"]: r["params"] for r in ne["rows"]}
    # MTI-Net's "+N,E" on HRNet-18 (its own figure), not the 17.96M of four final tasks
    assert params["mti-net"] == pytest.approx(14.8e6, rel=0.01)


def test_aux_not_in_any_task_set_is_an_error():
    with pytest.raises(UflError, match=r"auxiliary task\(s\) \['normal'\] are in none"):
        profile_models(task_counts=(4,), size=SMALL, models=("mti-net",), aux=("normal",))
