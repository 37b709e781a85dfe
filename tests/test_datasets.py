"""Dataset loaders on tiny hand-written files in the official formats, with hand-computed targets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from ufl.datasets import (DATASETS, NYUD, FolderDataset, MetadataCatalog, PASCALContext, build_transforms,
                          dataset_root, get_dataset)
from ufl.datasets.catalog import PASCAL_NORMALS_VALID_CLASSES
from ufl.datasets.pascal import labelmap_boundaries, labelmap_edges
from ufl.errors import DataError, SpecError, UflError
from ufl.taskspec import TaskSpec, get_spec

H, W = 12, 16


def raises_data_error(fn, *needles):
    """Call ``fn``; it must raise one DataError line containing every needle (e.g. the file path)."""
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert str(needle) in message, f"{needle!r} not in {message!r}"
    return message


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# -- NYUD --------------------------------------------------------------------------------------
@pytest.fixture
def nyud(tmp_path, write, rng):
    root = tmp_path / "NYUD_MT"
    splits = {"train": ["0001", "0002"], "val": ["0003"]}
    data = {}
    for split, ids in splits.items():
        write.text(root / "gt_sets" / f"{split}.txt", ids)
        for k, image_id in enumerate(ids):
            rgb = np.empty((H, W, 3), np.uint8)
            rgb[:] = (40 * k + 20, 100, 200)
            raw = np.tile(np.array([0, 1, 2, 40], np.uint8), (H, W // 4))
            depth = rng.uniform(0.5, 10.0, (H, W)).astype(np.float32)
            depth[0] = 0.0
            normals = rng.normal(size=(H, W, 3))
            normals = (normals / np.linalg.norm(normals, axis=-1, keepdims=True)).astype(np.float32)
            normals[1] = 0.0
            edge = (rng.random((H, W)) > 0.7).astype(np.float32)
            write.image(root / "images" / f"{image_id}.jpg", rgb, quality=100)
            write.png(root / "segmentation" / f"{image_id}.png", raw)
            write.npy(root / "depth" / f"{image_id}.npy", depth)
            write.npy(root / "normals" / f"{image_id}.npy", normals)
            write.npy(root / "edge" / f"{image_id}.npy", edge)
            data[image_id] = SimpleNamespace(rgb=rgb, raw=raw, depth=depth, normals=normals, edge=edge)
    return SimpleNamespace(root=root, splits=splits, data=data)


def test_nyud_sample_contract(nyud):
    ds = NYUD(nyud.root, "train")
    assert ds.tasks == ["semseg", "depth", "normals", "edges"]
    assert ds.ids == ["0001", "0002"] and len(ds) == 2
    assert ds.modalities == {"semseg": "label", "depth": "depth", "normals": "normals", "edges": "binary"}
    assert set(ds.specs) == set(ds.tasks) and ds.specs["semseg"].out_channels("nyud") == 40
    s = ds[1]
    assert s["id"] == "0002"
    assert s["image"].shape == (3, H, W) and s["image"].dtype == torch.float32
    assert s["semseg"].shape == (H, W) and s["semseg"].dtype == torch.int64
    assert s["depth"].shape == (1, H, W) and s["depth"].dtype == torch.float32
    assert s["normals"].shape == (3, H, W) and s["edges"].shape == (1, H, W)
    assert s["meta"]["orig_size"].tolist() == [H, W] and s["meta"]["orig_size"].dtype == torch.int64
    # uniform colour (60, 100, 200) survives a quality-100 JPEG within 2 levels, scaled to [0, 1]
    expected = torch.tensor([60, 100, 200], dtype=torch.float32).view(3, 1, 1) / 255
    assert (s["image"] - expected).abs().max() <= 2 / 255


def test_the_image_is_every_byte_over_255_in_float32(nyud, monkeypatch):
    """(H, W, 3) uint8 -> contiguous (3, H, W) float32 ``x / 255``, exactly, for all 256 values."""
    pixels = np.arange(H * W * 3, dtype=np.int64).reshape(H, W, 3) % 256
    monkeypatch.setattr("ufl.datasets.base.read_image", lambda path: pixels.astype(np.uint8))
    image = NYUD(nyud.root, "train", tasks=["semseg"])[0]["image"]
    expected = torch.from_numpy(pixels).permute(2, 0, 1).to(torch.float32) / 255.0
    assert image.is_contiguous() and image.dtype == torch.float32 and torch.equal(image, expected)


def test_nyud_semseg_unlabeled_is_ignored_and_classes_shift_down(nyud):
    s = NYUD(nyud.root, "val", tasks=["semseg"])[0]
    # stored 0, 1, 2, 40 -> 255 (ignore), 0, 1, 39
    assert s["semseg"][0, :4].tolist() == [255, 0, 1, 39]
    assert set(s["semseg"].unique().tolist()) == {0, 1, 39, 255}
    assert set(s) == {"image", "id", "semseg", "meta"}


def test_nyud_depth_normals_edges_values(nyud):
    s = NYUD(nyud.root, "train", tasks=["depth", "normals", "edges"])[0]
    d = nyud.data["0001"]
    assert torch.equal(s["depth"][0], torch.from_numpy(d.depth))
    assert (s["depth"][0, 0] == 0).all()  # missing depth stays 0 (invalid)
    assert torch.allclose(s["normals"], torch.from_numpy(d.normals).permute(2, 0, 1), atol=1e-6)
    assert (s["normals"][:, 1] == 0).all()  # invalid normals stay zero vectors
    assert torch.equal(s["edges"][0], torch.from_numpy(d.edge))


def test_nyud_accepts_taskspec_objects_and_rejects_a_wrong_kind(nyud):
    spec = get_spec("depth")
    ds = NYUD(nyud.root, "train", tasks=[spec, "semseg"])
    assert ds.tasks == ["depth", "semseg"] and ds.specs["depth"] is spec
    wrong = TaskSpec.from_dict({"name": "depth", "kind": "segmentation", "channels": 5})
    raises_data_error(lambda: NYUD(nyud.root, "train", tasks=[wrong]), "depth", "segmentation")


def test_unsupported_task_lists_the_supported_ones(nyud):
    message = raises_data_error(lambda: NYUD(nyud.root, "train", tasks=["saliency"]), "saliency")
    for task in ("semseg", "depth", "normals", "edges"):
        assert task in message


def test_nyud_collates_through_a_dataloader_with_reference_transforms(nyud, torch_seed):
    ds = NYUD(nyud.root, "train")
    ds.transform = build_transforms(ds, train=True, size=(8, 10))
    batch = next(iter(DataLoader(ds, batch_size=2, shuffle=False)))
    assert batch["image"].shape == (2, 3, 8, 10)
    assert batch["semseg"].shape == (2, 8, 10) and batch["depth"].shape == (2, 1, 8, 10)
    assert batch["normals"].shape == (2, 3, 8, 10) and batch["edges"].shape == (2, 1, 8, 10)
    assert batch["id"] == ["0001", "0002"]
    assert batch["meta"]["orig_size"].tolist() == [[H, W], [H, W]]
    assert set(batch["meta"]) == {"orig_size", "flip", "scale", "angle"}
    assert set(batch["meta"]["scale"].tolist()) <= {1.0, 1.2, 1.5}


# -- NYUD: bad input -----------------------------------------------------------------------------
def test_missing_root_folder(tmp_path):
    raises_data_error(lambda: NYUD(tmp_path / "nowhere", "train"), tmp_path / "nowhere", "NYUD_MT")


def test_missing_split_file_names_it_and_the_splits_found(nyud):
    message = raises_data_error(lambda: NYUD(nyud.root, "test"), nyud.root / "gt_sets" / "test.txt")
    assert "train" in message and "val" in message


def test_missing_image_file_is_named_at_construction(nyud):
    (nyud.root / "images" / "0002.jpg").unlink()
    raises_data_error(lambda: NYUD(nyud.root, "train"), nyud.root / "images" / "0002.jpg")


def test_missing_label_file_and_missing_label_folder(nyud):
    (nyud.root / "depth" / "0001.npy").unlink()
    raises_data_error(lambda: NYUD(nyud.root, "train", tasks=["depth"]), nyud.root / "depth" / "0001.npy")
    NYUD(nyud.root, "train", tasks=["semseg"])  # other tasks do not need the depth files
    for f in (nyud.root / "edge").iterdir():
        f.unlink()
    (nyud.root / "edge").rmdir()
    raises_data_error(lambda: NYUD(nyud.root, "train", tasks=["edges"]), "folder not found", nyud.root / "edge")


def test_truncated_jpeg_is_named_when_read(nyud):
    path = nyud.root / "images" / "0001.jpg"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    ds = NYUD(nyud.root, "train", tasks=["depth"])
    raises_data_error(lambda: ds[0], path, "truncated")
    assert ds[1]["id"] == "0002"  # the other images still load


def test_label_of_the_wrong_shape(nyud, write):
    path = write.npy(nyud.root / "depth" / "0002.npy", np.ones((H, W - 1), np.float32))
    ds = NYUD(nyud.root, "train", tasks=["depth"])
    raises_data_error(lambda: ds[1], path, f"{H}x{W - 1}", f"{H}x{W}")


@pytest.mark.parametrize("task, folder, bad, needle", [
    ("semseg", "segmentation", np.full((H, W), 41, np.uint8), "41"),
    ("depth", "depth", np.full((H, W), -1.0, np.float32), "negative"),
    ("normals", "normals", np.ones((H, W), np.float32), "HxWx3"),
    ("normals", "normals", np.full((H, W, 3), 128.0, np.float32), "unit vectors"),
    ("edges", "edge", np.full((H, W), 2.0, np.float32), "0, 1 or 255"),
])
def test_out_of_range_values_are_named(nyud, write, task, folder, bad, needle):
    ext = ".png" if task == "semseg" else ".npy"
    path = nyud.root / folder / f"0001{ext}"
    (write.png if ext == ".png" else write.npy)(path, bad)
    ds = NYUD(nyud.root, "train", tasks=[task])
    raises_data_error(lambda: ds[0], path, needle)


def test_corrupt_npy_is_named(nyud):
    path = nyud.root / "normals" / "0001.npy"
    path.write_bytes(b"not an npy file")
    ds = NYUD(nyud.root, "train", tasks=["normals"])
    raises_data_error(lambda: ds[0], path)


# -- PASCAL ------------------------------------------------------------------------------------
def _box(r0, r1, c0, c1):
    m = np.zeros((H, W), np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


@pytest.fixture
def pascal(tmp_path, write):
    root = tmp_path / "PASCAL_MT"
    splits = {"train": ["2008_000001", "2008_000002"], "val": ["2008_000003"]}
    write.text(root / "ImageSets" / "Context" / "train.txt", splits["train"])
    write.text(root / "ImageSets" / "Context" / "val.txt", splits["val"])
    write.json(root / "ImageSets" / "Parts" / "train.txt", {"2008_000001": [15, 12], "2008_000002": [7]})
    write.json(root / "ImageSets" / "Parts" / "val.txt", {"2008_000003": [15]})
    label_map = np.empty((H, W), np.uint16)
    label_map[:, :7], label_map[:, 7], label_map[:, 8:] = 10, 20, 30
    voc = np.tile(np.array([0, 15, 255, 20], np.uint8), (H, W // 4))
    normals_rgb = np.empty((H, W, 3), np.uint8)
    normals_rgb[:, :8], normals_rgb[:, 8:] = (255, 128, 0), (128, 0, 255)
    for image_id in splits["train"] + splits["val"]:
        write.image(root / "JPEGImages" / f"{image_id}.jpg", np.full((H, W, 3), 90, np.uint8))
        write.labelmap_mat(root / "pascal-context" / "trainval" / f"{image_id}.mat", label_map)
        write.png(root / "sal_distill" / f"{image_id}.png", np.tile(np.array([0, 127, 128, 255], np.uint8), (H, W // 4)))
        write.png(root / "normals_distill" / f"{image_id}.png", normals_rgb)
    # semseg: VOC12 preferred where present, pascal-context otherwise
    write.png(root / "semseg" / "VOC12" / "2008_000001.png", voc, palette=True)
    write.png(root / "semseg" / "pascal-context" / "2008_000001.png", np.full((H, W), 3, np.uint8))
    write.png(root / "semseg" / "pascal-context" / "2008_000002.png", np.tile(np.array([0, 7], np.uint8), (H, W // 2)))
    write.png(root / "semseg" / "pascal-context" / "2008_000003.png", np.zeros((H, W), np.uint8))
    # human parts: person A, a dog with a "head", a person without parts, person B (painted last)
    person_a = [("head", _box(0, 4, 0, 4)), ("hair", _box(0, 1, 4, 6)), ("luarm", _box(4, 8, 0, 4)),
                ("lfoot", _box(8, 12, 0, 2))]
    person_b = [("torso", _box(2, 6, 2, 6)), ("rhand", _box(0, 2, 10, 12)), ("ruleg", _box(10, 12, 14, 16)),
                ("neck", _box(6, 7, 2, 6))]
    write.parts_mat(root / "human_parts" / "2008_000001.mat", [
        (15, _box(0, 12, 0, 6), person_a),
        (12, _box(6, 8, 8, 10), [("head", _box(6, 8, 8, 10))]),
        (15, _box(0, 12, 12, 16), []),
        (15, _box(0, 12, 2, 16), person_b),
    ])
    write.parts_mat(root / "human_parts" / "2008_000003.mat", [(15, _box(0, 12, 0, 16), [])])
    # 2008_000002 has no person: no parts file is needed (as MTI-Net, it is never read)
    return SimpleNamespace(root=root, splits=splits, voc=voc)


def test_pascal_semseg_prefers_voc12_over_pascal_context(pascal):
    ds = PASCALContext(pascal.root, "train", tasks=["semseg"])
    assert ds.target_path("semseg", "2008_000001").parent.name == "VOC12"
    first, second = ds[0], ds[1]
    assert torch.equal(first["semseg"], torch.from_numpy(pascal.voc.astype(np.int64)))
    assert first["semseg"][0, :4].tolist() == [0, 15, 255, 20]
    assert second["semseg"][0, :4].tolist() == [0, 7, 0, 7]  # the pascal-context fallback


def test_pascal_human_parts_painted_in_order_with_the_six_part_table(pascal):
    s = PASCALContext(pascal.root, "train", tasks=["human_parts"])[0]
    expected = np.zeros((H, W), np.int64)
    expected[0:4, 0:4] = 1     # A head
    expected[0:1, 4:6] = 1     # A hair -> head
    expected[4:8, 0:4] = 3     # A left upper arm
    expected[8:12, 0:2] = 6    # A left foot -> lower legs and feet
    expected[2:6, 2:6] = 2     # B torso, painted over A
    expected[0:2, 10:12] = 4   # B right hand -> lower arms and hands
    expected[10:12, 14:16] = 5  # B right upper leg
    expected[6:7, 2:6] = 2     # B neck -> torso
    assert torch.equal(s["human_parts"], torch.from_numpy(expected))
    assert s["human_parts"][3, 3] == 2 and s["human_parts"][1, 1] == 1 and s["human_parts"][6, 8] == 0  # no dog


def test_pascal_parts_without_persons_background_or_ignore(pascal):
    only = PASCALContext(pascal.root, "train", tasks=["human_parts"])
    several = PASCALContext(pascal.root, "train", tasks=["human_parts", "semseg"])
    assert only.empty_parts_value == 0 and several.empty_parts_value == 255
    assert (only[1]["human_parts"] == 0).all()       # 2008_000002: no person
    assert (several[1]["human_parts"] == 255).all()
    assert (several[0]["human_parts"] != 255).all()  # an image with persons is never ignored
    # a person without annotated parts counts as "no person part"
    assert (PASCALContext(pascal.root, "val", tasks=["human_parts"])[0]["human_parts"] == 0).all()
    assert (PASCALContext(pascal.root, "val", tasks=["human_parts", "edges"])[0]["human_parts"] == 255).all()
    # the explicit flag overrides the rule
    forced = PASCALContext(pascal.root, "train", tasks=["human_parts", "semseg"], parts_without_persons="background")
    assert (forced[1]["human_parts"] == 0).all()
    forced = PASCALContext(pascal.root, "train", tasks=["human_parts"], parts_without_persons="ignore")
    assert (forced[1]["human_parts"] == 255).all()
    raises_data_error(lambda: PASCALContext(pascal.root, "train", parts_without_persons="sometimes"), "sometimes")


def test_pascal_person_ids_and_persons_only(pascal):
    ds = PASCALContext(pascal.root, "train", tasks=["semseg"])
    assert ds.person_ids == ["2008_000001"]
    assert ds.has_persons("2008_000001") and not ds.has_persons("2008_000002")
    only = PASCALContext(pascal.root, "train", tasks=["human_parts"], persons_only=True)
    assert only.ids == ["2008_000001"] and len(only) == 1


def test_pascal_edges_are_the_thinned_laplacian_boundaries_of_the_labelmap(pascal):
    s = PASCALContext(pascal.root, "train", tasks=["edges"])[0]
    # LabelMap columns: 10 x7, 20, 30 x8. The 5-point Laplacian is non-zero on column 6
    # (10+20+10+10-40 = 10) and column 8 (20+30+30+30-120 = -10) and cancels on the middle
    # column 7 (10+30+20+20-80 = 0); both lines are one pixel wide, so thinning keeps them.
    expected = torch.zeros(1, H, W)
    expected[0, :, 6] = 1
    expected[0, :, 8] = 1
    assert torch.equal(s["edges"], expected)


def test_labelmap_boundaries_mirror_borders_and_thinning():
    # rows [0, 1, 2]; mirrored borders (OpenCV's BORDER_REFLECT_101): column 0 sees 1 on both
    # sides (1+1-0-0 = 2), column 2 sees 1 on both sides (1+1-2-2 = -2), column 1 cancels.
    m = np.tile([0, 1, 2], (3, 1))
    assert labelmap_boundaries(m).tolist() == [[True, False, True]] * 3
    # a straight step gives a two-pixel band; thinning leaves a one-pixel line inside it
    step = np.ones((6, 8), int)
    step[:, 4:] = 2
    band = labelmap_boundaries(step)
    assert band[:, 3].all() and band[:, 4].all() and band.sum() == 12
    thin = labelmap_edges(step).astype(bool)
    assert not (thin & ~band).any()
    assert (thin.sum(axis=1) <= 1).all() and thin.sum() >= 4


def test_thin_points_is_skimages_thin_bit_for_bit():
    """The edge targets' thinning visits only the set pixels; it is skimage's ``thin`` exactly."""
    from skimage.morphology import thin

    from ufl.datasets.pascal import thin_points

    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = rng.integers(1, 40, 2)
        masks = [rng.random((h, w)) < rng.random(),  # any density, the borders included
                 labelmap_boundaries(rng.integers(0, rng.integers(1, 6), (h, w)))]
        for mask in masks:
            got = thin_points(mask)
            assert got.dtype == bool and np.array_equal(got, thin(mask))
    assert thin_points(np.ones((3, 3), bool)).tolist() == [[False] * 3, [False, True, False], [False] * 3]
    with pytest.raises(ValueError, match="2-D"):
        thin_points(np.zeros((2, 2, 2), bool))


def test_pascal_reads_each_label_map_once_per_sample(pascal, monkeypatch):
    """Normals (valid-class mask) and edges both use the Context label map: one read per sample."""
    reads = []
    real = PASCALContext._read_labelmap
    monkeypatch.setattr(PASCALContext, "_read_labelmap", lambda self, i: reads.append(i) or real(self, i))
    ds = PASCALContext(pascal.root, "train", tasks=["normals", "edges"])
    first, again = ds[0], ds[0]
    assert reads == [ds.ids[0], ds.ids[0]]  # once per sample, not kept between samples
    assert torch.equal(first["edges"], again["edges"]) and torch.equal(first["normals"], again["normals"])


def test_pascal_saliency_threshold_and_normals_decoding(pascal):
    s = PASCALContext(pascal.root, "train", tasks=["saliency", "normals"], normals_valid_classes=None)[0]
    # grey 0, 127, 128, 255 -> /255 > 0.5 -> 0, 0, 1, 1
    assert s["saliency"][0, 0, :4].tolist() == [0.0, 0.0, 1.0, 1.0]
    # RGB v -> 2v/255 - 1, re-normalised: (255, 128, 0) -> (1, 1/255, -1)/|.|, (128, 0, 255) -> (1/255, -1, 1)/|.|
    left = unit([1.0, 1 / 255, -1.0])
    right = unit([1 / 255, -1.0, 1.0])
    assert np.allclose(s["normals"][:, 5, 3].numpy(), left, atol=1e-6)
    assert np.allclose(s["normals"][:, 5, 12].numpy(), right, atol=1e-6)
    assert torch.allclose(s["normals"].norm(dim=0), torch.ones(H, W), atol=1e-6)


def test_pascal_normals_default_to_the_context_classes_shared_with_nyud(pascal):
    # MTI-Net's list: 170 Context classes; the fixture's LabelMap columns are 10 (ball) x7, 20 (beer), 30 (board) x8
    assert len(PASCAL_NORMALS_VALID_CLASSES) == 170
    assert PASCAL_NORMALS_VALID_CLASSES[427] == "tvmonitor" and PASCAL_NORMALS_VALID_CLASSES[284] == "person"
    assert {10, 30} <= set(PASCAL_NORMALS_VALID_CLASSES) and 20 not in PASCAL_NORMALS_VALID_CLASSES
    assert not {360, 187, 420, 431} & set(PASCAL_NORMALS_VALID_CLASSES)  # sky, grass, tree, unknown
    ds = PASCALContext(pascal.root, "train", tasks=["normals"])
    assert ds.required_files("normals", ds.ids[0])[-1] == ds.labelmap_path(ds.ids[0])
    s = ds[0]
    norm = s["normals"].norm(dim=0)
    assert (norm[:, 7] == 0).all()  # beer: not an NYUD class -> invalid
    assert (norm[:, :7] > 0.99).all() and (norm[:, 8:] > 0.99).all()


def test_pascal_normals_valid_classes_from_a_file(pascal, write):
    classes = write.json(pascal.root.parent / "valid.json", [10, 30])
    s = PASCALContext(pascal.root, "train", tasks=["normals"], normals_valid_classes=classes)[0]
    assert (s["normals"][:, :, 7] == 0).all()  # LabelMap 20: not a valid class -> invalid
    assert (s["normals"][:, :, :7].norm(dim=0) > 0.99).all() and (s["normals"][:, :, 8:].norm(dim=0) > 0.99).all()
    raises_data_error(lambda: PASCALContext(pascal.root, "train", tasks=["normals"],
                                            normals_valid_classes=pascal.root / "nope.json"), "nope.json")


def test_pascal_all_tasks_collate(pascal):
    ds = PASCALContext(pascal.root, "train")
    assert ds.tasks == ["semseg", "human_parts", "saliency", "normals", "edges"]
    batch = default_collate([ds[0], ds[1]])
    assert batch["human_parts"].shape == (2, H, W) and batch["saliency"].shape == (2, 1, H, W)


def test_pascal_bad_input(pascal, write):
    root = pascal.root
    # semseg class 21 of 21 classes is out of range
    path = write.png(root / "semseg" / "pascal-context" / "2008_000002.png", np.full((H, W), 21, np.uint8))
    raises_data_error(lambda: PASCALContext(root, "train", tasks=["semseg"])[1], path, "21")
    # an RGB label PNG is refused
    path = write.png(root / "semseg" / "pascal-context" / "2008_000002.png", np.zeros((H, W, 3), np.uint8))
    raises_data_error(lambda: PASCALContext(root, "train", tasks=["semseg"])[1], path, "RGB")
    # a parts file not in the PASCAL-Part layout
    path = root / "human_parts" / "2008_000001.mat"
    from scipy.io import savemat
    savemat(path, {"anno": np.zeros((2, 2))})
    raises_data_error(lambda: PASCALContext(root, "train", tasks=["human_parts"])[0], path, "PASCAL-Part")
    # the parts index is needed for human parts
    (root / "ImageSets" / "Parts" / "train.txt").unlink()
    raises_data_error(lambda: PASCALContext(root, "train", tasks=["human_parts"]),
                      root / "ImageSets" / "Parts" / "train.txt")
    PASCALContext(root, "train", tasks=["saliency"])  # ... and only for human parts
    raises_data_error(lambda: PASCALContext(root, "train", tasks=["depth"]), "depth", "human_parts")


def test_pascal_missing_semseg_names_both_places(pascal):
    (pascal.root / "semseg" / "pascal-context" / "2008_000002.png").unlink()
    raises_data_error(lambda: PASCALContext(pascal.root, "train", tasks=["semseg"]),
                      pascal.root / "semseg" / "pascal-context" / "2008_000002.png", "VOC12")


# -- folder dataset ----------------------------------------------------------------------------
def _spec(name, kind, fmt, channels=1, folder=None):
    data = {"name": name, "kind": kind, "channels": channels, "target": {"format": fmt}}
    if folder:
        data["target"]["folder"] = folder
    return TaskSpec.from_dict(data)


@pytest.fixture
def folder(tmp_path, write, rng):
    root = tmp_path / "mydata"
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    write.image(root / "images" / "a.png", rgb)  # PNG: lossless, exact values
    write.image(root / "images" / "b.jpg", rgb)
    write.text(root / "splits" / "train.txt", ["a", "b"])
    return SimpleNamespace(root=root, rgb=rgb, ids=["a", "b"])


def _write_both(write, root, folder_name, ext, array, **kw):
    for image_id in ("a", "b"):
        (write.png if ext == "png" else write.npy)(root / folder_name / f"{image_id}.{ext}", array, **kw)


def test_folder_images_and_segmentation_png_and_npy(folder, write):
    labels = np.tile(np.array([0, 1, 2, 255], np.uint8), (H, W // 4))
    _write_both(write, folder.root, "road", "png", labels, palette=True)
    _write_both(write, folder.root, "lanes_npy", "npy", labels.astype(np.int32))
    specs = [_spec("road", "segmentation", "png", 3), _spec("lanes", "segmentation", "npy", 3, folder="lanes_npy")]
    ds = FolderDataset(folder.root, "train", tasks=specs)
    s = ds[0]
    assert torch.equal(s["image"], torch.from_numpy(folder.rgb).permute(2, 0, 1).float() / 255)
    assert s["road"][0, :4].tolist() == [0, 1, 2, 255] and s["road"].dtype == torch.int64
    assert torch.equal(s["lanes"], s["road"])
    assert ds[1]["id"] == "b" and ds.modalities == {"road": "label", "lanes": "label"}
    # class 3 of a 3-class task is out of range
    path = write.png(folder.root / "road" / "a.png", np.full((H, W), 3, np.uint8))
    raises_data_error(lambda: ds[0], path, "class 3", "0..2")


def test_folder_depth_png_millimetres_and_npy_metres(folder, write):
    mm = np.tile(np.array([0, 1500, 65535, 1], np.uint16), (H, W // 4))
    _write_both(write, folder.root, "depth", "png", mm)
    _write_both(write, folder.root, "dnpy", "npy", mm.astype(np.float32) / 1000)
    ds = FolderDataset(folder.root, "train", tasks=[_spec("depth", "depth", "png"), _spec("dnpy", "depth", "npy")])
    s = ds[0]
    assert s["depth"].shape == (1, H, W)
    assert np.allclose(s["depth"][0, 0, :4].numpy(), [0.0, 1.5, 65.535, 0.001])
    assert torch.equal(s["depth"], s["dnpy"])
    path = write.png(folder.root / "depth" / "a.png", np.full((H, W), 7, np.uint8))
    raises_data_error(lambda: ds[0], path, "8-bit", "millimetres")


def test_folder_normals_png_and_npy(folder, write):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, :8] = (255, 128, 0)  # (1, 1/255, -1) before normalisation; the right half black = invalid
    _write_both(write, folder.root, "normals", "png", rgb)
    vectors = np.zeros((H, W, 3), np.float32)
    vectors[:, :8] = (0.0, 0.0, 2.0 ** -0.5 * 2 ** 0.5)  # (0, 0, 1)
    _write_both(write, folder.root, "nn", "npy", vectors)
    ds = FolderDataset(folder.root, "train", tasks=[_spec("normals", "normals", "png", 3), _spec("nn", "normals", "npy", 3)])
    s = ds[0]
    assert np.allclose(s["normals"][:, 0, 0].numpy(), unit([1.0, 1 / 255, -1.0]), atol=1e-6)
    assert (s["normals"][:, :, 8:] == 0).all()
    assert torch.allclose(s["nn"][:, 0, 0], torch.tensor([0.0, 0.0, 1.0])) and (s["nn"][:, :, 8:] == 0).all()
    write.npy(folder.root / "nn" / "a.npy", np.zeros((H, W, 2), np.float32))
    raises_data_error(lambda: ds[0], folder.root / "nn" / "a.npy", "HxWx3")


def test_folder_edges_and_saliency_png_and_npy(folder, write):
    grey = np.tile(np.array([0, 127, 128, 255], np.uint8), (H, W // 4))
    _write_both(write, folder.root, "edges", "png", grey)
    _write_both(write, folder.root, "saliency", "npy", np.tile(np.array([0, 1, 255, 1], np.uint8), (H, W // 4)))
    ds = FolderDataset(folder.root, "train", tasks=["edges", _spec("saliency", "saliency", "npy")])
    s = ds[0]
    assert s["edges"][0, 0, :4].tolist() == [0.0, 0.0, 1.0, 1.0]  # > 127 -> 1, no ignore in PNG
    assert s["saliency"][0, 0, :4].tolist() == [0.0, 1.0, 255.0, 1.0]  # 255 = ignore kept from npy
    assert ds.modalities == {"edges": "binary", "saliency": "binary"}


def test_folder_missing_split_says_how_to_create_it(folder):
    (folder.root / "splits" / "train.txt").unlink()
    raises_data_error(lambda: FolderDataset(folder.root, "train", tasks=["edges"]),
                      folder.root / "splits" / "train.txt", "one image id", "per line")


def test_folder_missing_target_and_image(folder, write):
    write.png(folder.root / "edges" / "a.png", np.zeros((H, W), np.uint8))
    raises_data_error(lambda: FolderDataset(folder.root, "train", tasks=["edges"]), folder.root / "edges" / "b.png")
    write.png(folder.root / "edges" / "b.png", np.zeros((H, W), np.uint8))
    write.text(folder.root / "splits" / "train.txt", ["a", "b", "c"])
    raises_data_error(lambda: FolderDataset(folder.root, "train", tasks=["edges"]), folder.root / "images" / "c.jpg")


def test_folder_spec_channels_per_dataset_name(folder, write):
    _write_both(write, folder.root, "road", "png", np.zeros((H, W), np.uint8))
    spec = TaskSpec.from_dict({"name": "road", "kind": "segmentation", "channels": {"roads": 4}})
    assert FolderDataset(folder.root, "train", tasks=[spec], dataset_name="roads").num_classes("road") == 4
    with pytest.raises(SpecError):
        FolderDataset(folder.root, "train", tasks=[spec])


# -- registry, roots, catalog ------------------------------------------------------------------
def test_registry_get_dataset_and_dataset_root(nyud, tmp_path, monkeypatch):
    assert DATASETS.names() == ["folder", "nyud", "pascal"]
    assert DATASETS.get("nyud") is NYUD and DATASETS.get("pascal") is PASCALContext
    ds = get_dataset("nyud", nyud.root, "val", ["depth"])
    assert isinstance(ds, NYUD) and ds.ids == ["0003"]
    assert dataset_root("nyud", nyud.root.parent) == nyud.root
    assert dataset_root("pascal", "/data") == Path("/data/PASCAL_MT")
    assert dataset_root("pascal", "/data", root="/elsewhere/P") == Path("/elsewhere/P")
    monkeypatch.setenv("UFL_DATA_ROOT", str(tmp_path))
    assert dataset_root("nyud") == tmp_path / "NYUD_MT"
    raises_data_error(lambda: dataset_root("folder", tmp_path), "--root")
    with pytest.raises(UflError, match="known: folder, nyud, pascal"):
        get_dataset("kitti", nyud.root, "train", None)


def test_metadata_catalog_names_palettes_and_colorize():
    nyud = MetadataCatalog.get("nyud", "semseg")
    assert nyud.num_classes == 40 and nyud.class_names[0] == "wall" and nyud.class_names[39] == "otherprop"
    voc = MetadataCatalog.get("pascal", "semseg")
    assert voc.num_classes == 21 and voc.class_names[15] == "person"
    assert voc.palette[:3] == ((0, 0, 0), (128, 0, 0), (0, 128, 0)) and voc.palette[15] == (192, 128, 128)
    parts = MetadataCatalog.get("pascal", "human_parts")
    assert parts.class_names == ("background", "head", "torso", "upper arms", "lower arms and hands",
                                 "upper legs", "lower legs and feet")
    rgb = parts.colorize(torch.tensor([[0, 1], [255, 6]]))
    assert rgb.dtype == np.uint8 and rgb[0, 1].tolist() == [128, 0, 0] and rgb[1, 0].tolist() == [255, 255, 255]
    generic = MetadataCatalog.get("roads", "road", num_classes=3)
    assert generic.class_names == ("class_0", "class_1", "class_2")
    with pytest.raises(UflError, match="roads"):
        MetadataCatalog.get("roads", "road")


# -- the decoding's fast paths are the generic ones (issue 14) -----------------------------------
def _same_mat_value(a, b) -> bool:
    """Deep equality of two ``scipy.io.loadmat`` values (struct arrays, object arrays, strings)."""
    if isinstance(a, np.ndarray) or isinstance(a, np.void):
        if type(a) is not type(b) or a.dtype != b.dtype or np.shape(a) != np.shape(b):
            return False
        if a.dtype.names:
            return all(_same_mat_value(x[name], y[name]) for name in a.dtype.names
                       for x, y in zip(np.ravel(a), np.ravel(b)))
        if a.dtype == object:
            return all(_same_mat_value(x, y) for x, y in zip(a.ravel(), b.ravel()))
        return a.tobytes() == b.tobytes()
    return type(a) is type(b) and a == b


def _mat_variables():
    """Variables of every kind the PASCAL files hold (a struct of struct arrays with masks, strings,
    uint8/uint16 arrays), plus a cell and a double."""
    person = [("head", _box(0, 4, 0, 4)), ("torso", _box(4, 8, 0, 4))]
    obj_dtype = [("class", object), ("class_ind", object), ("mask", object), ("parts", object)]
    objs = np.zeros((1, 2), dtype=obj_dtype)
    parts = np.zeros((1, 2), dtype=[("part_name", object), ("mask", object)])
    for i, (name, mask) in enumerate(person):
        parts[0, i] = (name, mask)
    objs[0, 0] = ("person", np.array([[15]], np.uint8), _box(0, 8, 0, 4), parts)
    objs[0, 1] = ("dog", np.array([[12]], np.uint8), _box(6, 8, 8, 10), np.zeros((0, 0)))
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = "text", np.arange(6.0).reshape(2, 3)
    return {"anno": {"imname": "2008_000001", "objects": objs},
            "LabelMap": (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 7) % 460,
            "cell": cell, "scalar": 3.25}


@pytest.mark.parametrize("compressed", [True, False])
def test_read_mat_gives_loadmats_values_compressed_or_not(tmp_path, compressed):
    from scipy.io import loadmat, savemat

    from ufl.images import inflate_mat5, read_mat

    path = tmp_path / "v.mat"
    savemat(path, _mat_variables(), do_compression=compressed)
    raw = path.read_bytes()
    assert (inflate_mat5(raw) is not None) == compressed  # only compressed files are rewritten
    reference = loadmat(path)
    for key in ("anno", "LabelMap", "cell", "scalar"):
        assert _same_mat_value(read_mat(path, "test file", key), reference[key]), key
    if compressed:  # the rewritten file is loadmat's input: header and every variable, as stored uncompressed
        uncompressed = tmp_path / "u.mat"
        savemat(uncompressed, _mat_variables(), do_compression=False)
        assert inflate_mat5(raw)[128:] == uncompressed.read_bytes()[128:]


def test_read_mat_gives_loadmats_values_on_generated_pascal_files(synthetic_root):
    from scipy.io import loadmat

    from ufl.images import inflate_mat5, read_mat

    files = sorted((synthetic_root / "PASCAL_MT").glob("*/*.mat")) + sorted((synthetic_root / "PASCAL_MT").glob("*/*/*.mat"))
    assert len(files) == 24  # 12 images: human parts and Context label maps
    for path in files:
        key = "anno" if path.parent.name == "human_parts" else "LabelMap"
        assert inflate_mat5(path.read_bytes()) is not None  # make-synthetic compresses, as the real files are
        assert _same_mat_value(read_mat(path, "test file", key), loadmat(path)[key]), path


def test_read_mat_leaves_other_and_damaged_files_to_loadmat(tmp_path):
    import struct

    from scipy.io import savemat

    from ufl.images import inflate_mat5, read_mat

    v4 = tmp_path / "v4.mat"
    savemat(v4, {"LabelMap": np.ones((3, 4))}, format="4")
    assert inflate_mat5(v4.read_bytes()) is None
    assert read_mat(v4, "context label map", "LabelMap").tolist() == [[1.0] * 4] * 3  # loadmat reads v4 files
    good = tmp_path / "good.mat"
    savemat(good, {"LabelMap": np.arange(12, dtype=np.uint16).reshape(3, 4)}, do_compression=True)
    raw = good.read_bytes()
    assert inflate_mat5(raw) is not None
    count = struct.unpack_from("<I", raw, 132)[0]
    damaged = {
        "cut": raw[:-5],                                          # truncated inside the compressed element
        "stream": raw[:140] + bytes(b ^ 0x5A for b in raw[140:]),  # a broken zlib stream
        "garbage": b"not a MAT-file at all, " * 8,
        "trailing": raw + b"\x00\x01",                            # bytes after the last element
        "size": raw[:132] + struct.pack("<I", count + 64) + raw[136:],  # an element longer than the file
    }
    for name, data in damaged.items():
        assert inflate_mat5(data) is None, name
        path = tmp_path / f"{name}.mat"
        path.write_bytes(data)
        try:
            from scipy.io import loadmat

            expected = loadmat(path)["LabelMap"]
        except Exception:  # loadmat refuses it: read_mat says so in one line, naming the file
            raises_data_error(lambda: read_mat(path, "context label map", "LabelMap"), path, "cannot read")
        else:  # loadmat reads it regardless (e.g. ignores trailing bytes): so does read_mat
            assert np.array_equal(read_mat(path, "context label map", "LabelMap"), expected), name
    # an inner element whose inflated length is not the one its tag announces
    import zlib

    element = bytearray(zlib.decompress(raw[136:136 + count]))
    element[4:8] = struct.pack("<I", len(element) - 8 + 8)
    recompressed = zlib.compress(bytes(element))
    assert inflate_mat5(raw[:128] + struct.pack("<II", 15, len(recompressed)) + recompressed) is None


def _normals_reference(rgb, valid=None):
    """The generic decoding: decode_normals_rgb, invalid pixels zeroed, to_normals_target's
    normalize_normals, channel-first."""
    from ufl.images import decode_normals_rgb
    from ufl.kinds.normals import normalize_normals

    normals = decode_normals_rgb(rgb)
    if valid is not None:
        normals[~valid] = 0.0
    return np.ascontiguousarray(normalize_normals(normals).transpose(2, 0, 1))


def test_decode_normals_rgb_is_2v_over_255_minus_1_in_any_layout(rng):
    """Every 8-bit value decodes to float32(2 v / 255 - 1), as MTI-Net's loader computes it, in the
    layout asked for (the channel-first view rgb_normals_target passes), into a new C-ordered array."""
    from ufl.images import decode_normals_rgb

    values = np.arange(256, dtype=np.uint8).reshape(1, 256, 1).repeat(3, axis=2)
    formula = (2.0 * values.astype(np.float32) / 255.0 - 1.0).astype(np.float32)
    assert decode_normals_rgb(values).tobytes() == formula.tobytes()
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    planes = decode_normals_rgb(rgb.transpose(2, 0, 1))
    assert planes.flags.c_contiguous and planes.shape == (3, 5, 7)
    assert planes.tobytes() == np.ascontiguousarray(decode_normals_rgb(rgb).transpose(2, 0, 1)).tobytes()
    assert rgb.dtype == np.uint8 and rgb.flags.writeable  # the input is not touched


def _rgb_triples(start: int, stop: int) -> np.ndarray:
    """RGB values ``start..stop-1`` (as 24-bit integers) as an ``(1, N, 3)`` uint8 image."""
    values = np.arange(start, stop, dtype=np.uint32)
    return np.stack([values >> 16, (values >> 8) & 255, values & 255], axis=-1).astype(np.uint8)[None]


def test_rgb_normals_target_is_the_generic_decoding_bit_for_bit(rng):
    from ufl.kinds.normals import rgb_normals_target

    rgb = np.concatenate([_rgb_triples(0, 1 << 16), _rgb_triples((1 << 24) - (1 << 16), 1 << 24),
                          rng.integers(0, 256, (1, 1 << 16, 3), dtype=np.uint8)], axis=1)
    for valid in (None, rng.random(rgb.shape[:2]) < 0.7):
        got = rgb_normals_target(rgb, "x", valid=valid)
        assert got.dtype == torch.float32 and got.shape == (3, *rgb.shape[:2]) and got.is_contiguous()
        assert got.numpy().tobytes() == _normals_reference(rgb, valid).tobytes()  # +0 and -0 told apart
    raises_data_error(lambda: rgb_normals_target(np.zeros((H, W), np.uint8), "p.png", "normals map"),
                      "p.png", "8-bit RGB")


@pytest.mark.slow
def test_rgb_normals_target_on_every_rgb_value():
    from ufl.kinds.normals import rgb_normals_target

    step = 1 << 20
    for start in range(0, 1 << 24, step):
        rgb = _rgb_triples(start, start + step)
        assert rgb_normals_target(rgb, "x").numpy().tobytes() == _normals_reference(rgb).tobytes(), start


def test_to_normals_target_is_normalize_normals_and_refuses_bad_values(rng):
    from ufl.kinds.normals import normalize_normals, to_normals_target

    for dtype in (np.float32, np.float64, np.float16):
        normals = rng.uniform(-1, 1, (H, W, 3)).astype(dtype)
        normals[0] = 0.0
        normals[1, :4] = 1e-7  # shorter than eps: invalid
        normals[2, :4] = -0.0
        before = normals.copy()
        got = to_normals_target(normals, "n.npy")
        expected = normalize_normals(normals.astype(np.float32)).transpose(2, 0, 1)
        assert got.is_contiguous() and got.numpy().tobytes() == np.ascontiguousarray(expected).tobytes()
        assert np.array_equal(normals, before)  # the caller's array is not written to
    bad = np.zeros((H, W, 3), np.float32)
    bad[3, 4, 1] = np.nan
    raises_data_error(lambda: to_normals_target(bad, "n.npy", "normals"), "n.npy", "NaN or infinite")
    bad[3, 4, 1] = -np.inf
    raises_data_error(lambda: to_normals_target(bad, "n.npy", "normals"), "n.npy", "NaN or infinite")
    bad[3, 4, 1] = 128.0
    raises_data_error(lambda: to_normals_target(bad, "n.npy", "normals"), "n.npy", "components up to 128")
    bad[3, 4, 1] = 1.0009  # within the tolerance
    assert to_normals_target(bad, "n.npy").shape == (3, H, W)


def test_valid_normals_table_is_isin_for_every_label_dtype(pascal, rng):
    ds = PASCALContext(pascal.root, "train", tasks=["normals"])
    ds.normals_valid_classes = np.array([-3, 0, 10, 255, 256, 459, 65535, 70000])
    for dtype in (np.uint8, np.uint16, np.int16, np.int32, np.float64):
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
        high = min(int(info.max), 70010) if info else 70010
        labels = rng.integers(-5 if info is None or info.min < 0 else 0, high + 1, (40, 50)).astype(dtype)
        labels.flat[:8] = np.array([0, 10, 255, 256, 459, 65535, 70000, 7]).astype(dtype)
        assert np.array_equal(ds.valid_normals(labels), np.isin(labels, ds.normals_valid_classes)), dtype


def test_pascal_targets_on_generated_files_equal_the_generic_decoding(synthetic_root):
    from scipy.ndimage import laplace

    from ufl.datasets.pascal import paint_human_parts, thin_points
    from ufl.images import read_mat, read_png

    ds = PASCALContext(synthetic_root / "PASCAL_MT", "train")
    for index, image_id in enumerate(ds.ids):
        sample = ds[index]
        labels = ds._read_labelmap(image_id)
        rgb = read_png(ds.target_path("normals", image_id), "normals map", channels=3)
        expected = _normals_reference(rgb, np.isin(labels, ds.normals_valid_classes))
        assert sample["normals"].numpy().tobytes() == expected.tobytes()
        edges = thin_points(laplace(labels.astype(np.float64), mode="mirror") != 0)
        assert torch.equal(sample["edges"], torch.from_numpy(edges.astype(np.float32))[None])
        if ds.has_persons(image_id):
            from scipy.io import loadmat

            path = ds.target_path("human_parts", image_id)
            assert _same_mat_value(read_mat(path, "f", "anno"), loadmat(path)["anno"])
            parts = paint_human_parts(loadmat(path)["anno"])
            if parts is not None and parts.any():
                assert torch.equal(sample["human_parts"], torch.from_numpy(parts))


def test_labelmap_boundaries_integer_path_is_scipys_laplace(rng):
    from scipy.ndimage import laplace

    for trial in range(300):
        h, w = (int(v) for v in rng.integers(1, 24, 2))
        dtype = (np.uint8, np.uint16, np.int8, np.int16, np.int32, np.uint32, np.int64, np.float64)[trial % 8]
        high = (3, 460, 2 ** 31 - 1)[trial % 3]
        if np.issubdtype(dtype, np.integer):
            high = min(high, int(np.iinfo(dtype).max))
            low = max(-high, int(np.iinfo(dtype).min))
        else:
            low = -high
        labels = rng.integers(low, high + 1, (h, w)).astype(dtype)
        expected = laplace(labels.astype(np.float64), mode="mirror") != 0
        assert np.array_equal(labelmap_boundaries(labels), expected), (h, w, dtype)
