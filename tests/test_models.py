"""Backbone, Medusa, the baselines, MTAN, PAD-Net and MTI-Net: shapes, contracts, freezing, persistence."""

from __future__ import annotations

import logging

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file

from ufl.errors import UflError
from ufl.models import (MODELS, Backbone, Medusa, MedusaHead, MTINet, build_head, build_model,
                        read_head_metadata)

HRNET = "hrnet_w18_small_v2"
BACKBONES = {HRNET: ([18, 36, 72, 144], [4, 8, 16, 32]), "resnet18": ([64, 128, 256, 512], [4, 8, 16, 32])}
NYUD = {"semseg": 40, "depth": 1, "normals": 3, "edges": 1}
SIZE = 64


def make_backbone(name: str = HRNET, seed: int = 0, **kwargs) -> Backbone:
    torch.manual_seed(seed)
    return Backbone(name, warn_random_init=False, **kwargs)


def images(batch: int = 2, size: int = SIZE, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def hrnet() -> Backbone:
    return make_backbone().eval()


# -- backbone ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_levels_from_feature_info(name):
    backbone = make_backbone(name)
    channels, strides = BACKBONES[name]
    assert backbone.channels == channels and backbone.strides == strides
    feats = backbone(images())
    assert [tuple(f.shape) for f in feats] == [(2, c, SIZE // s, SIZE // s) for c, s in zip(channels, strides)]


def test_backbone_normalises_with_pretrained_cfg(hrnet):
    x = images()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    hrnet.eval()
    expected = hrnet.model((x - mean) / std)
    for got, want in zip(hrnet(x), expected):
        assert torch.equal(got, want)


def test_backbone_rejects_non_rgb(hrnet):
    with pytest.raises(ValueError, match="RGB"):
        hrnet(torch.rand(1, 1, 32, 32))


def test_random_init_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="ufl.models.backbone"):
        Backbone("resnet18")
    assert any("randomly initialised" in r.getMessage() for r in caplog.records)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(UflError, match="unknown backbone 'no_such_net'"):
        Backbone("no_such_net")


@pytest.mark.slow
def test_fingerprint_stable_and_sensitive():
    a, b = make_backbone(seed=0), make_backbone(seed=0)
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    assert make_backbone(seed=1).fingerprint() != a.fingerprint()
    with torch.no_grad():
        b.model.state_dict()[sorted(b.model.state_dict())[0]].reshape(-1)[0] += 1e-3
    assert b.fingerprint() != a.fingerprint()
    assert make_backbone(seed=0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).fingerprint() != a.fingerprint()


def test_fingerprint_tracks_batchnorm_buffers():
    a, b = make_backbone(seed=0), make_backbone(seed=0)
    b.train()
    b(images())  # updates running statistics only
    assert a.fingerprint() != b.fingerprint()


def test_config_round_trip():
    a = make_backbone(mean=(0.4, 0.4, 0.4), std=(0.2, 0.3, 0.4))
    b = Backbone.from_config(a.config())
    b.load_state_dict(a.state_dict())
    assert b.config() == a.config()
    assert b.fingerprint() == a.fingerprint()


def test_freeze_blocks_gradients_and_batchnorm_drift():
    backbone = make_backbone()
    model = build_model("medusa", backbone, {"depth": 1})
    backbone.freeze()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model.train()
    assert not backbone.training and all(not m.training for m in backbone.modules())
    assert model.heads["depth"].training
    out = model(images())
    (out["depth"]["out"].mean() + sum(o.mean() for o in out["depth"]["initial"])).backward()
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    head_grads = [p.grad for p in model.heads.parameters()]
    assert all(g is not None for g in head_grads) and any(g.abs().sum() > 0 for g in head_grads)
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unfreeze_restores_training():
    backbone = make_backbone().freeze()
    backbone.unfreeze().train()
    assert backbone.training and all(p.requires_grad for p in backbone.parameters())


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_from_file(tmp_path, suffix):
    source = make_backbone("resnet18", seed=3)
    state = dict(source.model.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # a classifier is ignored
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    torch.manual_seed(99)
    loaded = Backbone("resnet18", pretrained=path)
    assert loaded.fingerprint() == source.fingerprint()


@pytest.mark.slow
def test_pretrained_hrnet_ignores_only_classification_neck(tmp_path):
    source = make_backbone(HRNET, seed=4)
    state = dict(source.model.state_dict())
    state["classifier.weight"] = torch.zeros(1000, 2048)
    state["incre_modules.0.0.conv1.weight"] = torch.zeros(32, 18, 1, 1)
    save_file(state, str(tmp_path / "ok.safetensors"))
    assert Backbone(HRNET, pretrained=tmp_path / "ok.safetensors").fingerprint() == source.fingerprint()

    state["not_a_layer.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(UflError, match="unexpected key.*not_a_layer"):
        Backbone(HRNET, pretrained=tmp_path / "bad.safetensors")


def test_pretrained_file_errors(tmp_path):
    with pytest.raises(UflError, match="not found.*--pretrained none"):
        Backbone("resnet18", pretrained=tmp_path / "missing.safetensors")
    save_file(dict(make_backbone("resnet18").model.state_dict()), str(tmp_path / "r18.safetensors"))
    with pytest.raises(UflError, match="does not match 'hrnet_w18_small_v2'.*missing key"):
        Backbone(HRNET, pretrained=tmp_path / "r18.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UflError, match="unreadable"):
        Backbone("resnet18", pretrained=tmp_path / "junk.pth")


def test_pretrained_true_without_network_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UflError, match="no pretrained weights could be fetched.*--pretrained PATH.*--pretrained none"):
        Backbone("resnet18", pretrained=True)


# -- Medusa --------------------------------------------------------------------------------------

def test_medusa_head_outputs_and_initial(hrnet):
    torch.manual_seed(0)
    head = MedusaHead(hrnet.channels, 5)
    feats = hrnet(images())
    head.train()
    out = head(feats)
    assert tuple(out["out"].shape) == (2, 5, SIZE // 4, SIZE // 4)
    assert [tuple(o.shape) for o in out["initial"]] == [(2, 5, SIZE // s, SIZE // s) for s in (4, 8, 16, 32)]
    assert "attention" not in out
    head.eval()
    out = head(feats, out_size=(SIZE, SIZE + 8))
    assert set(out) == {"out"} and tuple(out["out"].shape) == (2, 5, SIZE, SIZE + 8)
    assert len(head(feats, return_initial=True)["initial"]) == 4
    head.train()
    assert "initial" not in head(feats, return_initial=False)


def test_medusa_head_attention(hrnet):
    torch.manual_seed(0)
    head = MedusaHead(hrnet.channels, 2).eval()
    att = head(hrnet(images()), return_attention=True)["attention"]
    assert [tuple(m.shape) for m in att["sfa"]] == [(2, c, SIZE // s, SIZE // s)
                                                    for c, s in zip(hrnet.channels, hrnet.strides)]
    assert all(((m >= 0) & (m <= 1)).all() for m in att["sfa"])
    assert tuple(att["msa"].shape) == (2, 4, SIZE // 4, SIZE // 4)
    assert torch.allclose(att["msa"].sum(dim=1), torch.ones(2, SIZE // 4, SIZE // 4), atol=1e-6)


def test_medusa_head_rejects_other_backbone_features(hrnet):
    head = build_head([64, 128, 256, 512], 3)
    with pytest.raises(ValueError, match="channels"):
        head(hrnet(images()))


def test_head_save_load_bit_identical(hrnet, tmp_path):
    torch.manual_seed(0)
    head = MedusaHead(hrnet.channels, 3, width=32, attention_reduction=2)
    head.train()
    head(hrnet(images(seed=5)))  # move BatchNorm statistics off their initial values
    head.eval()
    path = tmp_path / "normals.safetensors"
    head.save(path, extra={"fingerprint": hrnet.fingerprint()})
    loaded = MedusaHead.load(path).eval()
    assert loaded.config() == head.config() == {"in_channels": [18, 36, 72, 144], "out_channels": 3,
                                                "width": 32, "attention_reduction": 2, "sfa": True,
                                                "msa": True, "initial": True}
    assert read_head_metadata(path)["fingerprint"] == hrnet.fingerprint()
    feats = hrnet(images(seed=6))
    a, b = head(feats, return_attention=True), loaded(feats, return_attention=True)
    assert torch.equal(a["out"], b["out"]) and torch.equal(a["attention"]["msa"], b["attention"]["msa"])


def test_head_load_errors(tmp_path):
    with pytest.raises(UflError, match="not found"):
        MedusaHead.load(tmp_path / "missing.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UflError, match="not a Medusa head file"):
        MedusaHead.load(tmp_path / "other.safetensors")


def test_medusa_heads_are_independent(hrnet):
    torch.manual_seed(0)
    model = Medusa.build(hrnet, {"semseg": 4, "depth": 1}).eval()
    x = images()
    before = model(x)["semseg"]["out"]
    model.add_head("edges", build_head(hrnet.channels, 1))
    assert model.tasks == ["semseg", "depth", "edges"]
    model.remove_head("depth")
    after = model(x)
    assert set(after) == {"semseg", "edges"}
    assert torch.equal(before, after["semseg"]["out"])


def test_medusa_add_head_errors(hrnet):
    model = Medusa.build(hrnet, {"depth": 1})
    with pytest.raises(UflError, match="already has a head"):
        model.add_head("depth", build_head(hrnet.channels, 1))
    with pytest.raises(UflError, match="expects channels"):
        model.add_head("edges", build_head([64, 128, 256, 512], 1))
    with pytest.raises(UflError, match="no head for task 'parts'"):
        model.remove_head("parts")


def test_medusa_forward_features_matches_forward(hrnet):
    torch.manual_seed(0)
    model = Medusa.build(hrnet, {"depth": 1}).eval()
    x = images()
    direct = model(x, return_attention=True)["depth"]
    cached = model.forward_features(hrnet(x), out_size=(SIZE, SIZE), return_attention=True)["depth"]
    assert torch.equal(direct["out"], cached["out"])
    assert torch.equal(direct["attention"]["msa"], cached["attention"]["msa"])


# -- every model through the registry ------------------------------------------------------------

@pytest.mark.parametrize("backbone_name", sorted(BACKBONES))
@pytest.mark.parametrize("name", ["medusa", "mt-baseline", "single-task", "mti-net", "mtan", "pad-net"])
def test_model_contract(name, backbone_name):
    backbone = make_backbone(backbone_name)
    # Two tasks on resnet18: MTI-Net's propagation modules there are N x 512 channels wide.
    tasks = NYUD if backbone_name == HRNET else {"semseg": 40, "normals": 3}
    if name == "single-task":
        tasks = {"semseg": 40}
    model = build_model(name, backbone, tasks)
    assert model.backbone is backbone and model.tasks == list(tasks)
    x = images()
    model.train()
    out = model(x)
    assert set(out) == set(tasks)
    deep = name in ("medusa", "mti-net")
    channels, strides = BACKBONES[backbone_name]
    for task, n in tasks.items():
        assert tuple(out[task]["out"].shape) == (2, n, SIZE, SIZE)
        if deep:
            assert [tuple(o.shape) for o in out[task]["initial"]] == [(2, n, SIZE // s, SIZE // s) for s in strides]
        elif name == "pad-net":  # one scale: HRNet's fused features at stride 4
            assert [tuple(o.shape) for o in out[task]["initial"]] == [(2, n, SIZE // 4, SIZE // 4)]
        else:
            assert "initial" not in out[task]
    model.eval()
    with torch.no_grad():
        out = model(x, out_size=(40, 48))
    assert all(set(v) == {"out"} and tuple(v["out"].shape[-2:]) == (40, 48) for v in out.values())


@pytest.mark.parametrize("name", ["medusa", "mti-net", "mt-baseline", "mtan", "pad-net"])
def test_odd_input_sizes(name):
    torch.manual_seed(0)
    model = build_model(name, make_backbone("resnet18"), {"depth": 1, "edges": 1}).train()
    out = model(torch.rand(1, 3, 70, 90))
    assert all(tuple(v["out"].shape) == (1, 1, 70, 90) for v in out.values())


def test_hrnet_needs_sides_divisible_by_32(hrnet):
    assert hrnet.size_divisor == 32 and make_backbone("resnet18").size_divisor == 1
    with pytest.raises(ValueError, match="divisible by 32, got 70x96"):
        hrnet(torch.rand(1, 3, 70, 96))


def test_registry_names_and_errors(hrnet):
    assert MODELS.names() == ["medusa", "medusa-no-ip", "medusa-no-msa", "medusa-no-sfa", "mt-baseline", "mtan",
                              "mti-net", "pad-net", "single-task"]
    with pytest.raises(UflError, match="unknown model 'unet'"):
        build_model("unet", hrnet, {"depth": 1})
    with pytest.raises(UflError, match="takes no option.*width"):
        build_model("mti-net", hrnet, {"depth": 1}, width=32)
    with pytest.raises(UflError, match="exactly one task"):
        build_model("single-task", hrnet, NYUD)
    with pytest.raises(UflError, match="positive integers"):
        build_model("medusa", hrnet, {"depth": 0})
    model = build_model("medusa", hrnet, {"depth": 1}, width=16)
    assert model.heads["depth"].width == 16


def test_mtinet_distillation_is_quadratic_in_tasks(hrnet):
    for n in (1, 2, 4):
        model = MTINet(hrnet, {f"t{i}": 1 for i in range(n)})
        blocks = sum(len(pairs) for scale in model.distillation for pairs in scale.attention.values())
        assert blocks == 4 * n * (n - 1)
    single = MTINet(hrnet, {"depth": 1}).eval()
    assert tuple(single(images())["depth"]["out"].shape) == (2, 1, SIZE, SIZE)


def test_fpm_attention_is_a_softmax_over_tasks(hrnet):
    model = MTINet(hrnet, {"a": 1, "b": 1, "c": 1})
    fpm = model.fpm[0]
    captured = {}
    fpm.non_linear.register_forward_hook(lambda m, i, o: captured.setdefault("logits", o))
    feats = {t: torch.rand(2, 36, 8, 8) for t in ("a", "b", "c")}
    out = fpm(feats)
    assert all(tuple(v.shape) == (2, 36, 8, 8) for v in out.values())
    mask = torch.softmax(captured["logits"].view(2, 3, 36, 8, 8), dim=1)
    assert torch.allclose(mask.sum(dim=1), torch.ones(2, 36, 8, 8), atol=1e-6)


def test_medusa_is_at_least_25_percent_smaller_than_mtinet(hrnet):
    params = {name: sum(p.numel() for p in build_model(name, hrnet, NYUD).parameters())
              for name in ("medusa", "mti-net")}
    assert params["medusa"] <= 0.75 * params["mti-net"]
    assert params["medusa"] <= 0.75 * 14.8e6  # the paper's MTI-Net+N,E, too


def test_init_offline_imagenet_error_names_options_that_exist(monkeypatch, tmp_path):
    """`ufl init --pretrained imagenet` offline: every option the error suggests is one `init` takes
    (it used to suggest --no-pretrained, which does not exist)."""
    import re

    from click.testing import CliRunner

    from ufl.cli import main

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    result = CliRunner().invoke(main, ["init", "--backbone", "resnet18", "--pretrained", "imagenet",
                                       "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    suggested = set(re.findall(r"(--[a-z][a-z-]*)", result.stderr))
    assert "--pretrained" in suggested and "none" in result.stderr
    accepted = {opt for p in main.commands["init"].params for opt in p.opts}
    assert suggested <= accepted, f"the error suggests options init does not take: {suggested - accepted}"
    result = CliRunner().invoke(main, ["init", "--backbone", "resnet18", "--pretrained", "none",
                                       "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output


# -- MTAN, PAD-Net, and auxiliary-only tasks -----------------------------------------------------

NE = ("normals", "edges")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(i: int, o: int, k: int = 1, bias: bool = True) -> int:
    return i * o * k * k + (o if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def bottleneck(i: int, o: int) -> int:
    p = o // 4
    shortcut = conv(i, o, bias=False) + bn(o) if i != o else 0
    return conv(i, p, bias=False) + bn(p) + conv(p, p, 3, bias=False) + bn(p) + conv(p, o, bias=False) + bn(o) + shortcut


@pytest.mark.slow
@pytest.mark.parametrize("aux", [(), NE], ids=["no-aux", "N+E"])
@pytest.mark.parametrize("name", ["mtan", "pad-net", "mti-net"])
def test_new_models_forward_backward_with_and_without_ne(name, aux, hrnet):
    from ufl.losses import MultiTaskLoss
    from ufl.taskspec import get_spec

    torch.manual_seed(0)
    model = build_model(name, make_backbone(), NYUD, aux=aux).train()
    aux_only = name in ("pad-net", "mti-net")
    final = [t for t in NYUD if not (aux_only and t in aux)]
    assert model.tasks == final and list(model.aux_tasks) == (list(aux) if aux_only else [])
    out = model(images())
    assert set(out) == set(NYUD)
    for task, n in NYUD.items():
        if task in final:
            assert tuple(out[task]["out"].shape) == (2, n, SIZE, SIZE)
        else:
            assert set(out[task]) == {"initial"}
    g = torch.Generator().manual_seed(2)
    batch = {"semseg": torch.randint(0, 40, (2, SIZE, SIZE), generator=g),
             "depth": torch.rand(2, 1, SIZE, SIZE, generator=g) + 0.5,
             "normals": torch.nn.functional.normalize(torch.randn(2, 3, SIZE, SIZE, generator=g), dim=1),
             "edges": (torch.rand(2, 1, SIZE, SIZE, generator=g) > 0.8).float()}
    total, values = MultiTaskLoss({t: get_spec(t) for t in NYUD}, "nyud")(out, batch)
    assert torch.isfinite(total) and set(values) == set(NYUD)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.backbone.parameters())
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    model.eval()
    with torch.no_grad():
        assert list(model(images())) == final


def test_mtan_parameters_by_hand(hrnet):
    c = hrnet.channels  # 18, 36, 72, 144
    model = build_model("mtan", hrnet, {"a": 1, "b": 2}, width=8, low_width=4, atrous_rates=(1, 2))
    w, low, r = 8, 4, 2
    masks = sum(conv(ch if s == 0 else 2 * ch, ch // 4) + bn(ch // 4) + conv(ch // 4, ch) + bn(ch)
                for s, ch in enumerate(c))
    aspp = (conv(c[3], w, bias=False) + bn(w) + r * (conv(c[3], w, 3, bias=False) + bn(w))
            + conv(c[3], w, bias=False) + bn(w) + conv((r + 2) * w, w, bias=False) + bn(w))
    decoder = (aspp + conv(c[0], low, bias=False) + bn(low) + conv(w + low, w, 3, bias=False) + bn(w)
               + conv(w, w, 3, bias=False) + bn(w))
    encoders = bottleneck(18, 36) + bottleneck(36, 72) + bottleneck(72, 144)
    expected = 2 * (masks + decoder) + conv(w, 1) + conv(w, 2) + encoders
    assert n_params(model) - n_params(hrnet) == expected


def test_pad_net_parameters_by_hand(hrnet):
    f, c = sum(hrnet.channels), 16  # 270 fused channels
    out = {"a": 1, "b": 2, "c": 3}
    model = build_model("pad-net", hrnet, out, aux=["c"], channels=c)
    fuse = conv(f, f) + bn(f)
    initial = 3 * (bottleneck(f, c) + bottleneck(c, c)) + conv(c, 1) + conv(c, 2) + conv(c, 3)
    distillation = 2 * 2 * 2 * conv(c, c, 3, bias=False)  # 2 targets x 2 other tasks x SABlock (2 convs)
    heads = 2 * (2 * bottleneck(c, c)) + conv(c, 1) + conv(c, 2)  # no head for the auxiliary task c
    assert n_params(model) - n_params(hrnet) == fuse + initial + distillation + heads


def test_mtinet_aux_only_saves_exactly_the_heads_and_distillation_targets(hrnet):
    full = build_model("mti-net", hrnet, NYUD)
    ne = build_model("mti-net", hrnet, NYUD, aux=NE)
    hr_head = conv(270, 270) + bn(270)
    saved = sum(hr_head + conv(270, NYUD[t]) for t in NE)
    saved += sum(len(NE) * (len(NYUD) - 1) * 2 * conv(ch, ch, 3, bias=False) for ch in hrnet.channels)
    assert n_params(full) - n_params(ne) == saved
    assert n_params(ne) == pytest.approx(14.8e6, rel=0.01)  # MTI-Net's own "+N,E" figure


@pytest.mark.parametrize("name", ["pad-net", "mti-net"])
def test_aux_only_tasks_have_no_final_head(name, hrnet):
    model = build_model(name, hrnet, NYUD, aux=NE)
    assert sorted(model.heads) == ["depth", "semseg"] and list(model.aux_tasks) == list(NE)
    assert not [n for n, _ in model.named_modules() if n.startswith(("heads.normals", "heads.edges"))]
    distillations = model.distillation if name == "mti-net" else [model.distillation]
    for d in distillations:  # normals and edges are sources of both targets, never targets
        assert sorted(d.attention) == ["depth", "semseg"]
        assert sorted(d.attention["semseg"]) == ["depth", "edges", "normals"]
    # Their initial predictions exist (deep supervision) and feed the loss only.
    assert {"normals", "edges"} <= set(model.decode if name == "pad-net" else model.initial[0].decode)


@pytest.mark.parametrize("name", ["medusa", "mt-baseline", "mtan"])
def test_independent_models_keep_heads_for_aux_tasks(name, hrnet):
    model = build_model(name, hrnet, NYUD, aux=NE)
    assert model.tasks == list(NYUD) and list(model.aux_tasks) == []
    assert n_params(model) == n_params(build_model(name, hrnet, NYUD))


def test_build_model_aux_errors(hrnet):
    with pytest.raises(UflError, match=r"auxiliary task\(s\) \['edges'\] have no output channels"):
        build_model("mti-net", hrnet, {"depth": 1}, aux=["edges"])
    with pytest.raises(UflError, match="every task is auxiliary"):
        build_model("pad-net", hrnet, {"depth": 1}, aux=["depth"])
    with pytest.raises(UflError, match="multiple of 4"):
        build_model("pad-net", hrnet, {"depth": 1}, channels=10)


def test_mtan_masks_multiply_the_shared_features(hrnet):
    torch.manual_seed(0)
    model = build_model("mtan", hrnet, {"depth": 1, "semseg": 40}).eval()
    x = images()
    with torch.no_grad():
        out = model(x, return_attention=True)
        shared = hrnet(x)
        # A mask of ones leaves the task's finest attended features equal to the shared ones.
        att = model.attention["depth"][0]
        att[3].weight.zero_()
        att[3].bias.zero_()
        att[4].bias.fill_(50.0)  # BN (eval: running mean 0, var 1) -> 50, sigmoid -> 1
        low = {}
        model.heads["depth"].low.register_forward_hook(lambda m, i, o: low.update({"in": i[0]}))
        model(x)
    masks = out["depth"]["attention"]
    assert [tuple(m.shape) for m in masks] == [tuple(f.shape) for f in shared]
    assert all(float(m.min()) >= 0 and float(m.max()) <= 1 for m in masks)
    assert not torch.equal(masks[0], out["semseg"]["attention"][0])  # one set of masks per task
    assert torch.allclose(low["in"], shared[0], atol=1e-6)


def test_mtan_trains_on_a_batch_of_one(hrnet):
    torch.manual_seed(0)
    model = build_model("mtan", make_backbone(), {"depth": 1}).train()
    pooled_bn = model.heads["depth"].aspp.convs[-1][2]
    before = pooled_bn.running_mean.clone()
    model(images(batch=1))["depth"]["out"].sum().backward()
    assert torch.equal(pooled_bn.running_mean, before)  # a single value per channel: running statistics
    model(images(batch=2))
    assert not torch.equal(pooled_bn.running_mean, before)
