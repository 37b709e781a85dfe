"""ufl.evaluation: evaluation at each image's original size, and the per-dataset metric settings."""

import math

import numpy as np
import pytest
import torch
from torch.nn.functional import softplus

import ufl.metrics.edge_matching
from ufl import evaluation
from ufl.evaluation import (OriginalSizeDataset, collate_original_size, evaluate, make_metric, resize_logits)
from ufl.metrics import EdgeMetric
from ufl.taskspec import TaskSpec, get_spec
from ufl.workspace.evaluate import recorded_protocol

TOY = TaskSpec.from_dict({"name": "toy", "kind": "segmentation", "channels": {"folder": 3}})
CPU = torch.device("cpu")


def _two_images_of_different_sizes():
    """Image A is 2x4, image B 4x2; the network works at 2x2. Targets are padded to 4x4 with
    garbage that must never be read (the crop to each image's own size removes it)."""
    # 3-class logits at the working size. A: every row is (5, 0, 4) then (0, 5, 4); B: the top row
    # is (5, 0, 0), the bottom row (0, 5, 0).
    seg = torch.zeros(2, 3, 2, 2)
    seg[0, :, :, 0] = torch.tensor([5.0, 0.0, 4.0])[:, None]
    seg[0, :, :, 1] = torch.tensor([0.0, 5.0, 4.0])[:, None]
    seg[1, :, 0, :] = torch.tensor([5.0, 0.0, 0.0])[:, None]
    seg[1, :, 1, :] = torch.tensor([0.0, 5.0, 0.0])[:, None]
    depth = torch.zeros(2, 1, 2, 2)
    depth[0, 0] = torch.tensor([[1.0, 3.0], [1.0, 3.0]])
    depth[1, 0] = torch.tensor([[2.0, 2.0], [6.0, 6.0]])

    labels = torch.full((2, 4, 4), 1, dtype=torch.int64)              # garbage padding: class 1
    labels[0, :2, :4] = torch.tensor([[0, 2, 1, 1], [0, 2, 2, 255]])
    labels[1, :4, :2] = torch.tensor([[0, 0], [0, 1], [1, 1], [1, 1]])
    # Depth: the head's raw output is resized, then softplus gives metres. Ground truth = the
    # softplus of the hand-interpolated raw values minus these errors (0 m = invalid):
    metres = torch.full((2, 1, 4, 4), 99.0)                             # garbage padding: 99 m
    raw_a = torch.tensor([[1.0, 1.5, 2.5, 3.0], [1.0, 1.5, 2.5, 3.0]])
    raw_b = torch.tensor([[2.0, 2.0], [3.0, 3.0], [5.0, 5.0], [6.0, 6.0]])
    metres[0, 0, :2, :4] = softplus(raw_a) - torch.tensor([[0.0, 0.5, -0.5, 0.0], [0.0, -0.5, 0.5, 0.0]])
    metres[0, 0, 1, 3] = 0.0
    metres[1, 0, :4, :2] = softplus(raw_b) - torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    batch = {"toy": labels, "depth": metres, "orig_size": torch.tensor([[2, 4], [4, 2]])}
    return batch, {"toy": seg, "depth": depth}


def test_original_size_evaluation_by_hand():
    batch, logits = _two_images_of_different_sizes()
    specs = {"toy": TOY, "depth": get_spec("depth")}
    results = evaluate(lambda b: logits, [batch], specs, "folder", CPU, progress=False)
    # Bilinear 2 -> 4 (align_corners=False) samples [a, 3/4 a + 1/4 b, 1/4 a + 3/4 b, b].
    # Segmentation, interpolated before the argmax: A's rows become (5,0,4), (3.75,1.25,4),
    # (1.25,3.75,4), (0,5,4) -> classes [0, 2, 2, 1] (class 2 appears only because the logits are
    # interpolated; labels resized after the argmax would read [0, 0, 1, 1]); B's rows -> [0, 0, 1, 1].
    # Confusion over the 15 labelled pixels: class 0 TP 5 FP 1 FN 0; class 1 TP 5 FP 0 FN 2;
    # class 2 TP 3 FP 1 FN 0.
    assert results["toy"]["mIoU"] == pytest.approx(100 * (5 / 6 + 5 / 7 + 3 / 4) / 3)
    # Depth: A's raw rows become [1, 1.5, 2.5, 3]: squared errors 0, .25, .25, 0 | 0, .25, .25, (0 m:
    # invalid); B's raw columns become [2, 3, 5, 6]: all exact but the last pixel (error 2): 4.
    # RMSE = sqrt(5 / 15).
    assert results["depth"]["rmse"] == pytest.approx(math.sqrt(5 / 15))


def test_original_size_is_not_the_working_size():
    batch, logits = _two_images_of_different_sizes()
    working = {"toy": batch["toy"][:, :2, :2], "depth": batch["depth"][..., :2, :2]}
    specs = {"toy": TOY, "depth": get_spec("depth")}
    at_working = evaluate(lambda b: logits, [working], specs, "folder", CPU, progress=False)
    at_original = evaluate(lambda b: logits, [batch], specs, "folder", CPU, progress=False)
    assert at_working["depth"]["rmse"] != pytest.approx(at_original["depth"]["rmse"])


def test_resize_logits_matches_the_hand_formula():
    x = torch.tensor([[[[2.0, 6.0]]]])
    assert resize_logits(x, (1, 4)).flatten().tolist() == [2.0, 3.0, 5.0, 6.0]
    assert resize_logits(x, (1, 2)) is not None and torch.equal(resize_logits(x, (1, 2)), x)


class _Items(torch.utils.data.Dataset):
    """A dataset of two images of different sizes in the sample contract of ufl.datasets.base."""

    def __init__(self):
        self.sizes = [(2, 4), (4, 2)]

    def __len__(self):
        return 2

    def __getitem__(self, i):
        h, w = self.sizes[i]
        return {"image": torch.rand(3, h, w), "id": str(i),
                "toy": torch.arange(h * w).reshape(h, w) % 3,
                "depth": torch.full((1, h, w), float(i + 1)),
                "meta": {"orig_size": torch.tensor([h, w])}}


def test_original_size_dataset_and_collate_keep_the_targets_untouched():
    data = OriginalSizeDataset(_Items(), (2, 2))
    batch = collate_original_size([data[0], data[1]])
    assert batch["image"].shape == (2, 3, 2, 2)
    assert batch["orig_size"].tolist() == [[2, 4], [4, 2]]
    assert batch["toy"].shape == (2, 4, 4) and batch["depth"].shape == (2, 1, 4, 4)
    assert torch.equal(batch["toy"][0, :2, :4], _Items()[0]["toy"])
    assert torch.equal(batch["toy"][1, :4, :2], _Items()[1]["toy"])
    assert batch["id"] == ["0", "1"]
    # a prediction equal to the ground truth scores perfectly once each image is cropped back
    raw = torch.log(torch.expm1(torch.tensor([1.0, 2.0])))  # softplus^-1: the head's output for 1 m and 2 m
    depth = torch.stack([torch.full((1, 2, 2), float(raw[0])), torch.full((1, 2, 2), float(raw[1]))])
    result = evaluate(lambda b: {"depth": depth}, [batch], {"depth": get_spec("depth")}, "nyud", CPU,
                      progress=False)
    assert result["depth"]["rmse"] == pytest.approx(0.0, abs=1e-7)


# -- edges: the benchmark's settings per dataset ----------------------------------------------------
def _edge_pair():
    gt = np.zeros((1, 48, 64), np.float32)
    gt[0, 20, 5:60] = 1
    return np.clip(gt * 0.9, 0, 1), gt


@pytest.mark.parametrize("dataset, max_dist", [("nyud", 0.011), ("pascal", 0.0075), ("folder", 0.0075)])
def test_edge_settings_per_dataset_reach_the_matcher(monkeypatch, dataset, max_dist):
    calls = []
    original = ufl.metrics.edge_matching._match_pixels

    def spy(predicted, edges, distance):
        calls.append(distance)
        return original(predicted, edges, distance)

    monkeypatch.setattr(ufl.metrics.edge_matching, "_match_pixels", spy)
    monkeypatch.setattr(evaluation, "edge_workers", lambda: 0)  # match in this process, where the spy is
    metric = make_metric(get_spec("edges"), dataset, edge_thresholds=3)
    assert (metric.max_dist, metric.thin) == (max_dist, True)
    metric.update(*_edge_pair())
    assert calls and set(calls) == {max_dist}
    # a registered record's own settings win over the dataset's (here: an old record, {} = defaults)
    assert make_metric(get_spec("edges"), dataset, 3, options={}).max_dist == 0.0075


def test_edge_thinning_setting_changes_the_matching():
    gt = np.zeros((1, 64, 128), np.float32)                  # a rectangle outline
    gt[0, 20, 40:91] = gt[0, 50, 40:91] = 1
    gt[0, 20:51, 40] = gt[0, 20:51, 90] = 1
    thick = np.zeros((1, 64, 128), np.float32)                # a 7-pixel-wide ring around it
    thick[0, 17:54, 37:94] = 0.9
    thick[0, 24:47, 44:87] = 0.0
    thinned, unthinned = EdgeMetric(num_thresholds=3), EdgeMetric(num_thresholds=3, thin=False)
    thinned.update(thick, gt)
    unthinned.update(thick, gt)
    assert thinned.compute()["odsF"] > 90.0
    assert unthinned.compute()["odsF"] < 30.0               # P <= 1/7 without thinning
    with pytest.raises(ufl.metrics.MetricInputError):
        thinned.merge(unthinned)                             # other settings: counts not summable


def test_records_without_a_protocol_are_working_size_with_default_metrics():
    assert recorded_protocol({"eval": {"cache": "x"}}) == {"resolution": "working", "metric_options": {}}
    record = {"eval": {"resolution": "original", "metric_options": {"max_dist": 0.011, "thin": True}}}
    assert recorded_protocol(record) == record["eval"]
