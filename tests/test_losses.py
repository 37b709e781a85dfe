"""Losses against hand-computed values on tiny tensors, ignore handling, MultiTaskLoss weighting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ufl.losses import (BalancedBCELoss, CrossEntropyLoss, MaskedL1Loss, MultiTaskLoss, NormalsL1Loss,
                        build_loss)
from ufl import outputs as activations
from ufl.evaluation import postprocess
from ufl.models import MODELS, Backbone, build_head, build_model, init_prediction_bias
from ufl.taskspec import TaskSpec, builtin_specs
from ufl.training.priors import start_at_prior


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def nyud_specs() -> dict[str, TaskSpec]:
    specs = builtin_specs()
    return {t: specs[t] for t in ("semseg", "depth", "normals", "edges")}


# -- cross-entropy --------------------------------------------------------------------------------

def test_cross_entropy_by_hand():
    # 1x1x3 image, 2 classes; the third pixel is ignored.
    logits = torch.tensor([[[[0.0, 1.0, 5.0]], [[1.0, 0.0, -5.0]]]])  # (1, 2, 1, 3)
    target = torch.tensor([[[1, 1, 255]]])
    p0 = -math.log(math.exp(1) / (1 + math.exp(1)))  # class 1 of (0, 1)
    p1 = -math.log(1 / (1 + math.exp(1)))  # class 1 of (1, 0)
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx((p0 + p1) / 2, rel=1e-6)


def test_cross_entropy_matches_torch_on_random_data():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=g)
    target = torch.randint(0, 5, (2, 6, 7), generator=g)
    target[0, :2] = 255
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(CrossEntropyLoss()(logits, target), expected, atol=1e-6)
    assert torch.allclose(CrossEntropyLoss()(logits, target[:, None]), expected, atol=1e-6)


# -- depth ----------------------------------------------------------------------------------------

def test_depth_l1_masks_missing_and_ignored():
    pred = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
    target = torch.tensor([[[[1.5, 0.0, 255.0, 2.0]]]])  # 0 = missing, 255 = ignored
    assert MaskedL1Loss()(pred, target).item() == pytest.approx((0.5 + 2.0) / 2)
    assert MaskedL1Loss()(pred, target[:, 0]).item() == pytest.approx(1.25)


# -- normals --------------------------------------------------------------------------------------

def test_normals_l1_normalises_prediction_and_masks_zero_vectors():
    pred = torch.zeros(1, 3, 1, 3)
    pred[0, :, 0, 0] = torch.tensor([0.0, 0.0, 2.0])  # normalises to (0, 0, 1)
    pred[0, :, 0, 1] = torch.tensor([3.0, 4.0, 0.0])  # normalises to (0.6, 0.8, 0)
    pred[0, :, 0, 2] = torch.tensor([1.0, 1.0, 1.0])  # invalid target below
    target = torch.zeros(1, 3, 1, 3)
    target[0, :, 0, 0] = torch.tensor([0.0, 0.0, 1.0])  # error 0
    target[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # |0.6-1| + |0.8| + 0 = 1.2
    expected = (0.0 + 1.2) / (3 * 2)  # mean over the 3 components of the 2 valid pixels
    assert NormalsL1Loss()(pred, target).item() == pytest.approx(expected, rel=1e-6)
    assert NormalsL1Loss()(pred * 7.0, target).item() == pytest.approx(expected, rel=1e-6)


def test_normals_ignore_255():
    pred = torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])
    target = torch.tensor([[[[0.0, 255.0]], [[1.0, 255.0]], [[0.0, 255.0]]]])
    assert NormalsL1Loss()(pred, target).item() == pytest.approx(2.0 / 3)


# -- balanced BCE ---------------------------------------------------------------------------------

def test_balanced_bce_fixed_weight_by_hand():
    logits = torch.tensor([[[[2.0, -1.0, 0.5, 3.0]]]])
    target = torch.tensor([[[[1.0, 0.0, 0.0, 255.0]]]])
    w = 0.95
    expected = (w * softplus(-2.0) + (1 - w) * (softplus(-1.0) + softplus(0.5))) / 3
    assert BalancedBCELoss(0.95)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_balanced_bce_batch_weight_by_hand():
    logits = torch.tensor([[[[2.0, -1.0]]], [[[0.5, -0.5]]]])  # (2, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 255.0]]]])
    w = 2 / 3  # negatives / valid pixels over the batch: 2 of 3
    expected = (w * softplus(-2.0) + (1 - w) * (softplus(-1.0) + softplus(0.5))) / 3
    assert BalancedBCELoss(None)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_balanced_bce_rejects_bad_weight():
    with pytest.raises(ValueError, match="pos_weight"):
        BalancedBCELoss(1.5)


# -- all-ignored batches --------------------------------------------------------------------------

@pytest.mark.parametrize("loss, pred_shape, target", [
    (CrossEntropyLoss(), (2, 3, 4, 4), torch.full((2, 4, 4), 255)),
    (MaskedL1Loss(), (2, 1, 4, 4), torch.zeros(2, 1, 4, 4)),
    (NormalsL1Loss(), (2, 3, 4, 4), torch.zeros(2, 3, 4, 4)),
    (BalancedBCELoss(0.95), (2, 1, 4, 4), torch.full((2, 1, 4, 4), 255.0)),
    (BalancedBCELoss(None), (2, 1, 4, 4), torch.full((2, 1, 4, 4), 255.0)),
])
def test_all_ignored_batch_gives_zero_with_finite_gradient(loss, pred_shape, target):
    pred = torch.randn(pred_shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    value = loss(pred, target)
    assert value.item() == 0.0
    value.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and (pred.grad == 0).all()


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        MaskedL1Loss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 8, 8))


# -- build_loss and MultiTaskLoss -----------------------------------------------------------------

def test_build_loss_from_specs():
    specs = builtin_specs()
    assert isinstance(build_loss(specs["semseg"]), CrossEntropyLoss)
    assert isinstance(build_loss(specs["depth"]), MaskedL1Loss)
    assert isinstance(build_loss(specs["normals"]), NormalsL1Loss)
    assert build_loss(specs["edges"]).pos_weight == 0.95
    assert build_loss(specs["saliency"]).pos_weight is None  # from the batch


def _nyud_batch_and_outputs(size=(4, 6), initial=False):
    g = torch.Generator().manual_seed(0)
    h, w = size
    batch = {
        "semseg": torch.randint(0, 40, (2, h, w), generator=g),
        "depth": torch.rand(2, 1, h, w, generator=g) * 5,
        "normals": F.normalize(torch.randn(2, 3, h, w, generator=g), dim=1),
        "edges": (torch.rand(2, 1, h, w, generator=g) > 0.8).float(),
    }
    channels = {"semseg": 40, "depth": 1, "normals": 3, "edges": 1}
    outputs = {}
    for t, c in channels.items():
        outputs[t] = {"out": torch.randn(2, c, h, w, generator=g, requires_grad=True)}
        if initial:
            outputs[t]["initial"] = [torch.randn(2, c, h // 2, w // 2, generator=g, requires_grad=True)]
    return outputs, batch


def test_multitask_loss_weights():
    outputs, batch = _nyud_batch_and_outputs()
    total, values = MultiTaskLoss(nyud_specs(), "nyud")(outputs, batch)
    singles = {
        "semseg": CrossEntropyLoss()(outputs["semseg"]["out"], batch["semseg"]),
        "depth": MaskedL1Loss()(F.softplus(outputs["depth"]["out"]), batch["depth"]),  # metres > 0
        "normals": NormalsL1Loss()(outputs["normals"]["out"], batch["normals"]),
        "edges": BalancedBCELoss(0.95)(outputs["edges"]["out"], batch["edges"]),
    }
    weights = {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edges": 50.0}
    assert set(values) == set(weights)
    for t in weights:
        assert torch.allclose(values[t], singles[t])
    assert torch.allclose(total, sum(weights[t] * singles[t] for t in weights))
    total.backward()
    assert all(outputs[t]["out"].grad is not None for t in weights)


def test_multitask_loss_deep_supervision_upsampled_with_same_weights():
    outputs, batch = _nyud_batch_and_outputs(initial=True)
    specs = nyud_specs()
    with_ds, values = MultiTaskLoss(specs, "nyud")(outputs, batch)
    without_ds, _ = MultiTaskLoss(specs, "nyud", deep_supervision=False)(outputs, batch)
    weights = {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edges": 50.0}
    deep = 0.0
    for t, spec in specs.items():
        up = F.interpolate(outputs[t]["initial"][0], size=(4, 6), mode="bilinear", align_corners=False)
        deep = deep + weights[t] * build_loss(spec)(activations.activate(spec.kind, up), batch[t])
    assert torch.allclose(without_ds, sum(weights[t] * values[t] for t in weights))
    assert torch.allclose(with_ds, without_ds + deep)
    with_ds.backward()
    assert all(outputs[t]["initial"][0].grad is not None for t in weights)


def test_multitask_loss_pascal_weights_and_missing_target():
    specs = builtin_specs()
    loss = MultiTaskLoss({t: specs[t] for t in ("human_parts", "saliency")}, "pascal")
    assert loss.weights == {"human_parts": 2.0, "saliency": 5.0}
    with pytest.raises(KeyError, match="saliency"):
        loss({"human_parts": {"out": torch.zeros(1, 7, 2, 2)}, "saliency": {"out": torch.zeros(1, 1, 2, 2)}},
             {"human_parts": torch.zeros(1, 2, 2, dtype=torch.long)})


# -- depth output activation (ufl.outputs) --------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS.names()))
def test_depth_predictions_are_positive_for_every_model(name):
    """Every model's depth output (final and deep-supervision) means metres > 0, even where the raw
    output is negative (a bias far below 0 stands for a head that learnt to undershoot)."""
    torch.manual_seed(0)
    model = build_model(name, Backbone("resnet18", warn_random_init=False), {"depth": 1})
    assert init_prediction_bias(model, "depth", -4.0) >= 1
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model.train()
    out = model(images)["depth"]
    assert (out["out"] < 0).any()  # the raw output is negative somewhere
    target = torch.full((2, 1, 64, 64), 1e-3)
    total, values = MultiTaskLoss({"depth": builtin_specs()["depth"]}, "nyud")(model(images), {"depth": target})
    assert values["depth"] < 0.05  # the loss sees softplus(raw) ~ 0.02, not |raw - target| ~ 4
    model.eval()
    with torch.no_grad():
        depth = postprocess("depth", model(images)["depth"]["out"])
    assert depth.shape == (2, 1, 64, 64) and bool((depth > 0).all())


def test_softplus_inverse_round_trip():
    for metres in (1e-3, 0.5, 2.5, 10.0, 80.0):
        raw = activations.inverse("depth", metres)
        assert activations.activate("depth", torch.tensor(raw, dtype=torch.float64)).item() == pytest.approx(metres, rel=1e-9)
    assert activations.inverse("depth", 2.5) == pytest.approx(math.log(math.exp(2.5) - 1))
    with pytest.raises(ValueError, match="positive"):
        activations.inverse("depth", 0.0)
    x = torch.randn(5)
    assert torch.equal(activations.activate("normals", x), x)


def test_depth_head_starts_at_the_training_mean_and_training_reduces_its_loss():
    """start_at_prior puts the prediction at the batch's mean depth (bias softplus^-1(mean)), and a
    short training from there still lowers the depth loss."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    channels = [18, 36, 72, 144]
    features = [torch.randn(4, c, 16 // 2 ** i, 16 // 2 ** i, generator=g) for i, c in enumerate(channels)]
    ramp = torch.linspace(1.0, 4.0, 64).view(1, 1, 1, 64).expand(4, 1, 64, 64)
    target = ramp.clone()  # metres, 1..4 left to right
    head = build_head(channels, 1)
    spec = builtin_specs()["depth"]
    priors = start_at_prior(head, {"depth": spec}, {"depth": target})
    assert priors["depth"] == pytest.approx(float(target.mean()), rel=1e-6)
    for module in head.modules():
        if getattr(module, "predicts_task", False):
            assert float(module.bias.detach()) == pytest.approx(activations.inverse("depth", priors["depth"]), rel=1e-6)
    loss_fn = MultiTaskLoss({"depth": spec}, "nyud")
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        total, values = loss_fn({"depth": head(features, out_size=(64, 64))}, {"depth": target})
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(float(values["depth"].detach()))
    assert losses[0] < 1.2  # starts near the mean (L1 of a constant 2.5 m on 1..4 m is 0.75)
    assert losses[-1] < 0.8 * losses[0]
    with torch.no_grad():
        assert bool((postprocess("depth", head(features, out_size=(64, 64))["out"]) > 0).all())


def test_trivial_depth_predictor_predicts_the_training_mean_through_the_activation():
    from ufl.trivial import PriorPredictor

    spec = builtin_specs()["depth"]
    train = [{"depth": torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])}]  # 0 = missing: mean of 1, 2, 3
    prior = PriorPredictor({"depth": spec}, "nyud").fit(train)
    depth = postprocess("depth", prior({"depth": torch.zeros(2, 1, 3, 3)})["depth"])
    assert depth.shape == (2, 1, 3, 3) and torch.allclose(depth, torch.full_like(depth, 2.0))


def test_multitask_loss_aux_only_tasks_get_deep_supervision_only():
    # PAD-Net / MTI-Net with --aux normals,edges: no final output for the auxiliary tasks.
    outputs, batch = _nyud_batch_and_outputs(initial=True)
    for t in ("normals", "edges"):
        del outputs[t]["out"]
    specs = nyud_specs()
    total, values = MultiTaskLoss(specs, "nyud")(outputs, batch)
    weights = {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edges": 50.0}
    expected = 0.0
    for t, spec in specs.items():
        up = F.interpolate(outputs[t]["initial"][0], size=(4, 6), mode="bilinear", align_corners=False)
        deep = build_loss(spec)(activations.activate(spec.kind, up), batch[t])
        final = (build_loss(spec)(activations.activate(spec.kind, outputs[t]["out"]), batch[t]) if "out" in outputs[t]
                 else 0.0)
        expected = expected + weights[t] * (final + deep)
        if "out" not in outputs[t]:
            assert torch.allclose(values[t], deep)  # logged: the deep-supervision loss
    assert torch.allclose(total, expected)
    with pytest.raises(KeyError, match="no final output"):
        MultiTaskLoss(specs, "nyud", deep_supervision=False)(outputs, batch)
