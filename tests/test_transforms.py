"""Geometric transforms over sample dicts: every modality against hand-computed results."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import default_collate

from ufl.datasets.transforms import (RECIPES, Compose, RandomHorizontalFlip, RandomScaleRotate, Resize, View,
                                     apply_view, build_transforms, hflip, resize, scale_rotate)
from ufl.kinds.normals import rotate_normals

MODALITIES = {"semseg": "label", "edges": "binary", "depth": "depth", "normals": "normals"}


def make_sample(h=8, w=8, seed=0):
    """A sample with one target per modality; labels are the column index (0..w-1)."""
    g = torch.Generator().manual_seed(seed)
    normals = torch.randn(3, h, w, generator=g)
    normals = normals / normals.norm(dim=0, keepdim=True)
    return {
        "image": torch.rand(3, h, w, generator=g),
        "id": f"img{seed}",
        "semseg": torch.arange(w).repeat(h, 1),
        "edges": (torch.rand(1, h, w, generator=g) > 0.5).float(),
        "depth": torch.full((1, h, w), 3.0),
        "normals": normals,
        "meta": {"orig_size": torch.tensor([h, w])},
    }


def view_of(sample):
    return {k: sample["meta"][k] for k in ("flip", "scale", "angle")}


def uniform_normals(x, y, z, h=8, w=8):
    return torch.tensor([x, y, z], dtype=torch.float32).view(3, 1, 1).expand(3, h, w).clone()


# -- flip --------------------------------------------------------------------------------------
def test_flip_mirrors_every_target_and_negates_normals_x():
    s = make_sample(w=6)
    out = hflip(s, MODALITIES)
    assert out["semseg"][0].tolist() == [5, 4, 3, 2, 1, 0]
    assert torch.equal(out["image"], s["image"].flip(-1)) and torch.equal(out["edges"], s["edges"].flip(-1))
    assert torch.equal(out["normals"][0], -s["normals"][0].flip(-1))
    assert torch.equal(out["normals"][1:], s["normals"][1:].flip(-1))
    assert torch.equal(out["depth"], s["depth"])  # uniform depth, values unchanged
    assert torch.equal(hflip(out, MODALITIES)["normals"], s["normals"])  # twice = identity
    assert out["semseg"].dtype == torch.int64 and s["semseg"][0, 0] == 0  # the input is not modified


def test_random_flip_records_meta_and_respects_p(torch_seed):
    always = RandomHorizontalFlip(MODALITIES, p=1.0)(make_sample(w=4))
    never = RandomHorizontalFlip(MODALITIES, p=0.0)(make_sample(w=4))
    assert always["meta"]["flip"] == 1.0 and always["semseg"][0].tolist() == [3, 2, 1, 0]
    assert never["meta"]["flip"] == 0.0 and never["semseg"][0].tolist() == [0, 1, 2, 3]
    assert always["meta"]["scale"] == 1.0 and always["meta"]["angle"] == 0.0  # identity entries filled in
    assert torch.equal(always["meta"]["orig_size"], torch.tensor([8, 4]))


# -- zoom / rotation ---------------------------------------------------------------------------
def test_zoom_in_takes_the_centre_and_divides_depth():
    s = make_sample(w=8)
    s["normals"] = uniform_normals(0.0, 0.6, 0.8)
    out = scale_rotate(s, MODALITIES, scale=2.0)
    # output column j samples input column 3.5 + (j - 3.5) / 2 (pixel centres), nearest:
    # 1.75 2.25 2.75 3.25 3.75 4.25 4.75 5.25 -> the centre half, each column twice
    assert out["semseg"][0].tolist() == [2, 2, 3, 3, 4, 4, 5, 5]
    assert torch.equal(out["depth"], torch.full((1, 8, 8), 1.5))  # 3 m / zoom 2
    assert torch.allclose(out["normals"], s["normals"])  # an isotropic zoom keeps the directions
    assert out["image"].shape == (3, 8, 8)
    z = scale_rotate(s, MODALITIES, scale=1.5)
    assert torch.allclose(z["depth"], torch.full((1, 8, 8), 2.0))


def test_zoom_out_fills_the_border_per_modality():
    s = make_sample()
    s["image"] = torch.ones(3, 8, 8)
    out = scale_rotate(s, MODALITIES, scale=0.5)
    border = torch.ones(8, 8, dtype=torch.bool)
    border[2:6, 2:6] = False  # the whole image shrinks into the centre 4x4
    assert (out["semseg"][border] == 255).all() and (out["semseg"][~border] != 255).all()
    assert (out["edges"][0][border] == 255).all()
    assert (out["depth"][0][border] == 0).all() and torch.allclose(out["depth"][0][~border], torch.tensor(6.0))
    assert (out["normals"][:, border] == 0).all()
    assert torch.allclose(out["normals"][:, ~border].norm(dim=0), torch.ones(16))
    assert (out["image"][:, border] == 0).all()


def test_rotation_by_90_turns_labels_and_normals_counter_clockwise():
    s = make_sample()
    s["semseg"] = torch.zeros(8, 8, dtype=torch.int64)
    s["semseg"][:, 4:] = 1  # the right half
    s["normals"] = uniform_normals(1.0, 0.0, 0.0)  # pointing right
    out = scale_rotate(s, MODALITIES, angle=90.0)
    expected = torch.zeros(8, 8, dtype=torch.int64)
    expected[:4] = 1  # counter-clockwise: the right half moves to the top
    assert torch.equal(out["semseg"], expected)
    assert torch.allclose(out["normals"], uniform_normals(0.0, -1.0, 0.0), atol=1e-6)  # now pointing up (y down)
    assert torch.allclose(scale_rotate(s, MODALITIES, angle=-90.0)["normals"], uniform_normals(0.0, 1.0, 0.0), atol=1e-6)


def test_rotation_by_45_fills_corners_and_rotates_normals():
    s = make_sample(h=16, w=16)
    s["normals"] = uniform_normals(1.0, 0.0, 0.0, 16, 16)
    out = scale_rotate(s, MODALITIES, angle=45.0)
    for r, c in ((0, 0), (0, 15), (15, 0), (15, 15)):  # the corners come from outside the image
        assert out["semseg"][r, c] == 255 and out["edges"][0, r, c] == 255
        assert out["depth"][0, r, c] == 0 and (out["normals"][:, r, c] == 0).all()
    centre = out["normals"][:, 6:10, 6:10].reshape(3, -1)
    expected = torch.tensor([math.cos(math.pi / 4), -math.sin(math.pi / 4), 0.0]).view(3, 1)
    assert torch.allclose(centre, expected.expand_as(centre), atol=1e-6)
    assert torch.equal(out["depth"][0, 8, 8], torch.tensor(3.0))
    assert set(out["semseg"].unique().tolist()) <= set(range(16)) | {255}


def test_rotate_normals_formula_matches_mtinet_arctan2_form():
    # MTI-Net: phi = arctan2(x, y); x' = sin(phi + a) |xy|, y' = cos(phi + a) |xy|
    n = torch.tensor([0.3, -0.5, 0.81]).view(3, 1, 1)
    a = 20.0
    phi = math.atan2(0.3, -0.5)
    r = math.hypot(0.3, -0.5)
    out = rotate_normals(n, a).view(3)
    assert torch.allclose(out, torch.tensor([r * math.sin(phi + math.radians(a)), r * math.cos(phi + math.radians(a)), 0.81]))


# -- resize ------------------------------------------------------------------------------------
def test_resize_nearest_keeps_the_label_set_and_normals_unit():
    g = torch.Generator().manual_seed(1)
    s = make_sample(h=12, w=16)
    values = torch.tensor([0, 3, 7, 255])
    s["semseg"] = values[torch.randint(4, (12, 16), generator=g)]
    for size in ((5, 7), (23, 29), 9):
        out = resize(s, MODALITIES, size)
        hw = (size, size) if isinstance(size, int) else size
        assert out["semseg"].shape == hw and out["semseg"].dtype == torch.int64
        assert set(out["semseg"].unique().tolist()) <= {0, 3, 7, 255}
        assert set(out["edges"].unique().tolist()) <= {0.0, 1.0}
        assert torch.allclose(out["normals"].norm(dim=0), torch.ones(hw), atol=1e-6)
        assert out["image"].shape == (3, *hw) and 0 <= out["image"].min() and out["image"].max() <= 1
    assert resize(s, MODALITIES, (12, 16))["semseg"] is s["semseg"]  # same size: untouched


def test_resize_image_is_antialiased_when_shrinking():
    s = {"image": torch.zeros(3, 16, 16)}
    s["image"][:, :, ::4] = 1.0  # one bright column in four
    out = resize(s, {}, (16, 4))["image"]
    # plain bilinear would sample between columns 1 and 2 of each group (both dark) and give 0;
    # the antialiasing filter averages the group (exactly 1/4 away from the borders)
    assert (out > 0.15).all()
    assert torch.allclose(out[:, :, 1:3], torch.tensor(0.25))


# -- views, randomness, pipelines --------------------------------------------------------------
def test_apply_view_reproduces_a_random_pipeline_from_its_meta(torch_seed):
    pipeline = build_transforms("pascal", train=True, size=(10, 12), modalities=MODALITIES)
    for seed in range(4):
        s = make_sample(seed=seed)
        out = pipeline(s)
        view = View.from_meta(out["meta"])
        assert 0.75 <= view.scale <= 1.25 and -20 <= view.angle <= 20
        again = apply_view(s, view.flip, view.scale, view.angle, size=(10, 12), modalities=MODALITIES)
        for key in ("image", "semseg", "edges", "depth", "normals"):
            assert torch.equal(out[key], again[key]), key
        assert view_of(again) == view_of(out) and torch.equal(again["meta"]["orig_size"], s["meta"]["orig_size"])


def test_apply_view_on_targets_only():
    s = make_sample(w=8)
    targets = {k: v for k, v in s.items() if k != "image"}
    out = apply_view(targets, flip=True, scale=2.0, modalities=MODALITIES)
    assert "image" not in out
    assert out["semseg"][0].tolist() == [5, 5, 4, 4, 3, 3, 2, 2]  # flipped, then the centre zoomed
    assert out["meta"]["flip"] == 1.0 and out["meta"]["scale"] == 2.0 and out["meta"]["angle"] == 0.0


def test_seeded_runs_reproduce_with_global_rng_and_with_a_generator():
    def run(**kw):
        pipeline = build_transforms("pascal", train=True, size=(6, 6), modalities=MODALITIES, **kw)
        return [pipeline(make_sample(seed=i)) for i in range(5)]

    torch.manual_seed(7)
    first = run()
    torch.manual_seed(7)
    second = run()
    third = run(generator=torch.Generator().manual_seed(3))
    fourth = run(generator=torch.Generator().manual_seed(3))
    for a, b in zip(first, second):
        assert view_of(a) == view_of(b) and torch.equal(a["semseg"], b["semseg"]) and torch.equal(a["image"], b["image"])
    for a, b in zip(third, fourth):
        assert view_of(a) == view_of(b) and torch.equal(a["normals"], b["normals"])
    assert [a["meta"]["angle"] for a in first] != [a["meta"]["angle"] for a in third]
    assert len({a["meta"]["angle"] for a in first}) == 5  # a new draw for each sample


def test_random_scale_rotate_ranges_and_choices():
    g = torch.Generator().manual_seed(0)
    choices = RandomScaleRotate(MODALITIES, scales=[1.0, 1.2, 1.5], angles=[0.0], generator=g)
    drawn = {choices(make_sample())["meta"]["scale"] for _ in range(30)}
    assert drawn == {1.0, 1.2, 1.5}
    ranged = RandomScaleRotate(MODALITIES, scales=(0.75, 1.25), angles=(-20.0, 20.0), generator=g)
    metas = [ranged(make_sample())["meta"] for _ in range(30)]
    assert all(0.75 <= m["scale"] <= 1.25 and -20 <= m["angle"] <= 20 for m in metas)
    assert len({m["scale"] for m in metas}) == 30
    with pytest.raises(ValueError):
        RandomScaleRotate(MODALITIES, scales=(0.5, 1.0, 2.0))


def test_build_transforms_reference_recipes():
    nyud = build_transforms("nyud", train=True, modalities=MODALITIES)
    kinds = [type(t) for t in nyud.transforms]
    assert kinds == [RandomHorizontalFlip, RandomScaleRotate, Resize]
    assert nyud.transforms[1].scales == [1.0, 1.2, 1.5] and nyud.transforms[1].angles == [0.0]
    assert nyud.transforms[2].size == (480, 640)
    pascal = build_transforms("pascal", train=True, modalities=MODALITIES)
    assert pascal.transforms[1].scales == (0.75, 1.25) and pascal.transforms[1].angles == (-20.0, 20.0)
    assert pascal.transforms[2].size == (512, 512)
    small = build_transforms("nyud", train=False, size=(96, 128), modalities=MODALITIES)
    assert [type(t) for t in small.transforms] == [Resize] and small.transforms[0].size == (96, 128)
    assert [type(t) for t in build_transforms("nyud", train=True, augment=False, modalities=MODALITIES).transforms] == [Resize]
    folder = build_transforms("folder", train=True, modalities=MODALITIES)
    assert [type(t) for t in folder.transforms] == [RandomHorizontalFlip]
    assert build_transforms("folder", train=False, modalities=MODALITIES).transforms == []
    assert RECIPES["nyud"].size == (480, 640)
    with pytest.raises(ValueError, match="modalities"):
        build_transforms("nyud", train=True)


def test_default_collate_batches_transformed_samples(torch_seed):
    pipeline = build_transforms("nyud", train=True, size=(6, 8), modalities=MODALITIES)
    batch = default_collate([pipeline(make_sample(seed=i)) for i in range(3)])
    assert batch["image"].shape == (3, 3, 6, 8) and batch["semseg"].shape == (3, 6, 8)
    assert batch["semseg"].dtype == torch.int64 and batch["depth"].shape == (3, 1, 6, 8)
    assert batch["id"] == ["img0", "img1", "img2"]
    assert batch["meta"]["orig_size"].shape == (3, 2) and batch["meta"]["flip"].shape == (3,)
    assert set(batch["meta"]["scale"].tolist()) <= {1.0, 1.2, 1.5}


def test_unknown_target_key_and_bad_scale_raise():
    s = make_sample()
    s["mystery"] = torch.zeros(8, 8)
    with pytest.raises(ValueError, match="mystery"):
        hflip(s, MODALITIES)
    with pytest.raises(ValueError, match="scale"):
        scale_rotate(make_sample(), MODALITIES, scale=0.0)
    assert Compose([])(make_sample())["id"] == "img0"
