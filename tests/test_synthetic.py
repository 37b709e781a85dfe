"""Tests of ``ufl make-synthetic``: the NYUD_MT / PASCAL_MT formats, their value conventions,
geometric consistency, determinism, the refusal of an existing output, and the CLI."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
import pytest
import scipy.io
from PIL import Image
from click.testing import CliRunner
from skimage.segmentation import find_boundaries

from ufl import synthetic
from ufl.datasets.catalog import NYUD_CLASSES
from ufl.synthetic import (PERSON_PARTS, VOC_TO_CONTEXT, generate, kinect_depth, make_synthetic, nyud_intrinsics,
                           render_nyud_sample, render_pascal_sample)
from ufl.synthetic.render import Box, Camera, Capsule, Cylinder, Rect, cast, sphere
from ufl.errors import DataError, UflError

SIZE, N_TRAIN, N_VAL = 64, 6, 3

# PASCAL-Part person part -> 7-class human parts (DESIGN.md section 4; MTI-Net's HUMAN_PART[6]).
HUMAN_PARTS_6 = {"head": 1, "hair": 1, "lear": 1, "rear": 1, "leye": 1, "reye": 1, "lebrow": 1, "rebrow": 1,
                 "nose": 1, "mouth": 1, "neck": 2, "torso": 2, "luarm": 3, "ruarm": 3, "llarm": 4, "rlarm": 4,
                 "lhand": 4, "rhand": 4, "luleg": 5, "ruleg": 5, "llleg": 6, "rlleg": 6, "lfoot": 6, "rfoot": 6}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    paths = make_synthetic(out, size=SIZE, n_train=N_TRAIN, n_val=N_VAL, seed=0, progress=False)
    assert paths == {"NYUD_MT": out / "NYUD_MT", "PASCAL_MT": out / "PASCAL_MT"}
    return out


def _ids(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _nyud_ids(data: Path) -> list[str]:
    return _ids(data / "NYUD_MT/gt_sets/train.txt") + _ids(data / "NYUD_MT/gt_sets/val.txt")


def _pascal_ids(data: Path) -> list[str]:
    return _ids(data / "PASCAL_MT/ImageSets/Context/train.txt") + _ids(data / "PASCAL_MT/ImageSets/Context/val.txt")


def _tree_hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _mti_net_objects(mat_path: Path) -> list[tuple[int, np.ndarray, list[tuple[str, np.ndarray]]]]:
    """Index a human_parts .mat exactly as MTI-Net's pascal_context.py (_load_human_parts and
    _preprocess_parts) does: anno[0][0][1][0] objects, obj[1][0][0] class, obj[2] mask,
    obj[3][0][i][0][0] part name and obj[3][0][i][1] part mask, len(obj[3]) == 0 when no parts."""
    objects = scipy.io.loadmat(mat_path)["anno"][0][0][1][0]
    result = []
    for obj in objects:
        parts = []
        if len(obj[3]) != 0:
            for i in range(len(obj[3][0])):
                parts.append((str(obj[3][0][i][0][0]), obj[3][0][i][1].astype(bool)))
        result.append((int(obj[1][0][0]), obj[2], parts))
    return result


# -- files and formats ------------------------------------------------------------------------------------
def test_every_file_of_both_formats_is_present_for_every_id(data):
    nyud, pascal = _nyud_ids(data), _pascal_ids(data)
    assert len(nyud) == len(set(nyud)) == N_TRAIN + N_VAL
    assert len(pascal) == len(set(pascal)) == N_TRAIN + N_VAL
    assert all(len(i) == 11 and i[4] == "_" and i[:4].isdigit() and i[5:].isdigit() for i in pascal)  # 2008_000123
    for i in nyud:
        for sub, ext in (("images", "jpg"), ("segmentation", "png"), ("depth", "npy"), ("normals", "npy"),
                         ("edge", "npy")):
            assert (data / "NYUD_MT" / sub / f"{i}.{ext}").is_file(), (sub, i)
    for i in pascal:
        for sub, ext in (("JPEGImages", "jpg"), ("semseg/VOC12", "png"), ("pascal-context/trainval", "mat"),
                         ("human_parts", "mat"), ("sal_distill", "png"), ("normals_distill", "png")):
            assert (data / "PASCAL_MT" / sub / f"{i}.{ext}").is_file(), (sub, i)
    for split in ("train", "val"):  # Parts "txt" files are JSON keyed by exactly the Context split's ids
        parts = json.loads((data / f"PASCAL_MT/ImageSets/Parts/{split}.txt").read_text())
        assert sorted(parts) == sorted(_ids(data / f"PASCAL_MT/ImageSets/Context/{split}.txt"))
    assert not list(data.glob(".*partial"))  # no temporary folder left behind


def test_nyud_value_conventions(data):
    zeros_in_seg = 0
    for i in _nyud_ids(data):
        image = Image.open(data / f"NYUD_MT/images/{i}.jpg")
        assert image.mode == "RGB" and image.size == (round(SIZE * 4 / 3), SIZE)  # 480 x 640 aspect
        seg_png = Image.open(data / f"NYUD_MT/segmentation/{i}.png")
        assert seg_png.mode == "L"
        seg = np.array(seg_png)
        assert seg.shape == (SIZE, round(SIZE * 4 / 3)) and seg.max() <= 40
        assert len(np.unique(seg)) >= 4
        zeros_in_seg += int((seg == 0).sum())
        depth = np.load(data / f"NYUD_MT/depth/{i}.npy")
        assert depth.dtype == np.float32 and depth.shape == seg.shape
        valid = depth > 0
        assert 0.5 < valid.mean() < 1.0  # holes, but mostly measured
        assert depth[valid].min() >= 0.5 and depth.max() <= 10.0 and (depth >= 0).all()
        normals = np.load(data / f"NYUD_MT/normals/{i}.npy")
        assert normals.dtype == np.float32 and normals.shape == seg.shape + (3,)
        np.testing.assert_allclose(np.linalg.norm(normals[valid], axis=1), 1.0, atol=1e-5)
        assert (normals[~valid] == 0).all()
        edge = np.load(data / f"NYUD_MT/edge/{i}.npy")
        assert edge.shape == seg.shape and set(np.unique(edge)) == {0.0, 1.0}
    assert zeros_in_seg > 0  # some unlabeled pixels, as in NYUD


def test_pascal_value_conventions(data):
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]  # VOC: background, aeroplane, ... boat
    void_seen = 0
    for i in _pascal_ids(data):
        image = Image.open(data / f"PASCAL_MT/JPEGImages/{i}.jpg")
        assert image.mode == "RGB"
        w, h = image.size
        assert min(h, w) == SIZE and SIZE <= max(h, w) <= math.ceil(SIZE * 4 / 3)
        png = Image.open(data / f"PASCAL_MT/semseg/VOC12/{i}.png")
        assert png.mode == "P" and png.getpalette()[:15] == palette and png.getpalette()[-3:] == [224, 224, 192]
        voc = np.array(png)
        assert voc.shape == (h, w) and set(np.unique(voc)) <= set(range(21)) | {255}
        void_seen += int((voc == 255).sum())
        label_map = scipy.io.loadmat(data / f"PASCAL_MT/pascal-context/trainval/{i}.mat")["LabelMap"]
        assert label_map.dtype == np.uint16 and label_map.shape == (h, w)
        assert label_map.min() >= 1 and label_map.max() <= 459  # every pixel labelled
        for c in np.unique(voc):  # VOC classes map to their Context ids
            if 0 < c < 255:
                assert (label_map[voc == c] == VOC_TO_CONTEXT[c]).all()
        sal = np.array(Image.open(data / f"PASCAL_MT/sal_distill/{i}.png"))
        assert Image.open(data / f"PASCAL_MT/sal_distill/{i}.png").mode == "L"
        assert sal.shape == (h, w) and set(np.unique(sal)) <= {0, 255} and (sal == 255).any()
        rgb = Image.open(data / f"PASCAL_MT/normals_distill/{i}.png")
        assert rgb.mode == "RGB"
        n = 2.0 * np.array(rgb).astype(np.float64) / 255.0 - 1.0
        np.testing.assert_allclose(np.linalg.norm(n, axis=2), 1.0, atol=0.01)
    assert void_seen > 0


def test_human_parts_mat_indexes_like_mti_net_and_matches_voc_and_json(data):
    parts_json = {}
    for split in ("train", "val"):
        parts_json.update(json.loads((data / f"PASCAL_MT/ImageSets/Parts/{split}.txt").read_text()))
    raw = scipy.io.loadmat(data / f"PASCAL_MT/human_parts/{_pascal_ids(data)[0]}.mat")["anno"]
    assert raw.dtype.names == ("imname", "objects")
    assert raw[0][0]["objects"].dtype.names == ("class", "class_ind", "mask", "parts")
    persons_seen = 0
    for i in _pascal_ids(data):
        voc = np.array(Image.open(data / f"PASCAL_MT/semseg/VOC12/{i}.png"))
        objects = _mti_net_objects(data / f"PASCAL_MT/human_parts/{i}.mat")
        assert parts_json[i] == [c for c, _, _ in objects]
        persons = [(mask, parts) for c, mask, parts in objects if c == 15]
        assert (15 in parts_json[i]) == bool(persons)
        union = np.zeros(voc.shape, dtype=bool)
        target = np.zeros(voc.shape, dtype=np.uint8)
        for mask, parts in persons:
            assert mask.dtype == np.uint8 and mask.shape == voc.shape and mask.any()
            assert parts and {name for name, _ in parts} <= set(PERSON_PARTS)
            for name, part in parts:
                assert part.any() and not (part & ~mask.astype(bool)).any()
                target[part] = HUMAN_PARTS_6[name]
            union |= mask.astype(bool)
            persons_seen += 1
        # person instance masks cover exactly the VOC person pixels (void band aside)
        assert (union[voc == 15]).all()
        assert set(np.unique(voc[union])) <= {15, 255}
        assert (target > 0).sum() == union.sum()  # every person pixel belongs to a part
        for c, mask, parts in objects:
            if c != 15:
                assert set(np.unique(voc[mask.astype(bool)])) <= {c, 255}
    assert persons_seen > 0


def test_saliency_is_the_largest_visible_object(data):
    for i in _pascal_ids(data):
        sal = np.array(Image.open(data / f"PASCAL_MT/sal_distill/{i}.png")) > 127
        masks = [mask.astype(bool) for _, mask, _ in _mti_net_objects(data / f"PASCAL_MT/human_parts/{i}.mat")]
        largest = max(masks, key=lambda m: m.sum())
        assert (sal == largest).all()


# -- geometry -------------------------------------------------------------------------------------------
def _nyud(seed: int, height: int = 72):
    return render_nyud_sample(np.random.default_rng(seed), height, round(height * 4 / 3))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nyud_floor_faces_up_and_depth_grows_towards_the_far_wall(seed):
    s = _nyud(seed)
    floor = (s["segmentation"] == NYUD_CLASSES.index("floor") + 1) & (s["depth"] > 0)
    assert floor.sum() > 50
    n = s["normals"][floor]
    assert (n[:, 1] < -0.9).all() and (n[:, 2] > 0).all()  # up (y is down), tilted towards the camera
    # each image column: floor depth decreases downwards (towards the camera)
    both = floor[:-1] & floor[1:]
    assert (s["depth"][:-1][both] > s["depth"][1:][both]).all()
    # where a wall rises from the floor, it is (up to pixel sampling on oblique side walls) at least
    # as far as all the floor below it in its column
    z = s["depth"]
    wall = (s["segmentation"] == 1) & (z > 0)
    contacts = np.argwhere(wall[:-1] & floor[1:])
    assert len(contacts) > 0
    for y, x in contacts:
        assert z[y, x] >= z[y + 1:, x][floor[y + 1:, x]].max() * 0.97


def test_nyud_normals_agree_with_the_back_projected_depth():
    s = _nyud(4, height=96)
    h, w = s["depth"].shape
    fx, fy, cx, cy = nyud_intrinsics(h, w)
    z = s["depth"].astype(np.float64)
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    points = np.stack([(u - cx) / fx * z, -(v - cy) / fy * z, -z], axis=-1)  # camera frame: x right, y up, z back
    du = points[1:-1, 2:] - points[1:-1, :-2]
    dv = points[2:, 1:-1] - points[:-2, 1:-1]
    n = np.cross(dv, du)
    n /= np.linalg.norm(n, axis=-1, keepdims=True).clip(1e-12)
    n[..., 1] *= -1  # the files' convention has y down
    floor = s["segmentation"] == 2
    inner = floor[1:-1, 1:-1] & floor[:-2, 1:-1] & floor[2:, 1:-1] & floor[1:-1, :-2] & floor[1:-1, 2:]
    inner &= (z[1:-1, 1:-1] > 0) & (z[:-2, 1:-1] > 0) & (z[2:, 1:-1] > 0) & (z[1:-1, :-2] > 0) & (z[1:-1, 2:] > 0)
    assert inner.sum() > 100
    cosine = np.einsum("ij,ij->i", n[inner], s["normals"][1:-1, 1:-1][inner])
    assert np.degrees(np.arccos(np.clip(cosine, -1, 1))).max() < 1.0


def test_nyud_edges_are_thin_and_lie_on_instance_or_depth_boundaries():
    for seed in (5, 6):
        s = _nyud(seed)
        edge = s["edge"] > 0
        assert 0.01 < edge.mean() < 0.2
        blocks = edge[:-1, :-1] & edge[1:, :-1] & edge[:-1, 1:] & edge[1:, 1:]
        assert blocks.sum() <= 0.01 * edge.sum()  # one pixel wide (thinning may keep a block at a junction)
        boundary = find_boundaries(s["instances"], connectivity=1, mode="thick")
        z = s["depth"]
        jump = np.zeros_like(boundary)
        step = np.abs(np.diff(z, axis=1)) > 0.04 * np.minimum(z[:, 1:], z[:, :-1])
        jump[:, 1:] |= step
        jump[:, :-1] |= step
        step = np.abs(np.diff(z, axis=0)) > 0.04 * np.minimum(z[1:], z[:-1])
        jump[1:] |= step
        jump[:-1] |= step
        assert (boundary | jump)[edge].mean() > 0.98  # precision: edges sit on boundaries
        inner = find_boundaries(s["instances"], connectivity=1, mode="inner")
        near_edge = np.zeros_like(edge)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near_edge |= np.roll(np.roll(edge, dy, 0), dx, 1)
        assert near_edge[inner].mean() > 0.9  # recall (1-px-thin legs collapse to one line when thinned)


def test_kinect_shadow_band_has_the_disparity_width():
    """A near box (1 m) on a far wall (4 m): the projector's shadow covers the columns k left of
    the box with k < fx * baseline * (1/1 - 1/4) = 100 * 0.075 * 0.75 = 5.625, i.e. 5 columns."""
    depth = np.full((8, 100), 4.0)
    depth[:, 50:70] = 1.0
    thing = np.zeros((8, 100), dtype=np.int64)
    out = kinect_depth(np.random.default_rng(0), depth, thing, [synthetic.Thing(1, [])], fx=100.0)
    assert (out[:, 45:50] == 0).all()
    assert (out[:, 50:] == depth[:, 50:]).all()
    border = int((out[0] == 0).argmin())  # the registration band along the left border: 1..3 % of the width
    assert 1 <= border <= 3 and (out[:, :border] == 0).all() and (out[:, border:45] == 4.0).all()
    far = np.full((2, 4), 12.0)  # out of the Kinect's range reads 0
    assert (kinect_depth(np.random.default_rng(0), far, np.zeros((2, 4), int), [synthetic.Thing(1, [])],
                         100.0) == 0).all()


def test_pascal_person_counts_and_image_sizes_vary():
    counts, shapes = [], []
    for i in range(14):
        s = render_pascal_sample(np.random.default_rng(np.random.SeedSequence([0, 1, i])), 40)
        counts.append(sum(o["class_ind"] == 15 for o in s["objects"]))
        shapes.append(s["image"].shape[:2])
        assert s["semseg"].shape == s["context"].shape == s["saliency"].shape == shapes[-1]
    assert 0 in counts and 1 in counts and max(counts) >= 2
    assert any(h > w for h, w in shapes) and any(w > h for h, w in shapes)
    assert all(min(h, w) == 40 and max(h, w) <= math.ceil(40 * 4 / 3) for h, w in shapes)


def test_ray_caster_matches_analytic_hits():
    cam = Camera.looking(41, 41, 40.0, 40.0, (0.0, 0.0, 0.0), yaw=0.0, pitch=0.0)
    centre = (20, 20)  # the pixel whose ray is the optical axis
    for shape, depth in ((sphere((0, 0, -5), 1.0), 4.0), (Box((0, 0, -6), (1, 1, 1)), 5.0),
                         (Capsule((-1, 0, -3), (1, 0, -3), 0.5), 2.5), (Cylinder((0, 0, -2), (0, 0, -3), 0.3), 2.0),
                         (Rect((0, 0, -7), (1, 0, 0), (0, 1, 0), 0.5, 0.5), 7.0)):
        hits = cast(cam, [shape])
        assert hits.depth[centre] == pytest.approx(depth, abs=1e-9)
        np.testing.assert_allclose(hits.normal[centre], (0.0, 0.0, 1.0), atol=1e-9)
    hits = cast(cam, [Rect((0, 0, -7), (1, 0, 0), (0, 1, 0), 0.5, 0.5), sphere((0, 0, -5), 1.0)])
    assert hits.index[centre] == 1  # the nearer shape wins
    # a sphere of radius 1 at 5 m covers pi * (40 / sqrt(24))^2 pixels (its silhouette's half angle)
    area = np.pi * (40.0 * math.tan(math.asin(1 / 5))) ** 2
    assert (cast(cam, [sphere((0, 0, -5), 1.0)]).index == 0).sum() == pytest.approx(area, rel=0.05)


# -- determinism, refusal, interruption, CLI ------------------------------------------------------
def test_same_seed_same_files_any_worker_count_and_other_seed_differs(tmp_path):
    kwargs = dict(size=40, n_train=3, n_val=2, progress=False)
    a = make_synthetic(tmp_path / "a", seed=7, **kwargs)
    b = make_synthetic(tmp_path / "b", seed=7, workers=2, **kwargs)
    c = make_synthetic(tmp_path / "c", seed=8, **kwargs)
    for name in ("NYUD_MT", "PASCAL_MT"):
        ha, hb, hc = _tree_hashes(a[name]), _tree_hashes(b[name]), _tree_hashes(c[name])
        assert ha == hb
        assert ha.keys() == hc.keys()
        differing = [k for k in ha if ha[k] != hc[k] and "gt_sets" not in k and "Context" not in k]
        assert len(differing) > len(ha) // 2


def test_refuses_an_output_that_holds_a_dataset(tmp_path):
    (tmp_path / "NYUD_MT").mkdir()
    with pytest.raises(DataError) as err:
        make_synthetic(tmp_path, size=32, n_train=1, n_val=1, progress=False)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "NYUD_MT") in message and "--out" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["NYUD_MT"]  # nothing written
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DataError):
        make_synthetic(a_file, size=32, n_train=1, n_val=1, progress=False)
    with pytest.raises(UflError):
        make_synthetic(tmp_path / "new", size=16, progress=False)


def test_an_interrupted_run_leaves_no_dataset(tmp_path, monkeypatch):
    calls = []
    real_job = generate._job

    def failing_job(args):
        if args[1].name.startswith(".PASCAL_MT"):
            if calls:  # the second PASCAL image: the first one is already on disk
                raise KeyboardInterrupt
            calls.append(args)
        return real_job(args)

    monkeypatch.setattr(generate, "_job", failing_job)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic(tmp_path, size=32, n_train=2, n_val=1, progress=False)
    # NYUD_MT was complete and renamed into place; the half-written PASCAL_MT was removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["NYUD_MT"]
    assert len(_nyud_ids(tmp_path)) == 3


def test_cli_make_synthetic(tmp_path):
    from ufl.cli import main

    out = tmp_path / "data"
    args = ["make-synthetic", "--out", str(out), "--size", "32", "--train", "2", "--val", "1", "--seed", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"NYUD_MT: {out / 'NYUD_MT'}" in result.output and f"PASCAL_MT: {out / 'PASCAL_MT'}" in result.output
    assert len(_pascal_ids(out)) == 3 and len(_nyud_ids(out)) == 3
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1
    assert "ufl: error:" in again.output and "already exists" in again.output and "Traceback" not in again.output


# -- the relatedness knob (--nyud-persons) --------------------------------------------------------
# sha256 (first 16 hex digits) of segmentation + instance ids of NYUD-like sample i (48 x 64,
# SeedSequence([0, 0, i])) as rendered by the generator before the knob existed.
_ROOMS_BEFORE_THE_KNOB = ["300e15f5fcdc9171", "c1d24cbfa5d6a1ec", "6e2c1ab75c749ba2", "5cb82364b2336ef6"]


def _nyud_sample(i: int, persons=None, size=(48, 64)) -> dict:
    rng = np.random.default_rng(np.random.SeedSequence([0, 0, i]))
    return render_nyud_sample(rng, *size, persons=persons)


def test_nyud_persons_default_renders_the_rooms_of_before_and_writes_the_same_files(tmp_path):
    for i, expected in enumerate(_ROOMS_BEFORE_THE_KNOB):
        s = _nyud_sample(i)
        digest = hashlib.sha256(s["segmentation"].tobytes() + s["instances"].astype(np.int64).tobytes()).hexdigest()
        assert digest[:16] == expected, i
    kwargs = dict(size=32, n_train=2, n_val=1, seed=5, progress=False)
    plain = make_synthetic(tmp_path / "plain", **kwargs)
    explicit = make_synthetic(tmp_path / "explicit", nyud_persons=None, **kwargs)
    many = make_synthetic(tmp_path / "many", nyud_persons=3, **kwargs)
    for name in ("NYUD_MT", "PASCAL_MT"):
        assert _tree_hashes(plain[name]) == _tree_hashes(explicit[name])
    assert _tree_hashes(many["PASCAL_MT"]) == _tree_hashes(plain["PASCAL_MT"])  # PASCAL is not affected
    assert _tree_hashes(many["NYUD_MT"]) != _tree_hashes(plain["NYUD_MT"])
    marker = json.loads((plain["NYUD_MT"] / synthetic.SYNTHETIC_MARKER).read_text())
    assert "nyud_persons" not in marker  # the default marker is the one of before
    assert json.loads((many["NYUD_MT"] / synthetic.SYNTHETIC_MARKER).read_text())["nyud_persons"] == 3.0
    assert "nyud_persons" not in json.loads((many["PASCAL_MT"] / synthetic.SYNTHETIC_MARKER).read_text())


def test_more_nyud_persons_give_more_person_pixels():
    person = NYUD_CLASSES.index("person") + 1
    fraction = {p: np.mean([(_nyud_sample(i, p, (32, 48))["segmentation"] == person).mean() for i in range(16)])
                for p in (0, None, 2.5)}
    assert fraction[0] == 0.0  # no persons at all
    assert fraction[2.5] > 2 * fraction[None] > 0


@pytest.mark.parametrize("value", [-0.5, 7, float("nan")])
def test_nyud_persons_out_of_range_is_one_clear_line(tmp_path, value):
    from ufl.cli import main

    with pytest.raises(UflError, match="nyud-persons"):
        make_synthetic(tmp_path / "api", size=32, n_train=1, n_val=1, progress=False, nyud_persons=value)
    result = CliRunner().invoke(main, ["make-synthetic", "--out", str(tmp_path / "cli"), "--size", "32",
                                       "--nyud-persons", str(value)])
    assert result.exit_code == 2  # a usage error, as every range-checked option (FiniteFloat)
    last = result.output.strip().splitlines()[-1]
    assert "--nyud-persons" in last and ("0<=x<=6" in last or "not a finite number" in last), result.output
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()  # nothing written


# -- the loaders read what the generator writes -------------------------------------------------------
def test_loaders_read_every_task_of_the_generated_data(synthetic_root):
    from torch.utils.data import DataLoader

    from ufl.datasets import build_transforms, dataset_root, get_dataset

    for name, tasks in (("nyud", ["semseg", "depth", "normals", "edges"]),
                        ("pascal", ["semseg", "human_parts", "saliency", "normals", "edges"])):
        root = dataset_root(name, synthetic_root)
        for split in ("train", "val"):
            ds = get_dataset(name, root, split, tasks)
            ds.transform = build_transforms(ds, train=split == "train", size=(64, 96))
            batch = next(iter(DataLoader(ds, batch_size=len(ds))))
            assert batch["image"].shape == (len(ds), 3, 64, 96)
            for task in tasks:
                target = batch[task]
                assert target.shape[-2:] == (64, 96), (name, task)
            assert (batch["semseg"] != 255).any()
        if name == "pascal":
            parts = get_dataset(name, root, "train", ["human_parts"])
            labels = torch.cat([parts[i]["human_parts"].flatten() for i in range(len(parts))])
            assert set(labels.unique().tolist()) - {0, 255} <= set(range(1, 7)) and (labels > 0).any()
