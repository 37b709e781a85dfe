"""Medusa's ablations (issue 12): medusa-no-sfa, medusa-no-msa, medusa-no-ip remove their part, train,
profile, round-trip as head files, and serve as frozen backbones for a workspace."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from click.testing import CliRunner

from ufl.checkpoint import load_checkpoint
from ufl.cli import main
from ufl.errors import UflError
from ufl.io import save_weights
from ufl.losses import MultiTaskLoss
from ufl.model_names import MODEL_NAMES
from ufl.models import MODELS, Backbone, HRNetHead, Medusa, MedusaHead, aux_only, build_model
from ufl.models.medusa import HEAD_FORMAT
from ufl.profile import count_parameters, profile_models
from ufl.taskspec import get_spec

HRNET = "hrnet_w18_small_v2"
NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edges": 1}
NE = ("normals", "edges")
SIZE = 64
ABLATIONS = ("medusa-no-sfa", "medusa-no-msa", "medusa-no-ip")


@pytest.fixture(scope="module")
def hrnet() -> Backbone:
    torch.manual_seed(0)
    return Backbone(HRNET, warn_random_init=False)


def images(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def nyud_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return {"semseg": torch.randint(0, 40, (2, SIZE, SIZE), generator=g),
            "depth": torch.rand(2, 1, SIZE, SIZE, generator=g) + 0.5,
            "normals": torch.nn.functional.normalize(torch.randn(2, 3, SIZE, SIZE, generator=g), dim=1),
            "edges": (torch.rand(2, 1, SIZE, SIZE, generator=g) > 0.8).float()}


# hand counts (HRNet-18: 18/36/72/144 channels)
def conv(i: int, o: int, k: int = 1, bias: bool = True) -> int:
    return i * o * k * k + (o if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def sfa_block(c: int, r: int = 4) -> int:
    """SharedFeatureAttention: mask conv3x3 (c -> h, no bias) - BN - conv1x1 (h -> c), then a BasicBlock."""
    h = max(c // r, 8)
    mask = conv(c, h, 3, bias=False) + bn(h) + conv(h, c)
    refine = 2 * (conv(c, c, 3, bias=False) + bn(c))
    return mask + refine


def msa_head(channels, out: int, d: int = 64) -> int:
    project = sum(conv(c, d, bias=False) + bn(d) for c in channels)
    attention = conv(len(channels) * d, d, bias=False) + bn(d) + conv(d, len(channels), 3)
    return project + attention + conv(d, d, 3, bias=False) + bn(d) + conv(d, out)


def hrnet_head(channels, out: int) -> int:
    total = sum(channels)
    return conv(total, total) + bn(total) + conv(total, out)


# -- the registry and options --------------------------------------------------------------------

def test_ablations_are_registered_with_their_options(hrnet):
    assert set(ABLATIONS) <= set(MODELS) and sorted(MODELS) == sorted(MODEL_NAMES)
    assert not any(aux_only(name) for name in ABLATIONS)
    assert build_model("medusa-no-sfa", hrnet, {"depth": 1}, width=16).heads["depth"].width == 16
    assert build_model("medusa-no-msa", hrnet, {"depth": 1}, attention_reduction=2).heads["depth"].attention_reduction == 2
    head = build_model("medusa-no-ip", hrnet, {"depth": 1}, width=16, attention_reduction=2).heads["depth"]
    assert (head.width, head.attention_reduction, head.ablated) == (16, 2, ["initial"])
    # an option of the removed part is refused, not silently ignored
    with pytest.raises(UflError, match="takes no option.*attention_reduction"):
        build_model("medusa-no-sfa", hrnet, {"depth": 1}, attention_reduction=2)
    with pytest.raises(UflError, match="takes no option.*width"):
        build_model("medusa-no-msa", hrnet, {"depth": 1}, width=16)
    with pytest.raises(UflError, match="takes no option.*sfa"):
        build_model("medusa", hrnet, {"depth": 1}, sfa=False)  # the full model stays the full model
    with pytest.raises(UflError, match="true or false"):
        MedusaHead(hrnet.channels, 1, sfa="no")


@pytest.mark.parametrize("aux", [(), NE], ids=["no-aux", "N+E"])
@pytest.mark.parametrize("name", ABLATIONS)
def test_forward_backward_with_and_without_aux(name, aux, hrnet):
    torch.manual_seed(0)
    model = build_model(name, hrnet, NYUD, aux=aux).train()
    assert model.tasks == list(NYUD) and list(model.aux_tasks) == []  # aux tasks: own heads, as Medusa's
    out = model(images())
    assert set(out) == set(NYUD)
    for task, n in NYUD.items():
        assert tuple(out[task]["out"].shape) == (2, n, SIZE, SIZE)
        if name == "medusa-no-ip":
            assert "initial" not in out[task]
        else:
            assert [tuple(o.shape) for o in out[task]["initial"]] == [(2, n, SIZE // s, SIZE // s) for s in (4, 8, 16, 32)]
    total, values = MultiTaskLoss({t: get_spec(t) for t in NYUD}, "nyud")(out, nyud_batch())
    assert torch.isfinite(total) and set(values) == set(NYUD)
    model.zero_grad()
    total.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []  # every parameter of the ablated model takes part
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert all(set(v) == {"out"} for v in model(images()).values())


# -- each ablation removes its part -------------------------------------------------------------

def test_no_sfa_has_no_sfa_parameters_and_counts_by_hand(hrnet):
    full, ablated = build_model("medusa", hrnet, NYUD), build_model("medusa-no-sfa", hrnet, NYUD)
    assert any(".sfa." in n for n in full.state_dict())
    assert [n for n in ablated.state_dict() if "sfa" in n] == []  # no parameter nor BatchNorm buffer
    assert not any(isinstance(m, type(full.heads["depth"].sfa[0])) for m in ablated.modules())
    per_head = sum(sfa_block(c) for c in hrnet.channels)
    assert per_head == 566_692  # attention.py's docstring: 567k SFA per head on HRNet-18
    assert count_parameters(full) - count_parameters(ablated) == len(NYUD) * per_head


def test_no_sfa_uses_the_features_as_they_are(hrnet):
    """Mask fixed to 1 and no refinement: the initial predictions read the backbone's features."""
    torch.manual_seed(0)
    head = MedusaHead(hrnet.channels, 3, sfa=False).train()
    feats = hrnet(images())
    out = head(feats, return_attention=True)
    for pred, f, initial in zip(head.initial, feats, out["initial"]):
        assert torch.equal(initial, pred(f))
    assert set(out["attention"]) == {"msa"}


def test_no_msa_has_an_hrnet_head_and_no_msa_parameters(hrnet):
    full, ablated = build_model("medusa", hrnet, NYUD), build_model("medusa-no-msa", hrnet, NYUD)
    assert [n for n in ablated.state_dict() if "msa" in n] == []
    assert all(isinstance(h.hrnet, HRNetHead) and not hasattr(h, "msa") for h in ablated.heads.values())
    assert all(len(h.sfa) == 4 and len(h.initial) == 4 for h in ablated.heads.values())
    difference = sum(hrnet_head(hrnet.channels, n) - msa_head(hrnet.channels, n) for n in NYUD.values())
    assert count_parameters(ablated) - count_parameters(full) == difference


def test_no_msa_predicts_from_the_attended_features(hrnet):
    torch.manual_seed(0)
    head = MedusaHead(hrnet.channels, 2, msa=False).eval()
    feats = hrnet(images())
    with torch.no_grad():
        out = head(feats, return_attention=True)
        attended = [sfa(f)[0] for sfa, f in zip(head.sfa, feats)]
        assert torch.equal(out["out"], head.hrnet(attended))
    assert set(out["attention"]) == {"sfa"} and tuple(out["out"].shape) == (2, 2, SIZE // 4, SIZE // 4)


def test_no_ip_never_returns_initial_and_its_loss_has_no_deep_supervision(hrnet):
    full, ablated = build_model("medusa", hrnet, NYUD), build_model("medusa-no-ip", hrnet, NYUD)
    assert [n for n in ablated.state_dict() if ".initial." in n] == []
    initial_predictors = sum(conv(c, n) for n in NYUD.values() for c in hrnet.channels)  # a 1x1 conv per scale
    assert count_parameters(full) - count_parameters(ablated) == initial_predictors
    head = ablated.heads["semseg"].train()
    assert "initial" not in head(hrnet(images()), return_initial=True)
    specs = {t: get_spec(t) for t in NYUD}
    loss = MultiTaskLoss(specs, "nyud", deep_supervision=True)
    total, values = loss(ablated.train()(images()), nyud_batch())
    # the total is the weighted final-output losses alone (no deep-supervision term)
    assert torch.allclose(total, sum(specs[t].weight("nyud") * values[t] for t in NYUD))
    torch.manual_seed(0)
    total_full, values_full = loss(full.train()(images()), nyud_batch())
    assert total_full > sum(specs[t].weight("nyud") * values_full[t] for t in NYUD)  # full Medusa: it has one


# -- head files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{"sfa": False}, {"msa": False}, {"initial": False}])
def test_ablated_head_files_round_trip(options, hrnet, tmp_path):
    torch.manual_seed(0)
    head = MedusaHead(hrnet.channels, 3, **options)
    head.train()
    head(hrnet(images(seed=5)))  # BatchNorm statistics off their initial values
    head.eval()
    head.save(tmp_path / "h.safetensors")
    loaded = MedusaHead.load(tmp_path / "h.safetensors").eval()
    assert loaded.config() == head.config() and loaded.ablated == list(options)
    feats = hrnet(images(seed=6))
    with torch.no_grad():
        assert torch.equal(head(feats)["out"], loaded(feats)["out"])


def test_a_head_file_from_before_the_ablation_options_loads_as_the_full_head(hrnet, tmp_path):
    torch.manual_seed(0)
    head = MedusaHead(hrnet.channels, 2).eval()
    old_config = {"in_channels": head.in_channels, "out_channels": 2, "width": 64, "attention_reduction": 4}
    save_weights(tmp_path / "old.safetensors", head.state_dict(),
                 metadata={"format": HEAD_FORMAT, "config": json.dumps(old_config)})
    loaded = MedusaHead.load(tmp_path / "old.safetensors").eval()
    assert loaded.ablated == [] and loaded.config() == head.config()
    feats = hrnet(images())
    with torch.no_grad():
        assert torch.equal(head(feats)["out"], loaded(feats)["out"])


# -- profile, pretrain, init ---------------------------------------------------------------------

@pytest.mark.slow
def test_profile_counts_the_ablations_as_built(hrnet):
    result = profile_models(task_counts=(1, 2), size=(64, 64), models=("medusa", *ABLATIONS))
    params = {(r["model"], r["tasks"]): r["params"] for r in result["rows"]}
    for name in ABLATIONS:
        assert params[(name, 2)] == count_parameters(build_model(name, hrnet, {"semseg": 40, "depth": 1}))
    assert params[("medusa-no-sfa", 1)] < params[("medusa-no-ip", 1)] < params[("medusa", 1)]
    cli = CliRunner().invoke(main, ["profile", "--tasks", "1", "--size", "64", "--json",
                                    "--models", ",".join(ABLATIONS)])
    assert cli.exit_code == 0, cli.output
    assert [r["model"] for r in json.loads(cli.output)["rows"]] == list(ABLATIONS)


@pytest.mark.slow
def test_pretrain_cli_no_ip_then_init_from_its_checkpoint(synthetic_root, tmp_path, caplog):
    from ufl.workspace import Workspace

    out = tmp_path / "no-ip"
    result = CliRunner().invoke(main, ["pretrain", "--data-root", str(synthetic_root), "--size", "64x96",
                                       "--epochs", "1", "--batch-size", "4", "--workers", "0", "--device", "cpu",
                                       "--pretrained", "none", "--out", str(out), "--model", "medusa-no-ip",
                                       "--tasks", "semseg,depth", "--aux", ""])
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out)
    assert ckpt.meta["model"] == "medusa-no-ip" and sorted(ckpt.meta["metrics"]) == ["depth", "semseg"]
    assert not any(".initial." in k for k in ckpt.model_state)
    # the frozen backbone of a workspace; the ablated heads are not registered (one log line says so)
    with caplog.at_level(logging.INFO, logger="ufl.workspace.registration"):
        ws = Workspace.from_checkpoint(tmp_path / "ws", out)
    assert ws.tasks == {} and "ablation of Medusa" in caplog.text
    bare = Workspace.from_checkpoint(tmp_path / "ws2", out, register=False)  # as `ufl reproduce` uses it
    assert bare.tasks == {} and bare.fingerprint == ws.fingerprint == ckpt.meta["fingerprint"]
