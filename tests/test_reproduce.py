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


def test_default_models_are_every_system_of_the_poster_and_the_controls():
    from ufl.cli.reproduce import DEFAULT_MODELS as CLI_DEFAULT, PRESET_NAMES, SYSTEM_NAMES

    assert rp.DEFAULT_MODELS == ("st", "mt-baseline", "mtan", "pad-net", "mti-net", "medusa", "random",
                                 "oracle") == CLI_DEFAULT
    assert tuple(rp.SYSTEMS) == SYSTEM_NAMES and tuple(rp.PRESETS) == PRESET_NAMES
    assert rp.ReproduceConfig().models == rp.DEFAULT_MODELS
    assert rp.ReproduceConfig(preset="transfer").models == ("medusa", "medusa-no-sfa", "medusa-no-msa",
                                                            "medusa-no-ip", "random", "oracle")
    poster = [rp.SYSTEMS[k] for k in rp.POSTER_MODELS]
    assert [(s.key, ne) for s in poster for ne in s.mtl] == POSTER_MTL_ROWS
    assert [s.key for s in poster if s.ufl_source] == POSTER_UFL_ROWS
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
    models = list(rp.POSTER_MODELS)
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


@pytest.mark.slow
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
                                                    + [f"seed0/ufl/{m}" for m in POSTER_UFL_ROWS + ["random"]]
                                                    + ["seed0/oracle/human_parts", "seed0/oracle/saliency"])
    assert [(r["model"], r["ne"]) for r in result["mtl"]] == POSTER_MTL_ROWS
    for row in result["mtl"]:
        assert {"model", "ne", "seg", "depth", "delta_m", "poster"} <= set(row)
        assert row["poster"] == rp.POSTER["mtl"][row["model"] + ("+ne" if row["ne"] else "")]
    assert [r["model"] for r in result["ufl"]] == POSTER_UFL_ROWS + ["random", "oracle"]
    for row in result["ufl"]:
        assert {"model", "parts", "sal", "delta_m_pascal", "poster"} <= set(row)
        assert row["poster"] == rp.POSTER["ufl"].get(row["model"])
    controls = {r["model"]: r for r in result["ufl"][-2:]}
    assert controls["random"]["backbone"] == "random init" and controls["random"]["seg"] is None
    assert controls["oracle"]["parts"] == [result["per_seed"]["0"]["pascal"]["oracle"]["human_parts"]["mIoU"], 0.0]
    # one seed: every claim is undecided and has no interval; the cost claim is a fact
    assert {c["verdict"] for c in result["claims"] if c["seeds"]} == {"undecided"}
    assert all({"claim", "verdict", "mean", "ci95", "seeds"} <= set(c) for c in result["claims"])
    assert any(c["claim"].startswith("Transfer (positive control)") for c in result["claims"])
    assert result["ufl"][0]["delta_m_pascal"] == [0.0, 0.0]
    # PAD-Net and MTI-Net +N,E report only the main tasks; Medusa +N,E its auxiliary heads too.
    nyud = result["per_seed"]["0"]["nyud"]
    assert sorted(nyud["pad-net+ne"]) == sorted(nyud["mti-net+ne"]) == ["depth", "semseg"]
    assert sorted(nyud["medusa+ne"]) == ["depth", "edges", "normals", "semseg"]
    assert [r["model"] for r in result["profile"]] == list(rp.POSTER_MODELS)
    # the floor really is untrained: its frozen backbone is the seed's fresh init
    import torch

    from ufl.models import Backbone
    from ufl.workspace import Workspace

    torch.manual_seed(0)
    fresh = Backbone("hrnet_w18_small_v2", pretrained=None).state_dict()
    frozen = Workspace(tmp_path / "r" / "seed0" / "ufl" / "random" / "workspace").backbone().state_dict()
    assert fresh.keys() == frozen.keys() and all(torch.equal(fresh[k], frozen[k]) for k in fresh)
    tables = (tmp_path / "r" / "tables.md").read_text()
    assert all(f"| {figure:.2f} |" in tables for figure in (34.57, 33.21, 36.19, 35.46, 37.40, 37.48, 47.37, 61.91))
    assert (tmp_path / "r" / "figure.png").stat().st_size > 1000
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["steps"]["ran"] == [] and len(again["steps"]["skipped"]) == 19
    assert again["mtl"] == result["mtl"] and again["ufl"] == result["ufl"]


def test_paired_claims_from_per_seed_rows():
    # Two seeds; Medusa beats the floor by 5 and 3 parts points (t-interval 4 +- 12.7: undecided) and
    # by exactly 2 saliency points both times (zero-width interval: held).
    def pascal(parts, sal):
        return {"human_parts": {"mIoU": parts}, "saliency": {"maxF": sal}}

    per_seed = {0: {"medusa": pascal(20.0, 50.0), "random": pascal(15.0, 48.0)},
                1: {"medusa": pascal(22.0, 51.0), "random": pascal(19.0, 49.0)}}
    ufl = {s: {r["model"]: r for r in rp.ufl_rows({}, per_seed[s], ["medusa", "random"])} for s in (0, 1)}
    claims = {c["claim"].split(" on PASCAL ")[-1]: c for c in rp.decide_claims({0: {}, 1: {}}, ufl, [], ("human_parts", "saliency"), [0, 1])}
    parts, sal = claims["parts mIoU"], claims["saliency maxF"]
    assert parts["differences"] == [5.0, 3.0] and parts["mean"] == 4.0 and parts["verdict"] == "undecided"
    assert parts["ci95"][0] == pytest.approx(4.0 - 12.706204736174703, rel=1e-9)  # sd sqrt(2), n 2
    assert sal["ci95"] == [2.0, 2.0] and sal["verdict"] == "held" and sal["seeds"] == [0, 1]


@pytest.mark.slow
def test_transfer_preset_end_to_end_with_normals_and_two_seeds(synthetic_root, tmp_path, monkeypatch):
    tiny = dataclasses.replace(rp.PRESETS["transfer"], nyud_size=(64, 64), pascal_size=(64, 64), pretrain_epochs=1,
                               head_epochs=1, batch_size=4, views=1)
    monkeypatch.setitem(rp.PRESETS, "transfer", tiny)
    result = rp.reproduce(rp.ReproduceConfig(data_root=str(synthetic_root), out=str(tmp_path / "t"), preset="transfer",
                                             models=["medusa", "random"], seeds=[0, 1], device="cpu", progress=False))
    # only the run the UFL row freezes is pretrained (medusa +N,E), normals is a third PASCAL task
    assert sorted(result["steps"]["ran"]) == sorted(f"seed{s}/{step}" for s in (0, 1) for step in
                                                    ("pretrain/medusa-ne", "ufl/medusa", "ufl/random"))
    assert [(r["model"], r["ne"]) for r in result["mtl"]] == [("medusa", True)]
    rows = {r["model"]: r for r in result["ufl"]}
    assert all(rows[m]["normals"] is not None and len(rows[m]["normals"]) == 2 for m in rows)
    control = [c for c in result["claims"] if c["claim"].startswith("Transfer (positive control)")]
    assert len(control) == 3 and all(c["seeds"] == [0, 1] and len(c["ci95"]) == 2 for c in control)
    normals = control[-1]
    per_seed = result["per_seed"]
    expected = [per_seed[str(s)]["pascal"]["random"]["normals"]["mean"] - per_seed[str(s)]["pascal"]["medusa"]["normals"]["mean"]
                for s in (0, 1)]
    assert normals["differences"] == pytest.approx(expected)
    assert "PASCAL normals" in result["markdown"] and (tmp_path / "t" / "claims.png").stat().st_size > 1000


def test_oracle_trains_for_its_own_epochs_and_the_cli_overrides_them(tmp_path, monkeypatch):
    # The oracle trains its backbone, so a preset whose cheap cached-feature heads need many epochs
    # gives it its own count; without one it keeps the head epochs. The pretraining is recorded, not run.
    seen = []

    def fake_pretrain(config):
        seen.append((config.dataset, tuple(config.tasks), config.epochs))
        return type("R", (), {"metrics": {t: {"mIoU": 1.0} for t in config.tasks}})()

    monkeypatch.setattr(rp, "pretrain", fake_pretrain)
    preset = dataclasses.replace(rp.PRESETS["transfer"], pretrain_epochs=5, head_epochs=7, oracle_epochs=3)
    config = rp.ReproduceConfig(out=str(tmp_path), preset="transfer", models=["oracle"], device="cpu")
    rp._pretrain_step(config, preset, 0, "medusa", ["semseg", "depth"], [])(tmp_path / "n")
    rp._pretrain_step(config, preset, 0, "medusa", ["human_parts"], [], dataset="pascal")(tmp_path / "o")
    rp._pretrain_step(config, dataclasses.replace(preset, oracle_epochs=None), 0, "medusa", ["saliency"], [],
                      dataset="pascal")(tmp_path / "s")
    assert seen == [("nyud", ("semseg", "depth"), 5), ("pascal", ("human_parts",), 3), ("pascal", ("saliency",), 7)]
    assert rp.ReproduceConfig(preset="transfer", oracle_epochs=11, head_epochs=2).schedule.oracle_epochs == 11
    assert rp.ReproduceConfig(preset="quick").schedule.oracle_epochs is None
    assert "--oracle-epochs" in CliRunner().invoke(main, ["reproduce", "--help"]).output
