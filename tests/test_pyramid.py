"""Any timm backbone: the ViT feature pyramid, Swin's channels-last maps, the families end to end."""

import json

import pytest
import timm
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from ufl.cli import main
from ufl.errors import UflError
from ufl.models import Backbone
from ufl.models.pyramid import SimpleFeaturePyramid, ViTFeaturePyramid, is_plain_vit, pyramid_blocks
from ufl.profile import profile_models


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("name, channels", [
    ("resnet18", [64, 128, 256, 512]),
    ("convnext_atto", [40, 80, 160, 320]),
    ("swin_tiny_patch4_window7_224", [96, 192, 384, 768]),
    ("vit_tiny_patch16_224", [48, 96, 192, 192]),
])
def test_every_family_gives_four_nchw_levels_at_strides_4_to_32(name, channels, torch_seed):
    backbone = Backbone(name, warn_random_init=False).eval()
    assert backbone.channels == channels and backbone.strides == [4, 8, 16, 32]
    with torch.no_grad():
        features = backbone(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [(2, c, 64 // s, 96 // s) for c, s in zip(channels, (4, 8, 16, 32))]


def test_plain_vits_are_recognised_and_read_four_quarters_of_the_trunk():
    assert is_plain_vit("vit_small_patch14_dinov2") and is_plain_vit("vit_tiny_patch16_224")
    assert not is_plain_vit("resnet18") and not is_plain_vit("swin_tiny_patch4_window7_224")
    assert pyramid_blocks(12) == [2, 5, 8, 11] and pyramid_blocks(24) == [5, 11, 17, 23]
    with pytest.raises(UflError, match="at least 4 blocks"):
        pyramid_blocks(3)


def test_pyramid_is_a_seeded_projection_with_nearest_upsampling():
    a, b = SimpleFeaturePyramid(16), SimpleFeaturePyramid(16)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)  # same seed, same weights, same fingerprint
    grids = [torch.randn(1, 16, 3, 5, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    with torch.no_grad():
        s4, s8, s16, s32 = a(grids)
    # s8: per-pixel projection by W[:, :, 0, 0], then every pixel repeated over a 2x2 block.
    w = a.up8.weight[:, :, 0, 0]  # (in 16, out 8)
    expected = torch.einsum("bihw,io->bohw", grids[1], w).repeat_interleave(2, -2).repeat_interleave(2, -1)
    torch.testing.assert_close(s8, expected)
    # orthonormal columns scaled by sqrt(in/out): W^T W = (in/out) I
    torch.testing.assert_close(w.T @ w, torch.eye(8) * 2, atol=1e-5, rtol=0)
    assert s4.shape == (1, 4, 12, 20) and torch.equal(s16, grids[2])
    torch.testing.assert_close(s32, torch.nn.functional.max_pool2d(grids[3], 2))


def test_dinov2_patch14_sees_a_stride_16_grid():
    model = ViTFeaturePyramid("vit_small_patch14_dinov2")
    assert model.tokens_size(64, 96) == (56, 84) and model.blocks == [2, 5, 8, 11]
    with torch.no_grad():
        grids = model.grids(torch.rand(1, 3, 64, 96))
    assert [tuple(g.shape) for g in grids] == [(1, 384, 4, 6)] * 4


def test_a_timm_weights_file_loads_into_the_trunk_and_the_fingerprint_covers_the_pyramid(tmp_path, torch_seed):
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False)  # classification model, head included
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    backbone = Backbone("vit_tiny_patch16_224", pretrained=tmp_path / "vit.safetensors")
    loaded = backbone.model.trunk.state_dict()
    for key, value in source.state_dict().items():
        if key in loaded:
            assert torch.equal(loaded[key], value), key
    fingerprint = backbone.fingerprint()
    with torch.no_grad():
        backbone.model.neck.up8.weight.mul_(2)
    assert backbone.fingerprint() != fingerprint

    # a ufl Backbone's own state dict round-trips too (trunk and pyramid)
    save_file({f"model.{k}": v.contiguous() for k, v in backbone.model.state_dict().items()},
              str(tmp_path / "own.safetensors"))
    again = Backbone("vit_tiny_patch16_224", pretrained=tmp_path / "own.safetensors")
    assert again.fingerprint() == backbone.fingerprint()

    resnet = timm.create_model("resnet18", pretrained=False)
    save_file(resnet.state_dict(), str(tmp_path / "resnet.safetensors"))
    with pytest.raises(UflError, match="does not match 'vit_tiny_patch16_224'"):
        Backbone("vit_tiny_patch16_224", pretrained=tmp_path / "resnet.safetensors")


def test_sizes_not_divisible_by_32_are_refused_for_a_vit():
    backbone = Backbone("vit_tiny_patch16_224", warn_random_init=False)
    assert backbone.size_divisor == 32
    with pytest.raises(UflError, match="multiples of 32"):
        backbone.check_size((48, 64))


@pytest.mark.slow
def test_profile_reports_the_pyramid_cost():
    result = profile_models(task_counts=[1], backbone="vit_tiny_patch16_224", size=(64, 64), models=["medusa"])
    pyramid = result["pyramid"]
    # 3 deconvs (192->96, 96->48, 192->96), 2x2 kernels, with biases
    assert pyramid["pyramid_params"] == 2 * (192 * 96 * 4 + 96) + (96 * 48 * 4 + 48)
    assert 0 < pyramid["pyramid_gflops"] < pyramid["trunk_gflops"]
    assert profile_models(task_counts=[1], backbone="resnet18", size=(64, 64), models=["medusa"])["pyramid"] is None
    out = _invoke("profile", "--backbone", "vit_tiny_patch16_224", "--size", "64", "--tasks", "1", "--models", "medusa")
    assert out.exit_code == 0 and "feature pyramid (blocks [2, 5, 8, 11]" in out.output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_small_patch14_dinov2", "vit_small_patch16_224"])
def test_a_frozen_vit_runs_init_cache_add_task_evaluate(name, synthetic_root, tmp_path):
    ws = tmp_path / "ws"
    out = _invoke("init", "--workspace", ws, "--backbone", name, "--pretrained", "none")
    assert out.exit_code == 0, out.output
    out = _invoke("cache-features", "--workspace", ws, "--dataset", "pascal", "--data-root", synthetic_root,
                  "--size", "64", "--workers", "0", "--device", "cpu")
    assert out.exit_code == 0, out.output
    out = _invoke("add-task", "saliency", "--workspace", ws, "--epochs", "1", "--batch-size", "4", "--device", "cpu",
                  "--workers", "0")
    assert out.exit_code == 0, out.output
    out = _invoke("evaluate", "--workspace", ws, "--all-tasks", "--json", "--device", "cpu")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output.strip().splitlines()[-1])
    assert result["tasks"]["saliency"]["drift"] == 0.0
    manifest = json.loads((ws / "workspace.json").read_text())
    assert manifest["backbone"]["channels"] == [96, 192, 384, 384]
    assert manifest["backbone"]["size_divisor"] == 32
