"""``ufl probe``: LogME against an independent evidence maximisation, and the command on a workspace."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.optimize import minimize

from ufl.cli import main
from ufl.probe import logme, probe_targets, probe_task
from ufl.taskspec import get_spec
from ufl.workspace import Workspace


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _log_evidence(f: np.ndarray, y: np.ndarray, log_alpha: float, log_beta: float) -> float:
    """log N(y; 0, I / beta + F F^T / alpha), computed directly (the reference)."""
    n = len(y)
    cov = np.eye(n) / np.exp(log_beta) + f @ f.T / np.exp(log_alpha)
    dist = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=torch.float64), torch.from_numpy(cov))
    return float(dist.log_prob(torch.from_numpy(y)))


@pytest.mark.parametrize("n, dim", [(40, 6), (12, 20)])  # more rows than features, and fewer
def test_logme_is_the_maximised_evidence_per_sample(n, dim, rng):
    f = rng.normal(size=(n, dim))
    y = f @ rng.normal(size=dim) + 0.5 * rng.normal(size=n)
    best = minimize(lambda p: -_log_evidence(f, y, p[0], p[1]), x0=[0.0, 0.0], method="Nelder-Mead",
                    options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    assert logme(torch.from_numpy(f), torch.from_numpy(y), tol=1e-10, max_iterations=10000) == \
        pytest.approx(-best.fun / n, abs=1e-6)


def test_logme_averages_columns_and_ranks_informative_features_higher(rng):
    y = rng.normal(size=(500, 2))
    good = np.concatenate([y + 0.1 * rng.normal(size=y.shape), rng.normal(size=(500, 6))], axis=1)
    bad = rng.normal(size=(500, 8))
    assert logme(torch.from_numpy(good), torch.from_numpy(y)) > logme(torch.from_numpy(bad), torch.from_numpy(y)) + 1
    both = logme(torch.from_numpy(good), torch.from_numpy(y))
    assert both == pytest.approx(np.mean([logme(torch.from_numpy(good), torch.from_numpy(y[:, i])) for i in (0, 1)]))
    with pytest.raises(ValueError, match="at least 2 rows"):
        logme(torch.zeros(1, 3), torch.zeros(1))


def test_probe_targets_validity_and_encoding():
    labels = np.array([[0, 2], [255, 1]])
    valid, onehot = probe_targets(get_spec("semseg"), labels, "pascal")
    assert valid.tolist() == [[True, True], [False, True]]
    assert onehot.shape == (2, 2, 21) and onehot[0, 1, 2] == 1 and onehot[0, 1].sum() == 1
    sal = np.array([[[0.0, 1.0], [255.0, 1.0]]], dtype=np.float32)
    valid, values = probe_targets(get_spec("saliency"), sal, "pascal")
    assert valid.tolist() == [[True, True], [False, True]] and values[0, 1, 0] == 1
    normals = np.zeros((3, 1, 2), dtype=np.float32)
    normals[2, 0, 1] = 1
    valid, values = probe_targets(get_spec("normals"), normals, "pascal")
    assert valid.tolist() == [[False, True]] and values[0, 1].tolist() == [0, 0, 1]


@pytest.fixture(scope="module")
def probe_ws(synthetic_root, tmp_path_factory):
    torch.manual_seed(0)
    ws = Workspace.from_backbone(tmp_path_factory.mktemp("probe") / "ws", "resnet18", pretrained=None)
    ws.cache_features("pascal", ["train"], data_root=synthetic_root, size=(64, 64), device="cpu", progress=False,
                      batch_size=4, workers=0)
    return ws


@pytest.mark.slow
def test_probe_scores_every_scale_stores_and_is_deterministic(probe_ws):
    result = probe_task(probe_ws, "saliency", images=4, pixels_per_image=32)
    assert [s["stride"] for s in result.scales] == [4, 8, 16, 32]
    assert [s["channels"] for s in result.scales] == [64, 128, 256, 512]
    assert result.pixels == 4 * 32 and result.images == 4
    assert result.relies_on == int(np.argmax([s["logme"] for s in result.scales]))
    stored = json.loads((probe_ws.root / "probes" / "saliency-pascal.json").read_text())
    assert stored["all"] == pytest.approx(result.all) and stored["fingerprint"] == probe_ws.fingerprint
    again = probe_task(probe_ws, "saliency", images=4, pixels_per_image=32, store=False)
    assert again.all == result.all and [s["logme"] for s in again.scales] == [s["logme"] for s in result.scales]


@pytest.mark.slow
def test_probe_command_prints_per_scale_and_refuses_bad_input(probe_ws):
    out = _invoke("probe", "human_parts", "--workspace", probe_ws.root, "--images", "4", "--pixels", "16")
    assert out.exit_code == 0, out.output
    assert "<- relies on" in out.output and out.output.count("\n") >= 7
    out = _invoke("probe", "semseg", "--workspace", probe_ws.root, "--split", "val")
    assert out.exit_code == 1 and "no pascal/val feature cache" in out.output and "Traceback" not in out.output
    out = _invoke("probe", "depth", "--workspace", probe_ws.root)
    assert out.exit_code == 1 and "no nyud/train feature cache" in out.output
    out = _invoke("probe", "--workspace", probe_ws.root)
    assert out.exit_code == 2 and "NAME or --spec" in out.output
