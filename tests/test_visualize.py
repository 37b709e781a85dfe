"""Tests of ufl.viz: colours against hand-computed values, shapes, attention maps, PNG files."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt  # only to check that no pyplot figure is ever left open
import numpy as np
import pytest
import torch
from PIL import Image

from ufl.errors import UflError
from ufl.models.medusa import MedusaHead
from ufl.viz import (
    IGNORE_COLOUR, SCALE_COLOURS, as_rgb, attention_images, bar_chart, blend, colorize, depth_range, grouped_bars,
    prediction_grid, prediction_grids, save_png,
)
from ufl.viz import PanelRow, metric_unit, normals_key, prediction_figure, unit_chart, unit_figure
from ufl.viz.panels import MISSING_GT

H, W = 6, 9  # H != W so that a transposed output cannot pass

VIRIDIS_TOP = (253, 231, 36)  # matplotlib viridis(1.0): depth_range's near end in viridis_r
VIRIDIS_BOTTOM = (68, 1, 84)  # viridis(0.0): the far end


def _read_png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        img.verify()  # a truncated or corrupt PNG raises here
    with Image.open(path) as img:
        return img.size


# -- colorize ---------------------------------------------------------------------------------------
def test_segmentation_uses_the_catalog_palette_and_ignore_is_black():
    labels = np.array([[0, 1], [15, 255]])
    rgb = colorize("segmentation", labels, dataset="pascal", task="semseg")
    # VOC colour map (VOClabelcolormap.m): 0 black, 1 (128, 0, 0), 15 person (192, 128, 128); 255 -> black
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb.tolist() == [[[0, 0, 0], [128, 0, 0]], [[192, 128, 128], [0, 0, 0]]]
    # NYUD's 40 classes: label 39 = 0b100_111 -> R, G, B high bits, then B's next bit: (128, 128, 192)
    nyud = colorize("segmentation", torch.tensor([[[39, 2]]]), dataset="nyud", task="semseg")
    assert nyud.tolist() == [[[128, 128, 192], [0, 128, 0]]]
    # without a dataset: the VOC colour map as it is; an unknown (dataset, task) pair falls back to it
    assert colorize("segmentation", np.array([[2, 3]])).tolist() == [[[0, 128, 0], [128, 128, 0]]]
    assert colorize("segmentation", np.array([[3]]), dataset="kitti", task="road").tolist() == [[[128, 128, 0]]]


def test_segmentation_rejects_bad_labels():
    with pytest.raises(ValueError, match="label 21 is outside the 21 classes of pascal/semseg"):
        colorize("segmentation", np.array([[0, 21]]), dataset="pascal", task="semseg")
    with pytest.raises(ValueError, match="outside the 3 classes"):
        colorize("segmentation", np.array([[3]]), num_classes=3)
    with pytest.raises(ValueError, match="integer class labels"):
        colorize("segmentation", np.array([[0.2, 1.7]]))
    with pytest.raises(ValueError, match="both dataset and task"):
        colorize("segmentation", np.array([[0]]), dataset="pascal")
    # integral floats (e.g. labels stored as float) are fine
    assert colorize("segmentation", np.array([[1.0]])).tolist() == [[[128, 0, 0]]]


def test_normals_map_to_half_vector_plus_half_and_zero_is_black():
    normals = torch.zeros(3, 1, 5)
    normals[:, 0, 0] = torch.tensor([0.0, 0.0, 1.0])   # facing the camera
    normals[:, 0, 1] = torch.tensor([1.0, 0.0, 0.0])   # right
    normals[:, 0, 2] = torch.tensor([0.0, -1.0, 0.0])  # up (y points down the image)
    normals[:, 0, 3] = torch.tensor([0.0, 0.0, 2.0])   # not unit: normalised first
    rgb = colorize("normals", normals)                 # pixel 4 stays a zero vector
    # (n + 1) / 2 * 255: 0 -> 127.5 -> 128 (round half to even), 1 -> 255, -1 -> 0
    assert rgb.tolist() == [[[128, 128, 255], [255, 128, 128], [128, 0, 128], [128, 128, 255], [0, 0, 0]]]


def test_depth_near_is_bright_far_is_dark_invalid_is_black():
    depth = np.array([[1.0, 5.5, 10.0, 0.0, np.nan, 20.0]])
    rgb = colorize("depth", depth, depth_range=(1.0, 10.0))
    assert tuple(rgb[0, 0]) == VIRIDIS_TOP and tuple(rgb[0, 2]) == VIRIDIS_BOTTOM
    assert tuple(rgb[0, 5]) == VIRIDIS_BOTTOM              # beyond the range: clipped to the far colour
    assert rgb[0, 3].tolist() == [0, 0, 0] and rgb[0, 4].tolist() == [0, 0, 0]  # missing, NaN
    luminance = rgb[0, :3].astype(float) @ [0.299, 0.587, 0.114]
    assert luminance[0] > luminance[1] > luminance[2]       # nearer is brighter

    # robust range: the 2nd / 98th percentiles of the valid pixels (numpy's linear interpolation)
    ramp = np.concatenate([np.arange(1.0, 101.0), [0.0, 0.0]])[None]
    assert depth_range(ramp) == pytest.approx((1 + 0.02 * 99, 1 + 0.98 * 99))
    auto = colorize("depth", torch.from_numpy(ramp)[None].float())
    assert tuple(auto[0, 0]) == VIRIDIS_TOP and tuple(auto[0, 99]) == VIRIDIS_BOTTOM
    assert auto[0, 100:].tolist() == [[0, 0, 0]] * 2
    assert depth_range(np.zeros((2, 2))) is None and not colorize("depth", np.zeros((2, 2))).any()
    with pytest.raises(ValueError, match="near <= far"):
        colorize("depth", ramp, depth_range=(5.0, 1.0))


def test_saliency_and_edges_are_grey_with_ignore_dark_red():
    probs = np.array([[0.0, 1.0, 0.5, 255.0]], dtype=np.float32)
    for kind in ("saliency", "edges"):
        rgb = colorize(kind, probs[None])
        assert rgb.tolist() == [[[0, 0, 0], [255, 255, 255], [128, 128, 128], list(IGNORE_COLOUR)]]
        with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
            colorize(kind, np.array([[1.5, -2.0]]))


def test_valid_mask_blanks_pixels_for_every_kind():
    valid = np.array([[True, False]])
    assert colorize("segmentation", np.array([[1, 1]]), valid=valid).tolist() == [[[128, 0, 0], [0, 0, 0]]]
    assert colorize("depth", np.array([[2.0, 2.0]]), valid=valid, depth_range=(2.0, 3.0))[0, 1].tolist() == [0, 0, 0]
    assert colorize("saliency", np.array([[1.0, 1.0]]), valid=valid)[0, 1].tolist() == list(IGNORE_COLOUR)
    with pytest.raises(ValueError, match="valid mask has shape"):
        colorize("depth", np.ones((2, 2)), valid=np.ones((3, 3), dtype=bool))


@pytest.mark.parametrize("kind, shape", [
    ("segmentation", (H, W)), ("segmentation", (1, H, W)), ("depth", (H, W)), ("depth", (1, H, W)),
    ("normals", (3, H, W)), ("edges", (H, W)), ("edges", (1, H, W)), ("saliency", (1, H, W)),
])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_colorize_shapes_for_every_kind_and_layout(kind, shape, as_tensor):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, shape, generator=gen) if kind == "segmentation" else torch.rand(shape, generator=gen)
    rgb = colorize(kind, x if as_tensor else x.numpy())
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8


def test_colorize_rejects_unknown_kinds_and_wrong_shapes():
    with pytest.raises(ValueError, match="unknown task kind 'optical_flow'"):
        colorize("optical_flow", np.zeros((H, W)))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(1, H, W\), got shape \(2, 6, 9\)"):
        colorize("segmentation", np.zeros((2, H, W), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\(3, H, W\), got shape \(6, 9\)"):
        colorize("normals", np.zeros((H, W)))
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 6, 9\)"):
        colorize("depth", torch.ones(2, 1, H, W))


def test_as_rgb_and_blend():
    chw = torch.tensor([[[0.0, 1.0]], [[0.5, 0.25]], [[1.0, 0.0]]])  # (3, 1, 2) in [0, 1]
    assert as_rgb(chw).tolist() == [[[0, 128, 255], [255, 64, 0]]]
    assert as_rgb(np.full((1, 2), 7, dtype=np.uint8)).tolist() == [[[7, 7, 7], [7, 7, 7]]]
    with pytest.raises(ValueError, match="before mean/std normalisation"):
        as_rgb(torch.tensor([[[-2.1]], [[0.3]], [[2.4]]]))
    base = np.array([[[0, 100, 200]]], dtype=np.uint8)
    over = np.array([[[200, 100, 0]]], dtype=np.uint8)
    assert blend(base, over, alpha=0.25).tolist() == [[[50, 100, 150]]]


# -- attention ---------------------------------------------------------------------------------------
def test_attention_images_msa_argmax_and_heatmap_values():
    msa = torch.zeros(1, 3, 4, 4)
    msa[0, 0, :, :2] = 1.0      # left half: scale 0 wins
    msa[0, 2, :, 2:] = 1.0      # right half: scale 2 wins
    sfa = [torch.rand(1, c, 4 // 2 ** s, 4 // 2 ** s, generator=torch.Generator().manual_seed(s))
           for s, c in enumerate((8, 16, 32))]
    maps = attention_images({"sfa": sfa, "msa": msa})
    assert set(maps) == {"sfa", "msa", "msa_argmax"}
    assert len(maps["sfa"]) == 3 and len(maps["msa"]) == 3 and len(maps["msa_argmax"]) == 1
    assert all(m.shape == (4, 4, 3) and m.dtype == np.uint8 for ms in maps.values() for m in ms)
    winner = maps["msa_argmax"][0]
    assert (winner[:, :2] == SCALE_COLOURS[0]).all() and (winner[:, 2:] == SCALE_COLOURS[2]).all()
    inferno = matplotlib.colormaps["inferno"]
    assert tuple(maps["msa"][0][0, 0]) == tuple(inferno(1.0, bytes=True)[:3])   # weight 1
    assert tuple(maps["msa"][0][0, 3]) == tuple(inferno(0.0, bytes=True)[:3])   # weight 0
    # SFA means are stretched per map: the smallest mean gets the bottom colour, the largest the top
    coarsest = maps["sfa"][2]
    assert {tuple(coarsest[0, 0])} == {tuple(inferno(0.0, bytes=True)[:3])}      # a 1x1 map is flat
    finest = maps["sfa"][0]
    mean = sfa[0][0].mean(0).numpy()
    assert tuple(finest[np.unravel_index(mean.argmax(), mean.shape)]) == tuple(inferno(1.0, bytes=True)[:3])

    # over an image: image size, and the argmax map blended with it
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    over = attention_images({"msa": msa}, image, alpha=0.5)
    assert set(over) == {"msa", "msa_argmax"} and over["msa_argmax"][0].shape == (8, 8, 3)
    assert over["msa_argmax"][0][0, 0].tolist() == [round(c / 2) for c in SCALE_COLOURS[0]]


def test_attention_images_from_a_medusa_head_batch(torch_seed):
    head = MedusaHead([4, 8, 16, 32], out_channels=3, width=8).eval()
    features = [torch.randn(2, c, 16 // 2 ** s, 16 // 2 ** s) for s, c in enumerate((4, 8, 16, 32))]
    with torch.no_grad():
        out = head(features, return_attention=True)
    with pytest.raises(ValueError, match="batch of 2 samples; pass index"):
        attention_images(out["attention"])
    maps = attention_images(out, torch.rand(3, 32, 40), index=1)  # the head output is unwrapped
    assert [len(maps[k]) for k in ("sfa", "msa", "msa_argmax")] == [4, 4, 1]
    assert all(m.shape == (32, 40, 3) for ms in maps.values() for m in ms)
    with pytest.raises(ValueError, match="weighs 4 scales but sfa has 2"):
        attention_images({"sfa": out["attention"]["sfa"][:2], "msa": out["attention"]["msa"]}, index=0)


# -- files --------------------------------------------------------------------------------------------
def test_save_png_round_trip(tmp_path, rng):
    for name, shape in (("rgb", (5, 7, 3)), ("grey", (5, 7)), ("rgba", (5, 7, 4))):
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        path = save_png(array, tmp_path / "deep" / "er" / f"{name}.png")
        assert path == tmp_path / "deep" / "er" / f"{name}.png"
        assert np.array_equal(_read_png(path), array)
    save_png(torch.full((2, 3, 3), 9, dtype=torch.uint8), tmp_path / "deep" / "er" / "rgb.png")  # replaced
    assert _read_png(tmp_path / "deep" / "er" / "rgb.png").tolist() == [[[9] * 3] * 3] * 2
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in (tmp_path / "deep" / "er").iterdir()) == ["grey.png", "rgb.png", "rgba.png"]
    with pytest.raises(ValueError, match="uint8"):
        save_png(np.zeros((2, 2), dtype=np.float32), tmp_path / "f.png")
    with pytest.raises(ValueError, match="got shape"):
        save_png(np.zeros((2, 2, 2), dtype=np.uint8), tmp_path / "f.png")
    with pytest.raises(UflError, match="ending in .png"):
        save_png(np.zeros((2, 2), dtype=np.uint8), tmp_path / "f.jpg")
    assert not (tmp_path / "f.png").exists()


def _rows(rng) -> list[dict]:
    labels = rng.integers(0, 7, (48, 64))
    depth = rng.uniform(0.5, 8.0, (1, 48, 64))
    return [
        {"task": "human_parts", "kind": "segmentation", "dataset": "pascal", "gt": labels, "pred": torch.from_numpy(labels),
         "attention": [np.zeros((48, 64, 3), np.uint8)] * 2, "attention_labels": ["sfa 1", "msa argmax"]},
        {"task": "depth", "kind": "depth", "gt": depth, "pred": depth * 1.1},
        {"task": "saliency", "pred": colorize("saliency", rng.uniform(0, 1, (48, 64)))},  # already coloured, no gt
    ]


@pytest.mark.slow
def test_prediction_grids_write_readable_pngs_and_leave_no_figures(tmp_path, rng):
    before = plt.get_fignums()
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    one = prediction_grid(image, _rows(rng), tmp_path / "one.png", title="Medusa", dpi=50)
    many = prediction_grids([{"image": image, "rows": _rows(rng), "name": "a"},
                             {"image": torch.rand(3, 48, 64), "rows": _rows(rng)[:1], "name": "b"}],
                            tmp_path / "figs" / "many.png", dpi=50)
    assert plt.get_fignums() == before
    # 5 columns (input, gt, prediction, 2 attention maps) of 2 inches at 50 dpi
    (w1, h1), (w2, h2) = _png_size(one), _png_size(many)
    assert w1 == w2 == 5 * 2 * 50 and h2 > h1 > 150
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figs", "one.png"]  # no temporary files left
    assert _read_png(one).std() > 10  # something was drawn


def test_prediction_grid_rejects_bad_rows_without_writing(tmp_path):
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    path = tmp_path / "grid.png"
    with pytest.raises(ValueError, match="unknown row key"):
        prediction_grid(image, [{"task": "depth", "pred": np.zeros((8, 8, 3), np.uint8), "colour": 1}], path)
    with pytest.raises(ValueError, match="give the row's 'kind'"):
        prediction_grid(image, [{"task": "depth", "pred": np.ones((8, 8))}], path)
    with pytest.raises(ValueError, match="1 attention_labels for 2 attention maps"):
        prediction_grid(image, [{"task": "t", "pred": image, "attention": [image, image], "attention_labels": ["a"]}], path)
    with pytest.raises(ValueError, match="at least one sample"):
        prediction_grids([], path)
    assert not path.exists()


def test_bar_chart_and_grouped_bars_write_pngs(tmp_path):
    before = plt.get_fignums()
    bars = bar_chart({"semseg": 37.48, "depth": 0.545, "normals": float("nan")}, tmp_path / "bar.png",
                     ylabel="score", title="NYUD", higher_is_better={"semseg": True, "depth": False}, dpi=100)
    assert _png_size(bars) == (510, 360)  # figsize (max(4, 1.2 * 3 + 1.5), 3.6) inches at 100 dpi
    table = {"human_parts": {"Medusa": (52.24, 0.3), "MTI-Net": 51.50, "single-task": 48.73},
             "saliency": {"Medusa": 61.91, "single-task": (56.44, 1.0)}}  # MTI-Net missing: an empty slot
    grouped = grouped_bars(table, tmp_path / "sub" / "grouped.png", title="UFL on PASCAL",
                           ylabels={"human_parts": "mIoU (%)", "saliency": "maxF (%)"}, dpi=100)
    assert _png_size(grouped) == (int(2 * (0.7 * 3 + 1.2) * 100), 380)
    assert plt.get_fignums() == before
    assert _read_png(grouped).std() > 10

    with pytest.raises(ValueError, match="at least one task"):
        bar_chart({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="expected a number"):
        bar_chart({"semseg": "high"}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"value or \(mean, std\)"):
        grouped_bars({"depth": {"Medusa": (0.5, 0.1, 0.2)}}, tmp_path / "x.png")
    with pytest.raises(UflError, match="ending in .png"):
        grouped_bars(table, tmp_path / "x.svg")
    assert not (tmp_path / "x.png").exists()


# -- keys on every picture ----------------------------------------------------------------------------
def _legend_texts(fig) -> list[str]:
    from matplotlib.legend import Legend

    texts = []
    for legend in fig.findobj(Legend):
        texts.append(legend.get_title().get_text())
        texts.extend(t.get_text() for t in legend.get_texts())
    return texts


def _colorbar_labels(fig) -> list[str]:
    """Labels of the colour bars in the key cells."""
    return [child.get_ylabel() for ax in fig.axes if ax.get_label() == "key" for child in ax.child_axes
            if getattr(child, "_colorbar", None) is not None]


def _attention_rows(rng, h=48, w=64):
    att = {"sfa": [torch.rand(1, 4, h // s, w // s) for s in (4, 8, 16, 32)],
           "msa": torch.softmax(torch.randn(1, 4, h // 4, w // 4), 1)}
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    maps = attention_images(att, image, index=0)
    labels = [f"SFA s{s}" for s in range(4)] + [f"MSA s{s}" for s in range(4)] + ["MSA argmax"]
    return image, maps["sfa"] + maps["msa"] + maps["msa_argmax"], labels


def test_every_kind_of_picture_gets_its_key(rng):
    image, maps, labels = _attention_rows(rng)
    labels_map = np.zeros((48, 64), dtype=np.int64)
    labels_map[:, 32:] = 1  # floor (class 1 of NYUD's 40) right, wall (0) left
    labels_map[0] = 255
    rows = [
        {"task": "semseg", "kind": "segmentation", "dataset": "nyud", "num_classes": 40, "gt": labels_map,
         "pred": labels_map, "attention": maps, "attention_labels": labels},
        {"task": "depth", "kind": "depth", "gt": rng.uniform(1.0, 4.0, (48, 64)), "pred": rng.uniform(1.0, 4.0, (48, 64))},
        {"task": "normals", "kind": "normals", "pred": rng.normal(size=(3, 48, 64))},
        {"task": "edges", "kind": "edges", "pred": rng.uniform(0, 1, (48, 64))},
    ]
    fig = prediction_figure([{"image": image, "rows": rows}])
    legends = _legend_texts(fig)
    # the class legend names the catalogue's classes present, and ignore
    assert {"classes", "wall", "floor", "ignore"} <= set(legends) and "chair" not in legends
    # the MSA argmax key: which colour is which scale
    assert {"winning scale", "s0 (finest)", "s1", "s2", "s3"} <= set(legends)
    bars = _colorbar_labels(fig)
    assert {"depth (m)", "probability", "SFA mask (per map)", "MSA weight"} <= set(bars)
    depth_bar = next(child for ax in fig.axes for child in ax.child_axes if child.get_ylabel() == "depth (m)")
    low, high = depth_bar.get_ylim()
    assert 1.0 <= low < high <= 4.0  # the robust range of the ground truth, in metres
    keys = [ax for ax in fig.axes if ax.get_label() == "key"]
    assert len(keys) == 6  # semseg + its SFA line + its MSA line, depth, normals, edges
    spheres = [child for ax in keys for child in ax.child_axes if child.get_images()]
    assert len(spheres) == 1 and spheres[0].get_title().startswith("normal")


def test_normals_key_is_the_colour_of_each_sphere_normal():
    key = normals_key(65)
    assert key.shape == (65, 65, 3)
    assert tuple(key[32, 32]) == (128, 128, 255)  # facing the camera: z = 1
    assert key[32, 63, 0] > 240 and key[32, 1, 0] < 15  # right edge x -> +1 (red), left edge x -> -1
    assert key[63, 32, 1] > 240  # bottom edge: y down -> +1 (green)
    assert tuple(key[0, 0]) == (0, 0, 0)  # outside the sphere


@pytest.mark.slow
def test_the_attention_panel_is_at_most_12_inches_wide_with_a_large_input(tmp_path, rng):
    image, maps, labels = _attention_rows(rng, 96, 128)
    rows = [{"task": "semseg", "kind": "segmentation", "dataset": "nyud", "num_classes": 40,
             "pred": rng.integers(0, 40, (96, 128)), "attention": maps, "attention_labels": labels}]
    fig = prediction_figure([{"image": image, "rows": rows, "name": "photo.jpg"}])
    assert fig.get_figwidth() <= 12.0 + 1e-9
    fig.canvas = matplotlib.backends.backend_agg.FigureCanvasAgg(fig)
    fig.canvas.draw()
    boxes = {ax.get_title(): ax.get_window_extent() for ax in fig.axes if ax.get_title()}
    assert boxes["input"].width >= 1.8 * boxes["prediction"].width  # two panels wide, not one tiny column
    assert abs(boxes["SFA s0"].width - boxes["prediction"].width) < 2
    path = prediction_grids([{"image": image, "rows": rows, "name": "photo.jpg"}], tmp_path / "panel.png")
    width, height = _png_size(path)
    assert width <= 1440 and height < width  # was 2640 x 1248 with a 2-inch input


def test_unit_figure_puts_each_unit_on_its_own_axis_with_the_trivial_baseline(tmp_path):
    table = {metric_unit("segmentation", "mIoU"): {"semseg mIoU": {"ufl": 4.8, "trivial": 1.1}},
             metric_unit("depth", "rmse"): {"depth rmse": {"ufl": 0.9, "trivial": 1.4}},
             metric_unit("normals", "mean"): {"normals mean": {"ufl": 27.0, "trivial": 56.8}}}
    fig = unit_figure(table, higher_is_better={"semseg mIoU": True, "depth rmse": False})
    axes = [ax for ax in fig.axes if ax.patches]
    assert [ax.get_ylabel() for ax in axes] == ["score (%)", "metres", "degrees"]
    heights = [sorted(round(p.get_height(), 3) for p in ax.patches) for ax in axes]
    assert heights == [[1.1, 4.8], [0.9, 1.4], [27.0, 56.8]]
    assert {"ufl", "trivial"} <= set(_legend_texts(fig))
    assert metric_unit("normals", "11.25") == "score (%)" and metric_unit("depth", "log_rmse") == "log metres"
    path = unit_chart(table, tmp_path / "units.png")
    assert _png_size(path)[0] > 300
    with pytest.raises(ValueError, match="at least one unit"):
        unit_figure({})


def test_a_label_outside_the_classes_fails_clearly_before_any_key(rng):
    rows = [{"task": "semseg", "kind": "segmentation", "dataset": "nyud", "num_classes": 40,
             "pred": np.full((8, 8), 99)}]
    with pytest.raises(ValueError, match="label 99 is outside the 40 classes"):
        prediction_figure([{"image": np.zeros((8, 8, 3), np.uint8), "rows": rows}])


def test_rows_without_a_kind_get_no_key_column(rng):
    rows = [{"task": "saliency", "pred": colorize("saliency", rng.uniform(0, 1, (8, 8)))}]
    fig = prediction_figure([{"image": np.zeros((8, 8, 3), np.uint8), "rows": rows}], panel_inches=2.0)
    assert fig.get_figwidth() == 4.0 and not [ax for ax in fig.axes if ax.get_label() == "key"]


# -- the typed panel row, and kinds that draw themselves ------------------------------------------------
def test_panel_row_colours_a_kind_and_wraps_attention_lines():
    labels = np.array([[0, 1], [1, 255]])
    maps = [np.full((2, 2, 3), i, np.uint8) for i in range(7)]
    row = PanelRow.from_dict({"task": "parts", "kind": "segmentation", "dataset": "pascal", "target": "human_parts",
                              "pred": labels, "attention": maps,
                              "attention_labels": [f"SFA s{i}" for i in range(6)] + ["MSA argmax"]}, "row 0")
    assert row.gt is None and row.pred.tolist() == colorize("segmentation", labels, dataset="pascal",
                                                             task="human_parts").tolist()
    assert [entry[0] for entry in row.keys[0]["entries"]] == ["background", "head", "ignore"]
    lines = row.lines()
    assert [(len(panels), what) for panels, what in lines] == [(1, "prediction"), (5, "attention"),
                                                               (1, "attention"), (1, "attention")]
    assert row.scales == 0  # the argmax map is not a scale
    # another row of the sample has a ground truth: this one gets the placeholder in its place
    first = row.lines(gt_column=True)[0][0]
    assert [label for label, _ in first] == ["ground truth", "prediction"] and first[0][1] is MISSING_GT


def test_a_registered_kind_draws_its_own_colours_key_and_unit():
    from ufl.kinds import register_kind, unregister_kind
    from ufl.kinds.saliency import SaliencyKind

    class Heat(SaliencyKind):
        name = "heat_toy"

        def colorize(self, array, *, valid=None, classes=None, value_range=None):
            return np.full(np.shape(array)[-2:] + (3,), (10, 20, 30), np.uint8)

        def colour_key(self, gt, pred, *, classes=None, value_range=None):
            return [{"type": "colorbar", "cmap": "hot", "range": (0.0, 5.0), "label": "heat (K)"}]

        def metric_unit(self, metric):
            return "kelvin"

    register_kind(Heat)
    try:
        assert colorize("heat_toy", np.zeros((2, 3))).tolist() == [[[10, 20, 30]] * 3] * 2
        fig = prediction_figure([{"image": np.zeros((8, 8, 3), np.uint8),
                                  "rows": [{"task": "t", "kind": "heat_toy", "pred": np.zeros((8, 8))}]}])
        assert _colorbar_labels(fig) == ["heat (K)"]
        assert metric_unit("heat_toy", "maxF") == "kelvin"
    finally:
        unregister_kind("heat_toy")
    with pytest.raises(ValueError, match="unknown task kind 'heat_toy'"):
        prediction_figure([{"image": np.zeros((8, 8, 3), np.uint8),
                            "rows": [{"task": "t", "kind": "heat_toy", "pred": np.zeros((8, 8))}]}])
