"""The CUDA paths: AMP pretraining, GPU feature caching, head training and drift-free evaluation.

Skipped without a CUDA GPU (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

import math

import numpy as np
import pytest
import torch

from feature_cache import FeatureCacheReader
from ufl.checkpoint import load_checkpoint
from ufl.models import Backbone
from ufl.training import Callback
from ufl.training.pretrain import PretrainConfig, pretrain
from ufl.workspace import HeadTrainingConfig, Workspace

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

NYUD_SIZE = (64, 96)
PASCAL_SIZE = (64, 64)


def _workspace(root):
    torch.manual_seed(0)
    return Workspace.create(root, Backbone("hrnet_w18_small_v2", warn_random_init=False), "test")


class StopAfterFirstEpoch(Callback):
    def after_epoch(self, trainer, state):
        raise KeyboardInterrupt


def test_amp_pretrain_on_cuda_keeps_float32_weights_and_resumes(synthetic_root, tmp_path):
    def config(resume=False):
        return PretrainConfig(out=str(tmp_path / "run"), data_root=str(synthetic_root), size=NYUD_SIZE, epochs=2,
                              batch_size=4, workers=2, device="cuda", progress=False, edge_thresholds=5,
                              resume=resume)

    with pytest.raises(KeyboardInterrupt):
        pretrain(config(), callbacks=[StopAfterFirstEpoch()])
    assert load_checkpoint(tmp_path / "run").epoch == 1
    result = pretrain(config(resume=True))
    assert all(math.isfinite(v) for task in result.metrics.values() for v in task.values())
    ckpt = load_checkpoint(tmp_path / "run", True)
    assert ckpt.epoch == 2 and set(result.metrics) == {"semseg", "depth", "normals", "edges"}
    # AMP computes in bfloat16/float16, but the master weights and the file stay float32
    assert {v.dtype for v in ckpt.model_state.values() if v.is_floating_point()} == {torch.float32}


def test_a_gpu_cache_matches_the_cpu_cache(synthetic_root, tmp_path):
    caches = []
    for device, workers in (("cpu", 0), ("cuda", 2)):
        ws = _workspace(tmp_path / f"on-{len(caches)}")
        ws.cache_features("pascal", ["val"], data_root=synthetic_root, size=PASCAL_SIZE, device=device,
                          progress=False, batch_size=2, workers=workers)
        with FeatureCacheReader(ws.cache_file("pascal", "val", 1), ws.fingerprint) as reader:
            caches.append(reader.read_all())
    (cpu_features, cpu_targets, _), (gpu_features, gpu_targets, _) = caches
    for cpu, gpu in zip(cpu_features, gpu_features):  # float16 autocast on the GPU: close, not equal
        scale = float(np.abs(cpu).max())
        np.testing.assert_allclose(gpu, cpu, atol=0.02 * scale)
    for task, values in cpu_targets.items():  # targets never touch the GPU
        np.testing.assert_array_equal(gpu_targets[task], values)


def test_heads_trained_on_cuda_evaluate_without_drift(synthetic_root, tmp_path):
    ws = _workspace(tmp_path / "ws")
    ws.cache_features("pascal", data_root=synthetic_root, size=PASCAL_SIZE, device="cuda", progress=False)
    config = HeadTrainingConfig(epochs=2, batch_size=4, lr=1e-3)
    ws.add_task("saliency", config=config, device="cuda", progress=False)
    ws.add_task("human_parts", config=config, device="cuda", progress=False)
    assert next(ws.head("saliency").parameters()).dtype == torch.float32
    first = ws.evaluate(device="cuda", progress=False).to_dict()
    again = ws.evaluate(device="cuda", progress=False).to_dict()
    for name in ("saliency", "human_parts"):
        assert first["tasks"][name]["drift"] == 0.0
        assert again["tasks"][name]["metrics"] == first["tasks"][name]["metrics"]
    # the same heads on the CPU: the numbers agree up to GPU arithmetic
    on_cpu = ws.evaluate(device="cpu", progress=False).to_dict()
    assert on_cpu["tasks"]["saliency"]["metrics"]["maxF"] == pytest.approx(
        first["tasks"]["saliency"]["metrics"]["maxF"], abs=1.0)
