"""Tests of ufl.metrics against values computed by hand (the arithmetic is written out)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ufl.metrics import (
    HEADLINE_METRICS,
    METRIC_DIRECTIONS,
    DepthMetric,
    EdgeMetric,
    MetricInputError,
    NormalsMetric,
    SaliencyMetric,
    SegmentationMetric,
)
from ufl.evaluation import delta_m
from ufl.taskspec import KINDS


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def split_in_two(metric_factory, pred, target, cut):
    """Metrics of the two halves of a split (for pooling / merge checks)."""
    first, second = metric_factory(), metric_factory()
    first.update(pred[:cut], target[:cut])
    second.update(pred[cut:], target[cut:])
    return first, second


# ------------------------------------------------------------------------------------------------
# Segmentation
# ------------------------------------------------------------------------------------------------
def test_segmentation_matches_hand_computation():
    target = np.array([[[0, 0, 1], [1, 2, 255]]])
    pred = np.array([[[0, 1, 1], [1, 0, 2]]])
    # labelled pixels (target, pred): (0,0) (0,1) (1,1) (1,1) (2,0); the 255 pixel is skipped
    # class 0: TP 1, FP 1 (the 2 predicted as 0), FN 1 (a 0 predicted as 1) -> 1/3
    # class 1: TP 2, FP 1, FN 0 -> 2/3;  class 2: TP 0, FP 0, FN 1 -> 0
    metric = SegmentationMetric(num_classes=3)
    metric.update(pred, target)
    np.testing.assert_allclose(metric.per_class_iou(), [100 / 3, 200 / 3, 0.0])
    assert metric.compute() == {"mIoU": pytest.approx(100 * (1 / 3 + 2 / 3 + 0) / 3)}


def test_segmentation_absent_class_counts_as_zero():
    # class 3 never occurs and is never predicted: IoU 0, still in the mean (MTI-Net convention)
    target = np.array([[[0, 1], [2, 2]]])
    metric = SegmentationMetric(num_classes=4)
    metric.update(target.copy(), target)
    np.testing.assert_allclose(metric.per_class_iou(), [100, 100, 100, 0])
    assert metric.compute()["mIoU"] == pytest.approx(75.0)


def test_segmentation_ignored_pixels_do_not_count():
    target = np.array([[[0, 1, 255, 255]]])
    a, b = SegmentationMetric(2), SegmentationMetric(2)
    a.update(np.array([[[0, 1, 0, 0]]]), target)
    b.update(np.array([[[0, 1, 1, 1]]]), target)
    assert a.compute() == b.compute() == {"mIoU": 100.0}
    custom = SegmentationMetric(2, ignore_index=7)
    custom.update(np.array([[[0, 1, 1]]]), np.array([[[0, 1, 7]]]))
    assert custom.compute()["mIoU"] == 100.0


def test_segmentation_rejects_out_of_range_labels():
    metric = SegmentationMetric(3)
    with pytest.raises(ValueError, match=r"predicted labels must be in \[0, 3\)"):
        metric.update(np.array([[[0, 3]]]), np.array([[[0, 1]]]))
    with pytest.raises(ValueError, match="target labels"):
        metric.update(np.array([[[0, 1]]]), np.array([[[0, 5]]]))
    with pytest.raises(ValueError):
        metric.update(np.array([[[-1, 1]]]), np.array([[[0, 1]]]))
    assert metric.state()["confusion"].sum() == 0  # a rejected batch adds nothing


def test_segmentation_pooled_over_updates_equals_one_update():
    r = rng(1)
    target = r.integers(0, 5, (6, 12, 16))
    target[r.random(target.shape) < 0.1] = 255
    pred = r.integers(0, 5, (6, 12, 16))
    whole = SegmentationMetric(5)
    whole.update(pred, target)
    pieces = SegmentationMetric(5)
    for i in range(0, 6, 2):
        pieces.update(pred[i:i + 2], target[i:i + 2])
    assert pieces.compute() == whole.compute()
    np.testing.assert_array_equal(pieces.state()["confusion"], whole.state()["confusion"])


def test_segmentation_merge_and_state_round_trip():
    r = rng(2)
    target, pred = r.integers(0, 4, (4, 8, 8)), r.integers(0, 4, (4, 8, 8))
    whole = SegmentationMetric(4)
    whole.update(pred, target)
    first, second = split_in_two(lambda: SegmentationMetric(4), pred, target, 3)
    assert first.merge(second).compute() == whole.compute()
    # all-reduce style: sum the raw states of two ranks, load into a fresh metric
    a, b = split_in_two(lambda: SegmentationMetric(4), pred, target, 1)
    summed = {k: a.state()[k] + b.state()[k] for k in a.state()}
    fresh = SegmentationMetric(4)
    fresh.load_state({k: torch.from_numpy(v) for k, v in summed.items()})
    assert fresh.compute() == whole.compute()
    with pytest.raises(ValueError, match="cannot merge"):
        SegmentationMetric(4).merge(SegmentationMetric(5))
    with pytest.raises(ValueError, match="shape"):
        SegmentationMetric(5).load_state(summed)


def test_segmentation_accepts_tensors_and_singleton_channel():
    r = rng(3)
    target, pred = r.integers(0, 3, (2, 6, 7)), r.integers(0, 3, (2, 6, 7))
    from_numpy, from_torch = SegmentationMetric(3), SegmentationMetric(3)
    from_numpy.update(pred, target)
    from_torch.update(torch.from_numpy(pred)[:, None], torch.from_numpy(target).to(torch.uint8))
    assert from_numpy.compute() == from_torch.compute()


def test_segmentation_shape_errors_and_empty():
    metric = SegmentationMetric(3)
    with pytest.raises(ValueError, match="must match"):
        metric.update(np.zeros((1, 4, 4), int), np.zeros((1, 4, 5), int))
    with pytest.raises(ValueError, match="argmax"):
        metric.update(np.zeros((1, 3, 4, 4)), np.zeros((1, 4, 4), int))
    with pytest.raises(MetricInputError):
        SegmentationMetric(0)
    assert math.isnan(metric.compute()["mIoU"])  # nothing labelled seen yet
    metric.update(np.zeros((1, 2, 2), int), np.full((1, 2, 2), 255))
    assert math.isnan(metric.compute()["mIoU"])
    metric.reset()
    assert metric.state()["confusion"].sum() == 0


# ------------------------------------------------------------------------------------------------
# Depth
# ------------------------------------------------------------------------------------------------
def test_depth_matches_hand_computation():
    pred = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    target = np.array([[[1.0, 0.0], [2.0, 5.0]]])
    # valid pixels: 3 (target 0 is missing); errors 0, +1, -1
    # rmse = sqrt((0 + 1 + 1) / 3); log errors ln1-ln1 = 0, ln3-ln2, ln4-ln5
    metric = DepthMetric()
    metric.update(pred, target)
    out = metric.compute()
    assert set(out) == {"rmse", "log_rmse"}
    assert out["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert out["log_rmse"] == pytest.approx(math.sqrt((math.log(1.5) ** 2 + math.log(0.8) ** 2) / 3))


def test_depth_clamps_predictions_and_pools_pixels_not_images():
    metric = DepthMetric()
    # image 1: one valid pixel, prediction -1 -> clamped to 1e-9, gt 2: sq err (2 - 1e-9)^2
    metric.update(np.array([[[-1.0, 7.0]]]), np.array([[[2.0, 0.0]]]))
    # image 2: two valid pixels, both exact (third pixel missing)
    metric.update(torch.tensor([[[[3.0, 3.0, 3.0]]]]), torch.tensor([[[[3.0, 3.0, 0.0]]]]))
    out = metric.compute()
    # pooled over 3 pixels: sqrt((2 - 1e-9)^2 / 3) = 1.1547; a mean of per-image RMSEs would be 1
    assert out["rmse"] == pytest.approx(math.sqrt((2 - 1e-9) ** 2 / 3))
    assert out["log_rmse"] == pytest.approx(math.sqrt((math.log(1e-9) - math.log(2)) ** 2 / 3))
    assert out["rmse"] != pytest.approx((2 + 0) / 2)


def test_depth_all_invalid_gives_nan_and_shapes_are_checked():
    metric = DepthMetric()
    metric.update(np.ones((2, 1, 3, 3)), np.zeros((2, 3, 3)))
    assert all(math.isnan(v) for v in metric.compute().values())
    with pytest.raises(ValueError, match=r"\(B, H, W\) or \(B, 1, H, W\)"):
        metric.update(np.ones((2, 2, 3, 3)), np.ones((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="must match"):
        metric.update(np.ones((2, 3, 3)), np.ones((1, 3, 3)))


def test_depth_merge_equals_sequential_updates():
    r = rng(4)
    pred = r.uniform(0.5, 5, (5, 10, 12))
    target = np.where(r.random((5, 10, 12)) < 0.3, 0.0, r.uniform(0.5, 5, (5, 10, 12)))
    whole = DepthMetric()
    whole.update(pred, target)
    first, second = split_in_two(DepthMetric, pred, target, 2)
    merged = first.merge(second).compute()
    for key, value in whole.compute().items():
        assert merged[key] == pytest.approx(value, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# Normals
# ------------------------------------------------------------------------------------------------
def _normals_image(pairs):
    """(1, 3, 1, N) pred and target from a list of (pred vector, target vector)."""
    pred = np.array([p for p, _ in pairs], float).T[None, :, None, :]
    target = np.array([t for _, t in pairs], float).T[None, :, None, :]
    return pred, target


def test_normals_matches_hand_computation():
    pred, target = _normals_image([
        ([0, 0, 2], [0, 0, 1]),    # 0 degrees (norms do not matter)
        ([1, 0, 1], [0, 0, 3]),    # 45 degrees
        ([1, 0, 0], [0, 0, 1]),    # 90 degrees
        ([0, 0, -1], [0, 0, 1]),   # 180 degrees
        ([1, 0, 0], [0, 0, 0]),    # invalid: zero ground truth
    ])
    metric = NormalsMetric()
    metric.update(pred, target)
    out = metric.compute()
    assert list(out) == ["mean", "median", "rmse", "11.25", "22.5", "30"]
    assert out["mean"] == pytest.approx((0 + 45 + 90 + 180) / 4)
    assert out["rmse"] == pytest.approx(math.sqrt((0 + 45 ** 2 + 90 ** 2 + 180 ** 2) / 4))
    assert out["median"] == pytest.approx((45 + 90) / 2, abs=0.001)
    assert out["11.25"] == out["22.5"] == out["30"] == pytest.approx(25.0)  # only the 0 degree pixel


def test_normals_median_within_one_bin_of_numpy():
    r = rng(5)
    pred, target = r.normal(size=(3, 3, 20, 24)), r.normal(size=(3, 3, 20, 24))
    target[:, :, :3] = 0  # some invalid rows
    metric = NormalsMetric()
    for i in range(3):
        metric.update(torch.from_numpy(pred[i:i + 1]).float(), target[i:i + 1])
    p = pred / np.linalg.norm(pred, axis=1, keepdims=True)
    valid = np.linalg.norm(target, axis=1) > 0
    t = target / (np.linalg.norm(target, axis=1, keepdims=True) + 1e-12)
    angles = np.degrees(np.arccos(np.clip((p * t).sum(1), -1, 1)))[valid]
    out = metric.compute()
    # pred went through float32; the angles are compared at float32 precision
    assert abs(out["median"] - np.median(angles)) <= metric.bin_width + 1e-4
    assert out["mean"] == pytest.approx(angles.mean(), abs=1e-4)
    assert out["rmse"] == pytest.approx(np.sqrt((angles ** 2).mean()), abs=1e-4)
    assert out["30"] == pytest.approx(100 * np.mean(angles < 30), abs=0.2)
    # odd count and a coarse histogram: still within one bin
    coarse = NormalsMetric(bin_width=0.5)
    coarse.update(pred[:, :, :, :23], target[:, :, :, :23])
    p2, t2 = p[:, :, :, :23], t[:, :, :, :23]
    a2 = np.degrees(np.arccos(np.clip((p2 * t2).sum(1), -1, 1)))[valid[:, :, :23]]
    assert a2.size % 2 == 1
    assert abs(coarse.compute()["median"] - np.median(a2)) <= 0.5


def test_normals_merge_shape_errors_and_empty():
    r = rng(6)
    pred, target = r.normal(size=(4, 3, 6, 6)), r.normal(size=(4, 3, 6, 6))
    whole = NormalsMetric()
    whole.update(pred, target)
    first, second = split_in_two(NormalsMetric, pred, target, 1)
    merged = first.merge(second)
    np.testing.assert_array_equal(merged.state()["histogram"], whole.state()["histogram"])
    assert merged.compute() == pytest.approx(whole.compute(), rel=1e-12)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        whole.update(pred[:, :2], target[:, :2])
    with pytest.raises(ValueError, match="must match"):
        whole.update(pred, target[:, :, :5])
    empty = NormalsMetric()
    empty.update(pred, np.zeros_like(target))
    assert all(math.isnan(v) for v in empty.compute().values())


def test_nonfinite_predictions_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        NormalsMetric().update(np.full((1, 3, 2, 2), np.nan), np.ones((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        DepthMetric().update(np.full((1, 2, 2), np.inf), np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match="probabilities"):
        EdgeMetric().update(np.full((1, 2, 2), np.nan), np.ones((1, 2, 2)))


# ------------------------------------------------------------------------------------------------
# Saliency
# ------------------------------------------------------------------------------------------------
def test_saliency_matches_hand_computation():
    pred = np.array([[[0.9, 0.6, 0.3, 0.1]],      # image 1
                     [[0.7, 0.2, 0.8, 0.4]]])     # image 2
    target = np.array([[[1, 1, 0, 0]],
                       [[1, 0, 0, 255]]], float)  # last pixel of image 2 is void
    metric = SaliencyMetric(thresholds=[0.5, 0.75])
    metric.update(pred, target)
    # t = 0.5: img1 pred {0,1} -> TP 2 FP 0 FN 0: P 1 R 1 IoU 1
    #          img2 pred {0,2} -> TP 1 FP 1 FN 0: P 1/2 R 1 IoU 1/2
    #          mean P 3/4, R 1, IoU 3/4
    # t = 0.75: img1 pred {0} -> TP 1 FP 0 FN 1: P 1 R 1/2 IoU 1/2
    #           img2 pred {2} -> TP 0 FP 1 FN 1: P 0 R 0 IoU 0
    #           mean P 1/2, R 1/4, IoU 1/4
    f1 = [2 * 0.75 * 1 / (0.75 + 1), 2 * 0.5 * 0.25 / (0.5 + 0.25)]   # 6/7, 1/3
    f03 = [1.3 * 0.75 * 1 / (0.3 * 0.75 + 1), 1.3 * 0.5 * 0.25 / (0.3 * 0.5 + 0.25)]
    out = metric.compute()
    assert out["maxF"] == pytest.approx(100 * max(f1), abs=1e-8)
    assert out["maxF_b03"] == pytest.approx(100 * max(f03), abs=1e-8)
    assert out["mIoU"] == pytest.approx(75.0, abs=1e-8)
    curves = metric.curves()
    np.testing.assert_allclose(curves["precision"], [0.75, 0.5], atol=1e-10)
    np.testing.assert_allclose(curves["recall"], [1.0, 0.25], atol=1e-10)


def test_saliency_default_thresholds_and_keys():
    metric = SaliencyMetric()
    np.testing.assert_allclose(metric.thresholds, [0.2 + 0.05 * i for i in range(15)])
    metric.update(np.full((1, 1, 4, 4), 0.6), np.ones((1, 1, 4, 4)))
    assert list(metric.compute()) == ["maxF", "maxF_b03", "mIoU"]
    assert metric.compute()["maxF"] == pytest.approx(100.0)


def test_saliency_empty_prediction_and_empty_gt():
    metric = SaliencyMetric()
    metric.update(np.zeros((1, 5, 5)), np.zeros((1, 5, 5)))
    # both empty at every threshold: IoU 1 (MTI-Net's jaccard), P = R = 0 -> F = 0
    assert metric.compute() == {"maxF": 0.0, "maxF_b03": 0.0, "mIoU": 100.0}
    only_gt = SaliencyMetric()
    only_gt.update(np.zeros((1, 5, 5)), np.ones((1, 5, 5)))
    assert only_gt.compute() == {"maxF": 0.0, "maxF_b03": 0.0, "mIoU": 0.0}


def test_saliency_void_pixels_and_void_images_are_ignored():
    pred = np.array([[[0.9, 0.9, 0.1]], [[0.9, 0.9, 0.9]]])
    target = np.array([[[1, 255, 0]], [[255, 255, 255]]], float)
    metric = SaliencyMetric()
    metric.update(pred, target)
    # image 2 has no labelled pixel and is skipped; in image 1 the void pixel plays no part
    assert int(metric.state()["num_images"]) == 1
    assert metric.compute() == pytest.approx({"maxF": 100.0, "maxF_b03": 100.0, "mIoU": 100.0})
    void_only = SaliencyMetric()
    void_only.update(pred[1:], target[1:])
    assert all(math.isnan(v) for v in void_only.compute().values())


def test_saliency_input_checks():
    metric = SaliencyMetric()
    with pytest.raises(ValueError, match="sigmoid"):
        metric.update(np.full((1, 2, 2), 3.0), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="divide grey-level"):
        metric.update(np.zeros((1, 2, 2)), np.full((1, 2, 2), 128.0))
    with pytest.raises(ValueError, match="must match"):
        metric.update(np.zeros((2, 2, 2)), np.zeros((1, 2, 2)))


def test_saliency_pooling_merge_and_tensors():
    r = rng(7)
    pred = r.random((6, 9, 11)).astype(np.float32)
    target = (r.random((6, 9, 11)) > 0.6).astype(np.float32)
    target[0, :2] = 255
    whole = SaliencyMetric()
    whole.update(torch.from_numpy(pred)[:, None], torch.from_numpy(target)[:, None])
    sequential = SaliencyMetric()
    for i in range(6):
        sequential.update(pred[i:i + 1], target[i:i + 1])
    first, second = split_in_two(SaliencyMetric, pred, target, 4)
    assert sequential.compute() == pytest.approx(whole.compute(), rel=1e-12)
    assert first.merge(second).compute() == pytest.approx(whole.compute(), rel=1e-12)


# ------------------------------------------------------------------------------------------------
# Edges (96 x 128 images: maxDist 0.0075 of the 160-pixel diagonal = 1.2 pixels)
# ------------------------------------------------------------------------------------------------
H, W = 96, 128


def edge_map(rows=(), cols=()):
    m = np.zeros((1, H, W), np.float32)
    for r in rows:
        m[0, r, :] = 1
    for c in cols:
        m[0, :, c] = 1
    return m


def test_edge_default_thresholds():
    thresholds = EdgeMetric().thresholds
    assert thresholds.size == 99
    np.testing.assert_allclose(thresholds, np.arange(1, 100) / 100)


def test_edge_perfect_prediction_gives_100():
    # BSDS's correspondPixels links nodes to random outliers (6 each) and can drop about one
    # pixel in a few hundred even for identical maps (see EdgeMetric's NOTE): 100 within 0.5
    gt = edge_map(rows=[20, 70], cols=[40])
    metric = EdgeMetric()
    metric.update(gt.copy(), gt)
    assert metric.compute()["odsF"] == pytest.approx(100.0, abs=0.5)
    small = np.zeros((1, H, W), np.float32)
    small[0, 50, 60:65] = 1  # 5 pixels: the outlier graph is complete, the match exact
    exact = EdgeMetric(num_thresholds=5)
    exact.update(small.copy(), small)
    assert exact.compute() == {"odsF": 100.0}


def test_edge_matching_is_reproducible():
    r = rng(9)
    gt = edge_map(rows=[20, 70], cols=[40, 100])
    pred = np.clip(0.8 * gt + 0.3 * r.random(gt.shape), 0, 1).astype(np.float32)
    states = []
    for _ in range(2):
        metric = EdgeMetric(num_thresholds=5)
        metric.update(pred, gt)
        states.append(metric.state())
    for key in states[0]:
        np.testing.assert_array_equal(states[0][key], states[1][key])


def test_edge_matching_in_worker_processes_gives_the_same_counts():
    edges = np.zeros((6, 40, 48))
    edges[:, 10, 5:40] = 1
    edges[:, 5:35, 30] = 1
    edges[:3, 20:, 12] = 1
    edges[5, :4] = 255  # an ignored band
    pred = np.clip(0.6 * edges * (edges <= 1) + 0.5 * rng(3).random(edges.shape), 0, 1)
    here, pooled = EdgeMetric(num_thresholds=9), EdgeMetric(num_thresholds=9, workers=2)
    for metric in (here, pooled):
        metric.update(pred[:4], edges[:4])
        metric.update(pred[4:], edges[4:])
    state_here, state_pooled = here.state(), pooled.state()
    for key, value in state_here.items():
        np.testing.assert_array_equal(state_pooled[key], value, err_msg=key)
    assert pooled.compute() == here.compute() and int(state_here["num_images"]) == 6
    with pytest.raises(MetricInputError, match="workers"):
        EdgeMetric(workers=-1)


def test_edge_one_pixel_shift_matches_far_shift_does_not():
    gt = edge_map(rows=[40])
    near, far = EdgeMetric(num_thresholds=5), EdgeMetric(num_thresholds=5)
    near.update(edge_map(rows=[41]), gt)   # 1 px < 1.2 px: matched
    far.update(edge_map(rows=[46]), gt)    # 6 px: nothing matched
    assert near.compute()["odsF"] == pytest.approx(100.0, abs=1.0)
    assert far.compute()["odsF"] == 0.0


def test_edge_partial_match_by_hand():
    gt = edge_map(rows=[30])                       # 128 ground-truth pixels
    pred = np.zeros((1, H, W), np.float32)
    pred[0, 30, :64] = 0.8                         # 64 of them found
    pred[0, 80, :32] = 0.8                         # 32 false positives, 50 px away
    metric = EdgeMetric(num_thresholds=3)          # thresholds 0.25, 0.5, 0.75: same map
    metric.update(pred, gt)
    # R = 64/128 = 1/2, P = 64/96 = 2/3, F = 2 (1/2)(2/3) / (1/2 + 2/3) = 4/7
    assert metric.compute()["odsF"] == pytest.approx(100 * 4 / 7)
    curves = metric.curves()
    np.testing.assert_allclose(curves["recall"], 0.5)
    np.testing.assert_allclose(curves["precision"], 2 / 3)


def test_edge_thick_prediction_is_thinned():
    gt = np.zeros((1, H, W), np.float32)                  # a rectangle outline: no line ends
    gt[0, 30, 40:91] = gt[0, 70, 40:91] = 1
    gt[0, 30:71, 40] = gt[0, 30:71, 90] = 1
    thick = np.zeros((1, H, W), np.float32)                # a 7-pixel-wide ring around it
    thick[0, 27:74, 37:94] = 0.9
    thick[0, 34:67, 44:87] = 0.0
    metric = EdgeMetric(num_thresholds=3)
    metric.update(thick, gt)
    # unthinned, 7 predicted pixels per edge pixel would give P <= 1/7 (F <= 25 %);
    # thinned to its 1-pixel medial loop it matches almost everywhere (corners may be cut)
    assert metric.compute()["odsF"] > 95.0


def test_edge_empty_prediction_and_ignore():
    gt = edge_map(rows=[30])
    empty = EdgeMetric(num_thresholds=5)
    empty.update(np.zeros((1, H, W)), gt)
    assert empty.compute()["odsF"] == 0.0
    # a spurious line inside an ignored region is neither a false positive nor a match
    target = gt.copy()
    target[0, 60:70, :] = 255
    pred = edge_map(rows=[30, 65])
    ignored = EdgeMetric(num_thresholds=5)
    ignored.update(pred, target)
    state = ignored.state()
    np.testing.assert_array_equal(state["sum_p"], 128)  # row 65 is not counted: only row 30
    np.testing.assert_array_equal(state["sum_r"], 128)
    assert ignored.compute()["odsF"] == pytest.approx(100.0, abs=1.0)
    assert math.isnan(EdgeMetric().compute()["odsF"])


def test_edge_pooling_merge_interpolation_and_tensors():
    r = rng(8)
    gts = np.concatenate([edge_map(rows=[20 + 10 * i], cols=[30 + 20 * i]) for i in range(3)])
    noise = r.random(gts.shape).astype(np.float32)
    pred = np.clip(0.7 * gts + 0.35 * noise, 0, 1)
    whole = EdgeMetric(num_thresholds=7)
    whole.update(torch.from_numpy(pred)[:, None], torch.from_numpy(gts))
    first, second = split_in_two(lambda: EdgeMetric(num_thresholds=7), pred, gts, 1)
    for key, value in first.merge(second).state().items():
        np.testing.assert_array_equal(value, whole.state()[key])
    plain = whole.compute()["odsF"]
    interpolated = EdgeMetric(num_thresholds=7, interpolated=True)
    interpolated.load_state(whole.state())
    assert 0 < plain < 100
    assert interpolated.compute()["odsF"] >= plain
    with pytest.raises(ValueError, match="cannot merge"):
        whole.merge(EdgeMetric(num_thresholds=9))
    with pytest.raises(ValueError, match="sigmoid"):
        whole.update(pred * 10, gts)


# ------------------------------------------------------------------------------------------------
# Delta_m, directions, factory
# ------------------------------------------------------------------------------------------------
def test_delta_m_with_headline_floats():
    results = {"semseg": 40.0, "depth": 0.50, "saliency": 60.0}
    references = {"semseg": 38.0, "depth": 0.55}      # saliency has no reference: not counted
    # semseg: +(40 - 38) / 38 * 100 = 5.2632;  depth: -(0.50 - 0.55) / 0.55 * 100 = 9.0909
    expected = ((40 - 38) / 38 * 100 + (0.55 - 0.50) / 0.55 * 100) / 2
    assert delta_m(results, references) == pytest.approx(expected)


def test_delta_m_with_metric_dicts_and_overrides():
    results = {"normals": {"mean": 20.0, "median": 15.0}, "edges": {"odsF": 70.0},
               "parts": {"mIoU": 50.0, "maxF": 1.0}}
    references = {"normals": {"mean": 25.0, "median": 14.0}, "edges": {"odsF": 72.0},
                  "parts": {"mIoU": 55.0, "maxF": 1.0}}
    # normals (mean, lower better): -(20 - 25) / 25 = +20 %; edges: (70 - 72) / 72 = -2.7778 %;
    # parts: headline mIoU (first in HEADLINE_METRICS): (50 - 55) / 55 = -9.0909 %
    expected = (20.0 + (70 - 72) / 72 * 100 + (50 - 55) / 55 * 100) / 3
    assert delta_m(results, references) == pytest.approx(expected)
    # a user task given as floats needs its direction
    with pytest.raises(ValueError, match="higher_is_better"):
        delta_m({"road": 0.2}, {"road": 0.25})
    assert delta_m({"road": 0.2}, {"road": 0.25}, higher_is_better={"road": False}) == pytest.approx(20.0)
    assert delta_m({"semseg": 40.0}, {"semseg": 50.0}, higher_is_better={"semseg": False}) == pytest.approx(20.0)


def test_delta_m_errors():
    with pytest.raises(ValueError, match="no task in common"):
        delta_m({"semseg": 1.0}, {"depth": 1.0})
    with pytest.raises(ValueError, match="non-zero"):
        delta_m({"semseg": 1.0}, {"semseg": 0.0})
    with pytest.raises(ValueError, match="headline"):
        delta_m({"x": {"foo": 1.0}}, {"x": {"foo": 2.0}})
    with pytest.raises(ValueError, match="metric dict in both"):
        delta_m({"semseg": 1.0}, {"semseg": {"mIoU": 2.0}})


def test_directions_and_metrics_agree_with_task_kinds():
    assert METRIC_DIRECTIONS["mIoU"] and METRIC_DIRECTIONS["odsF"] and METRIC_DIRECTIONS["maxF"]
    assert not METRIC_DIRECTIONS["rmse"] and not METRIC_DIRECTIONS["mean"]
    assert set(HEADLINE_METRICS) <= set(METRIC_DIRECTIONS)
    expected = {"segmentation": SegmentationMetric, "depth": DepthMetric, "normals": NormalsMetric,
                "edges": EdgeMetric, "saliency": SaliencyMetric}
    for name, expected_type in expected.items():
        kind = KINDS[name]
        metric = kind.build_metric(3)
        assert type(metric) is expected_type
        assert metric.keys == kind.metric_keys
        assert METRIC_DIRECTIONS[kind.headline] == kind.higher_is_better
    assert KINDS["segmentation"].build_metric(21, {"ignore_index": 0}).ignore_index == 0
    assert KINDS["edges"].build_metric(1, {"num_thresholds": 9}).thresholds.size == 9


def test_metrics_know_no_tasks_and_build_by_class():
    """ufl.metrics sits below the task catalogue: a task given as floats needs its direction from
    the caller (ufl.evaluation.delta_m fills in the built-in ones), and a metric is built from a
    task's options by its class, without a kind name."""
    import ufl.metrics

    with pytest.raises(ValueError, match="higher_is_better"):
        ufl.metrics.delta_m({"semseg": 40.0}, {"semseg": 38.0})
    # +(40 - 38) / 38 * 100 = 5.2632 %, as delta_m of ufl.evaluation gives for the built-in semseg
    assert ufl.metrics.delta_m({"semseg": 40.0}, {"semseg": 38.0}, {"semseg": True}) == pytest.approx(200 / 38)
    assert delta_m({"semseg": 40.0}, {"semseg": 38.0}) == pytest.approx(200 / 38)
    segmentation = SegmentationMetric.build(num_classes=4, ignore_index=0)
    assert (type(segmentation), segmentation.num_classes, segmentation.ignore_index) == (SegmentationMetric, 4, 0)
    assert type(DepthMetric.build(num_classes=4)) is DepthMetric   # num_classes ignored where not needed
    assert EdgeMetric.build(num_classes=1, num_thresholds=5).thresholds.size == 5
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationMetric.build()


def test_metrics_import_only_downward():
    """The package imports no ufl module above it (task specs, datasets, training, workspace)."""
    import ast

    import ufl.metrics

    allowed = {"ufl.errors", "ufl.registry", "ufl.labels", "ufl.tensors", "ufl.evalcache"}
    package = Path(ufl.metrics.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = "ufl.metrics" if node.level == 1 else "ufl"
                name = f"{target}.{node.module}" if node.module else target
                assert name.startswith("ufl.metrics") or name in allowed, f"{path.name} imports {name}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(n == "ufl" or n.startswith("ufl.") for n in names), f"{path.name}: {names}"


@pytest.mark.slow
def test_edge_workers_from_a_plain_script_without_main_guard(tmp_path):
    """A user's script with no `if __name__ == "__main__":` guard evaluates edges in worker
    processes (the README's API snippet is such a script): the workers must not re-run it."""
    import json
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("macOS and Windows spawn the edge workers: scripts need the __main__ guard there")
    script = tmp_path / "edges.py"
    script.write_text(
        "import json\n"
        "import numpy as np\n"
        "from ufl.metrics import EdgeMetric\n"
        "print('script body runs', flush=True)\n"
        "edges = np.zeros((4, 40, 48)); edges[:, 10, 5:40] = 1; edges[:, 5:35, 30] = 1\n"
        "pred = np.clip(0.6 * edges + 0.5 * np.random.default_rng(3).random(edges.shape), 0, 1)\n"
        "metric = EdgeMetric(num_thresholds=5, workers=2)\n"
        "metric.update(pred, edges)\n"
        "print(json.dumps(metric.compute()))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[1]),
                                                                     os.environ.get("PYTHONPATH")] if p)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines.count("script body runs") == 1  # the workers did not run the script again
    here = EdgeMetric(num_thresholds=5)
    edges = np.zeros((4, 40, 48))
    edges[:, 10, 5:40] = 1
    edges[:, 5:35, 30] = 1
    here.update(np.clip(0.6 * edges + 0.5 * np.random.default_rng(3).random(edges.shape), 0, 1), edges)
    assert json.loads(lines[-1]) == here.compute()
