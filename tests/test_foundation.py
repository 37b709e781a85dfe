"""``ufl reproduce --backbones``: a frozen backbone that never saw NYUD, through the UFL protocol."""

import dataclasses
from types import SimpleNamespace

import pytest

from ufl.cfg import load_preset
from ufl.foundation import frozen_backbone_step, frozen_markdown, frozen_rows
from ufl.reproduce import StepRunner, summarise, cell as _cell


@pytest.mark.slow
def test_a_frozen_vit_gets_parts_and_saliency_rows_with_delta_m(synthetic_root, tmp_path):
    config = SimpleNamespace(data_root=str(synthetic_root), device="cpu", progress=False)
    preset = dataclasses.replace(load_preset("quick"), pretrained="none", pascal_size=(64, 64), views=1, head_epochs=1,
                                 batch_size=4, lr=1e-3)
    steps = StepRunner(tmp_path / "out")
    result = steps("seed0/frozen/vit_tiny_patch16_224", frozen_backbone_step(config, preset, 0, "vit_tiny_patch16_224"))
    assert set(result["metrics"]) == {"human_parts", "saliency"} and "random init" in result["source"]
    again = steps("seed0/frozen/vit_tiny_patch16_224", frozen_backbone_step(config, preset, 0, "vit_tiny_patch16_224"))
    assert again == result and steps.skipped  # resumable: a finished step is not redone

    parts, sal = result["metrics"]["human_parts"]["mIoU"], result["metrics"]["saliency"]["maxF"]
    reference = {"human_parts": {"mIoU": 40.0}, "saliency": {"maxF": 50.0}}
    rows = summarise(frozen_rows({"vit_tiny_patch16_224": {0: result}}, {0: reference}),
                     ("parts", "sal", "delta_m_pascal"))
    expected = ((parts - 40.0) / 40.0 + (sal - 50.0) / 50.0) / 2 * 100
    assert rows[0]["delta_m_pascal"][0] == pytest.approx(expected)
    assert rows[0]["parts"] == [parts, 0.0]
    assert frozen_rows({"x": {0: result}}, {0: None})[0][0]["delta_m_pascal"] is None
    table = frozen_markdown(rows, _cell)
    assert "| vit_tiny_patch16_224 |" in table and "Δm PASCAL" in table


@pytest.mark.slow
def test_reproduce_backbones_adds_a_frozen_row_beside_the_single_task_one(synthetic_root, tmp_path, monkeypatch):
    import dataclasses
    import json

    from click.testing import CliRunner

    import ufl.reproduce as rp
    from ufl.cli import main

    tiny = dataclasses.replace(rp.PRESETS["quick"], nyud_size=(64, 64), pascal_size=(64, 64), pretrain_epochs=1,
                               head_epochs=1, batch_size=4, views=1)
    monkeypatch.setitem(rp.PRESETS, "quick", tiny)
    args = ["reproduce", "--data-root", str(synthetic_root), "--out", str(tmp_path / "r"), "--device", "cpu",
            "--models", "st", "--backbones", "vit_tiny_patch16_224", "--json"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert "seed0/frozen/vit_tiny_patch16_224" in result["steps"]["ran"]
    [row] = result["frozen"]
    assert row["model"] == "vit_tiny_patch16_224" and "random init" in row["source"]
    st = result["per_seed"]["0"]["pascal"]["st"]
    parts, sal = row["parts"][0], row["sal"][0]
    expected = ((parts - st["human_parts"]["mIoU"]) / st["human_parts"]["mIoU"]
                + (sal - st["saliency"]["maxF"]) / st["saliency"]["maxF"]) / 2 * 100
    assert row["delta_m_pascal"][0] == pytest.approx(expected)
    assert "frozen backbones that never saw NYUD" in (tmp_path / "r" / "tables.md").read_text()

    bad = CliRunner().invoke(main, args[:-3] + ["--backbones", "no_such_net"])
    assert bad.exit_code == 1 and "unknown backbone(s) ['no_such_net']" in bad.output
