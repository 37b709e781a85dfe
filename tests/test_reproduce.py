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


POSTER_MTL_ROWS = [("st", None), ("mt-baseline", False), ("mtan", False), ("mtan", True), ("pad-net", False),
                   ("pad-net", True), ("mti-net", False), ("mti-net", True), ("medusa", False), ("medusa", True)]
POSTER_UFL_ROWS = ["st", "mt-baseline", "mtan", "mti-net", "medusa"]


def _all_systems():
    nyud = {"st-semseg": {"semseg": {"mIoU": 40.0}}, "st-depth": {"depth": {"rmse": 0.50, "log_rmse": 0.2}}}
    for i, (model, ne) in enumerate(POSTER_MTL_ROWS[1:]):
        nyud[f"{model}+ne" if ne else model] = _nyud(30.0 + i, 0.40 + i / 100)
    pascal = {m: {"human_parts": {"mIoU": 50.0 + i}, "saliency": {"maxF": 60.0 - i}} for i, m in enumerate(POSTER_UFL_ROWS)}
    return nyud, pascal


def test_default_models_are_every_system_of_the_poster():
    from ufl.cli.reproduce import DEFAULT_MODELS as CLI_DEFAULT

    assert rp.DEFAULT_MODELS == ("st", "mt-baseline", "mtan", "pad-net", "mti-net", "medusa") == CLI_DEFAULT
    assert rp.ReproduceConfig().models == rp.DEFAULT_MODELS
    assert [(s.key, ne) for s in rp.SYSTEMS.values() for ne in s.mtl] == POSTER_MTL_ROWS
    assert [s.key for s in rp.SYSTEMS.values() if s.ufl_source] == POSTER_UFL_ROWS
    assert len(rp.POSTER["mtl"]) == 10 and list(rp.POSTER["ufl"]) == POSTER_UFL_ROWS


def test_poster_mtl_delta_m_follows_from_its_own_figures():
    # The poster's Delta_m was computed before rounding: each row's agrees with its rounded seg and
    # depth within 0.1 point (a typo in a figure would not).
    st = rp.POSTER["mtl"]["st"]
    for key, row in rp.POSTER["mtl"].items():
        recomputed = ((row["seg"] - st["seg"]) / st["seg"] - (row["depth"] - st["depth"]) / st["depth"]) / 2 * 100
        assert recomputed == pytest.approx(row["delta_m"], abs=0.1), key
    assert rp.POSTER["mtl"]["mtan+ne"] == {"seg": 36.19, "depth": 0.567, "delta_m": 5.57}
    assert rp.POSTER["ufl"]["mtan"] == {"parts": 47.37, "sal": 57.84, "delta_m_pascal": 4.26}


def test_every_poster_row_beside_its_figure():
    nyud, pascal = _all_systems()
    models = list(rp.DEFAULT_MODELS)
    mtl = rp.summarise([rp.mtl_rows(nyud, models)], ("seg", "depth", "delta_m"))
    ufl = rp.summarise([rp.ufl_rows(nyud, pascal, models)], ("seg", "depth", "delta_m_nyud", "parts", "sal",
                                                              "delta_m_pascal"))
    assert [(r["model"], r["ne"]) for r in mtl] == POSTER_MTL_ROWS
    assert all(r["poster"] == rp.POSTER["mtl"][r["model"] + ("+ne" if r["ne"] else "")] for r in mtl)
    assert [r["model"] for r in ufl] == POSTER_UFL_ROWS
    assert [r["backbone"] for r in ufl] == ["st-semseg", "mt-baseline", "mtan+ne", "mti-net+ne", "medusa+ne"]
    assert ufl[2]["seg"] == [32.0, 0.0]  # MTAN's UFL row shows its +N,E NYUD run (30 + 2)
    table = rp.mtl_markdown(mtl, "hrnet").splitlines()
    assert len(table) == 2 + 10
    mtan_ne = next(line for line in table if "| MTAN |" in line and "| yes |" in line)
    assert "| 32.00 | 36.19 | 0.420 | 0.567 |" in mtan_ne and mtan_ne.endswith("| +5.57 |")
    table = rp.ufl_markdown(ufl).splitlines()
    assert len(table) == 2 + 5
    assert "| 52.00 | 47.37 | 58.00 | 57.84 |" in table[4] and table[4].endswith("| +4.26 |")


def test_reproduce_end_to_end_then_resume_skips_every_step(synthetic_root, tmp_path, monkeypatch):
    tiny = dataclasses.replace(rp.PRESETS["quick"], nyud_size=(64, 64), pascal_size=(64, 64), pretrain_epochs=1,
                               head_epochs=1, batch_size=4, views=1)
    monkeypatch.setitem(rp.PRESETS, "quick", tiny)
    args = ["reproduce", "--data-root", str(synthetic_root), "--out", str(tmp_path / "r"), "--device", "cpu", "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)
    pretrained = ["st-semseg", "st-depth", "mt-baseline", "mtan", "mtan-ne", "pad-net", "pad-net-ne", "mti-net",
                  "mti-net-ne", "medusa", "medusa-ne"]
    assert sorted(result["steps"]["ran"]) == sorted([f"seed0/pretrain/{r}" for r in pretrained]
                                                    + [f"seed0/ufl/{m}" for m in POSTER_UFL_ROWS])
    assert [(r["model"], r["ne"]) for r in result["mtl"]] == POSTER_MTL_ROWS
    for row in result["mtl"]:
        assert {"model", "ne", "seg", "depth", "delta_m", "poster"} <= set(row)
        assert row["poster"] == rp.POSTER["mtl"][row["model"] + ("+ne" if row["ne"] else "")]
    assert [r["model"] for r in result["ufl"]] == POSTER_UFL_ROWS
    for row in result["ufl"]:
        assert {"model", "parts", "sal", "delta_m_pascal", "poster"} <= set(row)
        assert row["poster"] == rp.POSTER["ufl"][row["model"]]
    assert result["ufl"][0]["delta_m_pascal"] == [0.0, 0.0]
    # PAD-Net and MTI-Net +N,E report only the main tasks; Medusa +N,E its auxiliary heads too.
    nyud = result["per_seed"]["0"]["nyud"]
    assert sorted(nyud["pad-net+ne"]) == sorted(nyud["mti-net+ne"]) == ["depth", "semseg"]
    assert sorted(nyud["medusa+ne"]) == ["depth", "edges", "normals", "semseg"]
    assert [r["model"] for r in result["profile"]] == list(rp.DEFAULT_MODELS)
    tables = (tmp_path / "r" / "tables.md").read_text()
    assert all(f"| {figure:.2f} |" in tables for figure in (34.57, 33.21, 36.19, 35.46, 37.40, 37.48, 47.37, 61.91))
    assert (tmp_path / "r" / "figure.png").stat().st_size > 1000
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["steps"]["ran"] == [] and len(again["steps"]["skipped"]) == 16
    assert again["mtl"] == result["mtl"] and again["ufl"] == result["ufl"]
