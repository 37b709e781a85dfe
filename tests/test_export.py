"""``ufl export``: one ONNX graph (backbone once, one output per task) that onnxruntime runs like PyTorch."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from ufl.cli import main
from ufl.workspace import HeadTrainingConfig, Workspace


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def export_ws(synthetic_root, tmp_path_factory):
    torch.manual_seed(0)
    ws = Workspace.from_backbone(tmp_path_factory.mktemp("export") / "ws", "convnext_atto", pretrained=None)
    ws.cache_features("pascal", data_root=synthetic_root, size=(64, 64), device="cpu", progress=False, batch_size=4,
                      workers=0)
    for task in ("saliency", "semseg"):
        ws.add_task(task, config=HeadTrainingConfig(epochs=1, batch_size=4, lr=1e-3), device="cpu", progress=False,
                    workers=0)
    return ws


def _reference(ws, tasks, images):
    """PyTorch through the workspace's own backbone and heads (not the export module's graph)."""
    with torch.no_grad():
        features = ws.backbone("cpu")(images)
        return [ws.head(t)(features, out_size=images.shape[-2:])["out"].numpy() for t in tasks]


@pytest.mark.slow
def test_dynamic_export_runs_in_onnxruntime_at_other_batches_and_sizes(export_ws, tmp_path):
    out = _invoke("export", "--workspace", export_ws.root, "--out", tmp_path / "model.onnx", "--dynamic", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output.strip().splitlines()[-1])
    assert result["passed"] and result["tasks"] == ["saliency", "semseg"] and result["check_images"] == 4
    assert max(result["max_rel_diff"].values()) <= 1e-4
    model = onnx.load(str(tmp_path / "model.onnx"))
    assert [o.name for o in model.graph.output] == ["saliency", "semseg"]
    assert [i.name for i in model.graph.input] == ["images"]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    images = torch.rand(3, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    got = session.run(None, {"images": images.numpy()})
    for g, ref in zip(got, _reference(export_ws, ["saliency", "semseg"], images)):
        assert g.shape == ref.shape
        np.testing.assert_allclose(g, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=0)
    assert got[1].shape == (3, 21, 96, 128)


@pytest.mark.slow
def test_static_export_of_chosen_tasks_and_its_report(export_ws, tmp_path):
    out = _invoke("export", "--workspace", export_ws.root, "--out", tmp_path / "sal.onnx", "--tasks", "saliency",
                  "--check", "2")
    assert out.exit_code == 0, out.output
    assert "saliency: max |onnx - torch|" in out.output and "checked on 2 val image(s) with onnxruntime: passed" in out.output
    session = ort.InferenceSession(str(tmp_path / "sal.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["saliency"]
    assert list(session.get_inputs()[0].shape) == [2, 3, 64, 64]


@pytest.mark.slow
def test_export_refusals(export_ws, tmp_path):
    out = _invoke("export", "--workspace", export_ws.root, "--out", tmp_path / "m.onnx", "--tasks", "depth")
    assert out.exit_code == 1 and "task 'depth' is not registered" in out.output
    out = _invoke("export", "--workspace", export_ws.root, "--out", tmp_path / "m.txt")
    assert out.exit_code == 1 and "ending in .onnx" in out.output
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.glob(".*tmp"))
