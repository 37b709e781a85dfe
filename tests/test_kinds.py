"""Task kinds as objects (issue 15, item 1): the registry, and a new kind added by one object
registered from this file, then cached, trained and evaluated through the CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ufl.cli import main
from ufl.errors import SpecError
from ufl.kinds import KINDS, MODALITIES, Kind, Modality, get_kind, register_kind, unregister_kind
from ufl.losses import LOSSES
from ufl.metrics import METRIC_DIRECTIONS, Metric
from ufl.taskspec import TaskSpec
from ufl.workspace import Workspace
from ufl.workspace.targets import open_cache


# -- the registry ---------------------------------------------------------------------------------
def test_the_five_built_in_kinds_and_their_directions():
    assert sorted(KINDS) == ["depth", "edges", "normals", "saliency", "segmentation"]
    assert sorted(MODALITIES) == ["binary", "depth", "label", "normals"]
    assert {name: (k.headline, k.higher_is_better, k.default_loss, k.modality.name) for name, k in KINDS.items()} == {
        "segmentation": ("mIoU", True, "cross_entropy", "label"), "depth": ("rmse", False, "l1", "depth"),
        "normals": ("mean", False, "normals_l1", "normals"), "edges": ("odsF", True, "balanced_bce", "binary"),
        "saliency": ("maxF", True, "balanced_bce", "binary")}
    assert get_kind("depth") is KINDS["depth"] and get_kind("normals").fixed_channels == 3
    assert get_kind("normals").direction("11.25") and not get_kind("normals").direction("median")
    for kind in KINDS.values():
        kind.check(directions=True)  # every metric key has a direction (not checked at import: no torch there)
        assert kind.build_metric(3).keys == kind.metric_keys


def test_an_unknown_kind_is_one_spec_error_listing_the_known_ones():
    with pytest.raises(SpecError, match="unknown task kind 'flow'; known kinds: depth, edges, normals, saliency, "
                                        "segmentation"):
        get_kind("flow")
    with pytest.raises(SpecError, match="kind 'flow' is not one of"):
        TaskSpec.from_dict({"name": "f", "kind": "flow", "channels": 2})
    with pytest.raises(TypeError):
        KINDS["flow"] = get_kind("depth")  # read-only: register_kind is the way in


def test_registration_refuses_a_taken_name_a_clashing_modality_and_an_inconsistent_kind():
    class Depth2(type(get_kind("depth"))):
        pass

    with pytest.raises(SpecError, match="task kind 'depth' is already registered"):
        register_kind(Depth2)

    class OtherDepthModality(Modality):
        name = "depth"

    class Clash(Kind):
        name, modality = "clash", OtherDepthModality()
        losses, metric_keys, headline = ("l1",), ("rmse",), "rmse"

    with pytest.raises(SpecError, match="modality name 'depth' is taken by DepthModality"):
        register_kind(Clash)

    class NoDirection(Clash):
        name = "no_direction"
        modality = Modality()
        modality.name = "plain"
        metric_keys = ("made_up",)
        headline = "made_up"

    with pytest.raises(SpecError, match="metric 'made_up' of task kind 'no_direction' has no direction"):
        register_kind(NoDirection)
    with pytest.raises(SpecError, match="takes a ufl.kinds.Kind"):
        register_kind("depth")
    assert "clash" not in KINDS and "no_direction" not in KINDS and "plain" not in MODALITIES


# -- a new kind from this file ---------------------------------------------------------------------
class FlowModality(Modality):
    """2-D motion (u right, v down) in units of the image width: unchanged by a resize, negated in u
    by a flip, scaled by a zoom and rotated with the image."""

    name = "toy_flow"

    def flipped(self, x):
        return x * torch.tensor([-1.0, 1.0], dtype=x.dtype).view(2, 1, 1)

    def warped(self, x, scale, angle):
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        return scale * torch.stack([c * x[0] + s * x[1], -s * x[0] + c * x[1]])


class EPEMetric(Metric):
    """End-point error: the mean Euclidean distance between predicted and true motion vectors."""

    keys = ("epe",)

    def _empty_state(self):
        return {"sum": np.zeros((), np.float64), "count": np.zeros((), np.int64)}

    def update(self, pred, target):
        error = torch.linalg.vector_norm(pred.double() - target.double(), dim=1)
        self._state["sum"] += float(error.sum())
        self._state["count"] += error.numel()

    def compute(self):
        return {"epe": float(self._state["sum"] / max(int(self._state["count"]), 1))}


class EPELoss(torch.nn.Module):
    def forward(self, pred, target):
        return torch.linalg.vector_norm(pred - target.to(pred.dtype), dim=1).mean()


class ToyFlow(Kind):
    name, modality, fixed_channels = "toy_flow", FlowModality(), 2
    losses, metric_keys, headline, metric = ("toy_epe",), ("epe",), "epe", EPEMetric


@pytest.fixture
def toy_flow(monkeypatch):
    """The user's one file: a loss, a metric direction, the kind."""
    monkeypatch.setitem(METRIC_DIRECTIONS, "epe", False)
    if "toy_epe" not in LOSSES:
        LOSSES.register("toy_epe", lambda spec: EPELoss())
    kind = register_kind(ToyFlow)
    yield kind
    unregister_kind("toy_flow")
    assert "toy_flow" not in KINDS and "toy_flow" not in MODALITIES


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_a_kind_registered_here_is_cached_trained_and_evaluated_through_the_cli(toy_flow, tmp_path, write, rng):
    root = tmp_path / "flowdata"
    flows = {}
    for i in range(6):
        write.image(root / "images" / f"im{i}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        flows[f"im{i}"] = rng.uniform(-0.2, 0.2, (64, 64, 2)).astype(np.float32)  # (H, W, 2), width units
        write.npy(root / "motion" / f"im{i}.npy", flows[f"im{i}"])
    write.text(root / "splits" / "train.txt", [f"im{i}" for i in range(4)])
    write.text(root / "splits" / "val.txt", ["im4", "im5"])
    spec = tmp_path / "motion.yaml"
    spec.write_text("name: motion\nkind: toy_flow\nchannels: 2\ntarget:\n  format: npy\n")
    assert TaskSpec.from_dict({"name": "m", "kind": "toy_flow", "channels": 2}).higher_is_better is False
    with pytest.raises(SpecError, match="a toy_flow task has 2 output channel"):
        TaskSpec.from_dict({"name": "m", "kind": "toy_flow", "channels": 3})

    ws = Workspace.from_backbone(tmp_path / "ws", "resnet18", pretrained=None)
    _invoke("cache-features", "--workspace", ws.root, "--dataset", "folder", "--root", root, "--spec", spec,
            "--size", "64x64", "--views", "2", "--device", "cpu")
    record = ws.find_cache("flowdata", "train")
    rows = open_cache(ws, record, ["motion"])
    assert len(rows) == 8 and rows[0]["motion"].dtype == torch.float32 and rows[0]["motion"].shape == (2, 64, 64)
    first = torch.from_numpy(flows["im0"]).permute(2, 0, 1)
    assert torch.equal(rows[0]["motion"], first)  # view 0: the file as it is, (C, H, W)
    assert torch.equal(rows[1]["motion"], FlowModality().flipped(first.flip(-1)))  # view 1: the kind's flip

    _invoke("add-task", "--workspace", ws.root, "--spec", spec, "--dataset", "folder", "--epochs", "1",
            "--batch-size", "2", "--device", "cpu")
    assert ws.tasks["motion"]["dataset"] == "flowdata" and ws.spec("motion").kind == "toy_flow"
    result = _invoke("evaluate", "--workspace", ws.root, "--all-tasks", "--json", "--device", "cpu")
    report = json.loads(result.stdout)["tasks"]["motion"]
    assert report["drift"] == 0.0 and set(report["metrics"]) == {"epe"}
    assert 0.0 < report["metrics"]["epe"] < 1.0  # a mean distance in image widths (targets within 0.2 * sqrt(2))


def test_the_readme_kind_file_registers_a_working_kind(monkeypatch):
    """The README's "A new task kind" file, run as it is: the kind, its loss and its metric work."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme.split("# flow_kind.py\n", 1)[1].split("```", 1)[0]
    monkeypatch.setitem(METRIC_DIRECTIONS, "epe", True)  # restored (removed) after the test
    try:
        exec(compile(code, "README.md (flow_kind.py)", "exec"), {})
        kind = get_kind("flow")
        spec = TaskSpec.from_dict({"name": "motion", "kind": "flow", "channels": 2, "target": {"format": "npy"}})
        assert spec.loss == "epe" and spec.metric == "epe" and spec.higher_is_better is False
        pred, target = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
        target[:, 0] = 3.0
        target[:, 1] = 4.0
        assert float(LOSSES.get("epe")(spec)(pred, target)) == 5.0
        metric = kind.build_metric(2)
        metric.update(pred, target)
        assert metric.compute() == {"epe": 5.0}
        x = torch.tensor([1.0, 0.0]).view(2, 1, 1)
        assert torch.allclose(kind.modality.warped(x, 2.0, 90.0).flatten(), torch.tensor([0.0, -2.0]), atol=1e-6)
        assert torch.equal(kind.modality.flipped(x).flatten(), torch.tensor([-1.0, 0.0]))
    finally:
        if "flow" in KINDS:
            unregister_kind("flow")
