"""ufl.evaluation's public functions on hand-computed cases: ``postprocess`` per task kind, and
``evaluate`` of a tiny model at the working size (metrics pooled over the split, per kind)."""

import math

import pytest
import torch
from torch import nn
from torch.nn.functional import softplus
from torch.utils.data import DataLoader

from ufl.evaluation import evaluate, postprocess
from ufl.taskspec import TaskSpec

CPU = torch.device("cpu")


def _spec(name, kind, channels):
    return TaskSpec.from_dict({"name": name, "kind": kind, "channels": {"folder": channels}})


SPECS = {"seg": _spec("seg", "segmentation", 3), "depth": _spec("depth", "depth", 1),
         "normals": _spec("normals", "normals", 3), "sal": _spec("sal", "saliency", 1)}


# -- postprocess ----------------------------------------------------------------------------------
def test_segmentation_logits_become_labels_by_argmax():
    logits = torch.tensor([[[[0.0, 2.0, -1.0]], [[1.0, 0.0, -2.0]], [[0.5, 1.0, 3.0]]]])  # (1, 3, 1, 3)
    labels = postprocess("segmentation", logits.half())
    assert labels.shape == (1, 1, 3) and labels.dtype == torch.int64
    assert labels.tolist() == [[[1, 0, 2]]]


def test_depth_goes_through_softplus_unless_recorded_as_identity():
    raw = torch.tensor([[[[0.0, 1.0, -30.0]]]])
    metres = postprocess("depth", raw)
    assert metres.shape == (1, 1, 1, 3)
    assert metres[0, 0, 0, 0].item() == pytest.approx(math.log(2))            # softplus(0) = ln 2
    assert metres[0, 0, 0, 1].item() == pytest.approx(math.log(1 + math.e))
    assert 0 < metres[0, 0, 0, 2].item() < 1e-12                                # positive even far below 0
    assert torch.equal(postprocess("depth", raw, "identity"), raw)
    assert torch.equal(postprocess("depth", raw, "softplus"), metres)


def test_normals_become_unit_vectors():
    raw = torch.tensor([3.0, 0.0, -4.0]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    unit = postprocess("normals", raw)
    assert unit.shape == (2, 3, 2, 2)
    assert torch.allclose(unit[:, :, 1, 1], torch.tensor([[0.6, 0.0, -0.8]] * 2))


@pytest.mark.parametrize("kind", ["edges", "saliency"])
def test_edges_and_saliency_become_probabilities(kind):
    raw = torch.tensor([[[[0.0, math.log(3.0), -math.log(3.0)]]]])
    assert postprocess(kind, raw).flatten().tolist() == pytest.approx([0.5, 0.75, 0.25])


def test_an_unknown_kind_is_refused():
    with pytest.raises(Exception, match="keypoints"):
        postprocess("keypoints", torch.zeros(1, 1, 2, 2))


# -- evaluate -------------------------------------------------------------------------------------
class Tiny(nn.Module):
    """One 1x1 convolution per task on a 4-channel image; channel k feeds task k only, so each
    task's raw output is an affine map of its own input channel (set by hand below)."""

    def __init__(self):
        super().__init__()
        self.heads = nn.ModuleDict({"seg": nn.Conv2d(4, 3, 1), "depth": nn.Conv2d(4, 1, 1),
                                    "normals": nn.Conv2d(4, 3, 1), "sal": nn.Conv2d(4, 1, 1)})
        with torch.no_grad():
            for conv in self.heads.values():
                conv.weight.zero_()
                conv.bias.zero_()
            self.heads["seg"].weight[:, 0, 0, 0] = torch.tensor([1.0, 0.0, -1.0])  # logits (x, 0.5, -x)
            self.heads["seg"].bias[1] = 0.5
            self.heads["depth"].weight[0, 1] = 1.0                                  # raw depth x + 2
            self.heads["depth"].bias[0] = 2.0
            self.heads["normals"].weight[0, 2] = 1.0                                # vector (x, 1, 0)
            self.heads["normals"].bias[1] = 1.0
            self.heads["sal"].weight[0, 3] = 8.0                                    # sigmoid(8 x)

    def forward(self, image):
        return {name: head(image) for name, head in self.heads.items()}


def _split():
    """Two 2x2 images (a loader of batch size 1) with their inputs and targets, 255 / 0 = void."""
    images = [
        {"seg": [[1.0, 0.0], [-1.0, 0.2]],          # labels [[0, 1], [2, 1]]
         "depth": [[1.0, 0.0], [-1.0, 0.2]],        # raw [[3, 2], [1, 2.2]]
         "normals": [[1.0, 0.0], [-1.0, 0.2]],      # angles to (0, 1, 0): 45, 0, 45, atan(0.2) = 11.31 deg
         "sal": [[1.0, -1.0], [-1.0, 1.0]]},        # salient [[1, 0], [0, 1]] at every threshold
        {"seg": [[-1.0, 2.0], [0.0, 0.0]],          # labels [[2, 0], [1, 1]]
         "depth": [[-1.0, 2.0], [0.0, 0.0]],        # raw [[1, 4], [2, 2]]
         "normals": [[-1.0, 2.0], [0.0, 0.0]],      # 45, atan(2) = 63.43, 0, (0: void target)
         "sal": [[-1.0, -1.0], [1.0, 1.0]]},        # salient [[0, 0], [1, 1]]
    ]
    targets = [
        {"seg": [[0, 1], [1, 255]], "depth": [[3.0, 2.5], [0.0, 2.2]], "sal": [[1.0, 1.0], [0.0, 255.0]],
         "normals_void": []},
        {"seg": [[2, 2], [1, 0]], "depth": [[2.0, 4.0], [2.0, 1.0]], "sal": [[0.0, 1.0], [1.0, 0.0]],
         "normals_void": [(1, 1)]},
    ]
    items = []
    for inputs, target in zip(images, targets):
        image = torch.stack([torch.tensor(inputs[name]) for name in ("seg", "depth", "normals", "sal")])
        normals = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1).repeat(1, 2, 2)
        for i, j in target["normals_void"]:
            normals[:, i, j] = 0.0
        items.append({"image": image, "seg": torch.tensor(target["seg"]),
                      "depth": torch.tensor(target["depth"]).unsqueeze(0), "normals": normals,
                      "sal": torch.tensor(target["sal"]).unsqueeze(0)})
    return DataLoader(items, batch_size=1, shuffle=False)


def _evaluate(**kwargs):
    model = Tiny().eval()
    return evaluate(lambda batch: model(batch["image"]), _split(), SPECS, "folder", CPU, progress=False, **kwargs)


def test_segmentation_iou_is_pooled_over_the_split():
    results = _evaluate(with_details=True)
    # Confusion over the 7 labelled pixels: class 0 TP 1 FP 1 FN 1; class 1 TP 2 FP 1 FN 1; class 2
    # TP 1 FP 1 FN 1. (Per-image means would give (1/2 + 1/3) / 2 = 41.7 instead.)
    assert results["seg"]["mIoU"] == pytest.approx(100 * (1 / 3 + 2 / 4 + 1 / 3) / 3)
    assert results["seg"]["details"]["IoU"] == pytest.approx([100 / 3, 50.0, 100 / 3])


def test_depth_errors_are_pooled_over_valid_pixels_through_the_recorded_activation():
    identity = _evaluate(activations={"depth": "identity"})["depth"]
    # Valid pixels (target > 0): image 1 errors 0, -0.5, 0; image 2 errors -1, 0, 0, 1 -> N = 7.
    assert identity["rmse"] == pytest.approx(math.sqrt(2.25 / 7))
    assert identity["log_rmse"] == pytest.approx(math.sqrt((math.log(2 / 2.5) ** 2 + 2 * math.log(2) ** 2) / 7))
    # The default activation is softplus on the same raw outputs.
    raw = torch.tensor([3.0, 2.0, 2.2, 1.0, 4.0, 2.0, 2.0])
    truth = torch.tensor([3.0, 2.5, 2.2, 2.0, 4.0, 2.0, 1.0])
    expected = math.sqrt(float(((softplus(raw) - truth) ** 2).mean()))
    assert _evaluate()["depth"]["rmse"] == pytest.approx(expected, rel=1e-6)


def test_normal_angles_in_degrees_over_valid_pixels():
    normals = _evaluate()["normals"]
    small, large = math.degrees(math.atan(0.2)), math.degrees(math.atan(2.0))  # 11.31, 63.43
    angles = [45.0, 0.0, 45.0, small, 45.0, large, 0.0]                         # the void pixel is skipped
    # (float32 unit vectors: an angle of 0 comes out within 0.03 degrees of it)
    assert normals["mean"] == pytest.approx(sum(angles) / 7, abs=1e-3)
    assert normals["rmse"] == pytest.approx(math.sqrt(sum(a * a for a in angles) / 7), abs=1e-3)
    assert normals["median"] == pytest.approx(45.0, abs=1e-3)
    assert normals["11.25"] == pytest.approx(100 * 2 / 7)    # 11.31 is not below 11.25
    assert normals["22.5"] == pytest.approx(100 * 3 / 7)
    assert normals["30"] == pytest.approx(100 * 3 / 7)


def test_saliency_precision_and_recall_are_means_over_images():
    sal = _evaluate()["sal"]
    # Image 1 (void pixel skipped): TP 1, FN 1 -> P 1, R 1/2, IoU 1/2. Image 2: TP 1, FP 1, FN 1 ->
    # P 1/2, R 1/2, IoU 1/3. Means: P 3/4, R 1/2 at every threshold (probabilities 0.9997 / 0.0003).
    precision, recall = 0.75, 0.5
    assert sal["maxF"] == pytest.approx(100 * 2 * precision * recall / (precision + recall))        # 60
    assert sal["maxF_b03"] == pytest.approx(100 * 1.3 * precision * recall / (0.3 * precision + recall))
    assert sal["mIoU"] == pytest.approx(100 * (1 / 2 + 1 / 3) / 2)


def test_evaluate_returns_one_entry_per_requested_task_and_keeps_the_model_untouched():
    model = Tiny().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    results = evaluate(lambda batch: model(batch["image"]), _split(), {"seg": SPECS["seg"]}, "folder", CPU,
                       progress=False)
    assert list(results) == ["seg"] and list(results["seg"]) == ["mIoU"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    empty = evaluate(lambda batch: model(batch["image"]), [], {"seg": SPECS["seg"]}, "folder", CPU, progress=False)
    assert math.isnan(empty["seg"]["mIoU"])


# -- make_metric -----------------------------------------------------------------------------------
def test_only_edges_ask_how_many_matching_processes(monkeypatch):
    """The torchrun share of CPUs (LOCAL_WORLD_SIZE) is read for edge matching only: a malformed
    value cannot break the metric of a kind that matches nothing."""
    from ufl.evaluation import make_metric

    from ufl.errors import UflError

    for bad in ("not-a-number", "0", "-2"):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", bad)
        for name in ("seg", "depth", "normals", "sal"):
            assert make_metric(SPECS[name], "folder") is not None
        with pytest.raises(UflError, match=f"^LOCAL_WORLD_SIZE='{bad}' is not a positive integer"):
            make_metric(_spec("edges", "edges", 1), "folder")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    from ufl.runtime import usable_cpus

    cpus = usable_cpus()
    assert make_metric(_spec("edges", "edges", 1), "folder").workers == (cpus if cpus >= 2 else 0)
