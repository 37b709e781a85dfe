"""ufl reproduce: the table arithmetic against hand-computed values, and step resumption."""

import dataclasses
import json

import pytest
from click.testing import CliRunner

from ufl import reproduce as rp
from ufl.cli import main
from ufl.errors import UflError


def _nyud(seg, depth):
    return {"semseg": {"mIoU": seg}, "depth": {"rmse": depth, "log_rmse": 0.1}}


NYUD = {
    "st-semseg": {"semseg": {"mIoU": 40.0}},
    "st-depth": {"depth": {"rmse": 0.50, "log_rmse": 0.2}},
    "medusa": _nyud(42.0, 0.55),
    "medusa+ne": _nyud(44.0, 0.45),
    "mti-net": _nyud(40.0, 0.50),
    "mti-net+ne": _nyud(38.0, 0.60),
}
PASCAL = {
    "st": {"human_parts": {"mIoU": 50.0}, "saliency": {"maxF": 60.0}},
    "medusa": {"human_parts": {"mIoU": 55.0}, "saliency": {"maxF": 63.0}},
    "mti-net": {"human_parts": {"mIoU": 50.0}, "saliency": {"maxF": 54.0}},
}


def test_mtl_rows_delta_m_by_hand():
    rows = rp.mtl_rows(NYUD, ["st", "medusa", "mti-net"])
    by = {(r["model"], r["ne"]): r for r in rows}
    assert by[("st", None)]["delta_m"] == 0.0
    # medusa: seg +5 % (42 vs 40), depth -10 % worse (0.55 vs 0.50, lower is better): mean -2.5 %
    assert by[("medusa", False)]["delta_m"] == pytest.approx((5.0 - 10.0) / 2)
    # medusa+N,E: +10 % seg, +10 % depth (0.45 vs 0.50) -> +10 %
    assert by[("medusa", True)]["delta_m"] == pytest.approx(10.0)
    # mti-net+N,E: -5 % seg, -20 % depth -> -12.5 %
    assert by[("mti-net", True)]["delta_m"] == pytest.approx(-12.5)
    assert [(r["model"], r["ne"]) for r in rows] == [("st", None), ("medusa", False), ("medusa", True),
                                                     ("mti-net", False), ("mti-net", True)]


def test_ufl_rows_against_the_single_task_row():
    rows = {r["model"]: r for r in rp.ufl_rows(NYUD, PASCAL, ["st", "medusa", "mti-net"])}
    assert rows["st"]["delta_m_pascal"] == 0.0 and rows["st"]["seg"] == 40.0
    # medusa: parts +10 %, saliency +5 % -> +7.5 %; its NYUD columns are the +N,E run's
    assert rows["medusa"]["delta_m_pascal"] == pytest.approx(7.5)
    assert rows["medusa"]["seg"] == 44.0 and rows["medusa"]["delta_m_nyud"] == pytest.approx(10.0)
    # mti-net: parts 0 %, saliency -10 % -> -5 %
    assert rows["mti-net"]["delta_m_pascal"] == pytest.approx(-5.0)


def test_without_single_task_rows_delta_m_is_none():
    rows = rp.ufl_rows(NYUD, PASCAL, ["medusa"])
    assert rows[0]["delta_m_pascal"] is None and rows[0]["delta_m_nyud"] is None
    assert rp.mtl_rows(NYUD, ["medusa"])[0]["delta_m"] is None


def test_summarise_gives_mean_and_sample_std():
    seed0 = [{"model": "m", "seg": 40.0, "depth": None}]
    seed1 = [{"model": "m", "seg": 44.0, "depth": None}]
    row = rp.summarise([seed0, seed1], ("seg", "depth"))[0]
    assert row["model"] == "m" and row["depth"] is None
    assert row["seg"] == [42.0, pytest.approx(2.8284271, rel=1e-6)]  # std of (40, 44), ddof 1
    assert rp.summarise([seed0], ("seg",))[0]["seg"] == [40.0, 0.0]


def test_step_runner_runs_a_step_once(tmp_path):
    calls = []

    def step(folder):
        calls.append(folder)
        return {"value": len(calls)}

    runner = rp.StepRunner(tmp_path)
    assert runner("seed0/a", step) == {"value": 1}
    again = rp.StepRunner(tmp_path)
    assert again("seed0/a", step) == {"value": 1}
    assert len(calls) == 1 and again.skipped == ["seed0/a"] and again.ran == []


def test_bad_configuration_is_refused():
    with pytest.raises(UflError, match="unknown model"):
        rp.ReproduceConfig(models=["medusa", "mtinet"])
    with pytest.raises(UflError, match="unknown preset"):
        rp.ReproduceConfig(preset="huge")


def test_reproduce_end_to_end_then_resume_skips_every_step(synthetic_root, tmp_path, monkeypatch):
    tiny = dataclasses.replace(rp.PRESETS["quick"], nyud_size=(64, 96), pascal_size=(64, 64), pretrain_epochs=1,
                               head_epochs=1, batch_size=4, views=1)
    monkeypatch.setitem(rp.PRESETS, "quick", tiny)
    args = ["reproduce", "--data-root", str(synthetic_root), "--models", "st,medusa", "--out", str(tmp_path / "r"),
            "--device", "cpu", "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)
    assert sorted(result["steps"]["ran"]) == sorted([
        "seed0/pretrain/st-semseg", "seed0/pretrain/st-depth", "seed0/pretrain/medusa", "seed0/pretrain/medusa-ne",
        "seed0/ufl/st", "seed0/ufl/medusa"])
    assert [r["model"] for r in result["ufl"]] == ["st", "medusa"]
    assert result["ufl"][0]["delta_m_pascal"] == [0.0, 0.0]
    assert (tmp_path / "r" / "tables.md").read_text().count("|") > 20
    assert (tmp_path / "r" / "figure.png").stat().st_size > 1000
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["steps"]["ran"] == [] and len(again["steps"]["skipped"]) == 6
    assert again["mtl"] == result["mtl"] and again["ufl"] == result["ufl"]
