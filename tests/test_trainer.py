"""ufl.training: the Trainer loop (hook order, per-epoch seeds, exact resumption, the poly lr
schedule, non-finite losses) and its callbacks (validation, JSON log, checkpoints, progress)."""

import copy
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ufl.checkpoint import load_checkpoint
from ufl.runtime import Precision
from ufl.training import Callback, NonFiniteLoss, Trainer, poly_lr
from ufl.training.callbacks import Checkpointer, JsonLog, ProgressBar, Validation, format_loss, format_metrics

CPU = torch.device("cpu")
FP32 = Precision("cpu", None)


def _loader(n=6, batch_size=2, seed=None, shuffle=True):
    """Items ``(index, x, y)`` with y = 2x + 1, so a batch tells which items it holds."""
    x = torch.linspace(-1, 1, n).unsqueeze(1)
    data = TensorDataset(torch.arange(n), x, 2 * x + 1)
    generator = torch.Generator() if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)


def _forward(model, batch):
    return model(batch[1])


def _mse(outputs, batch):
    loss = ((outputs - batch[2]) ** 2).mean()
    return loss, {"y": loss.detach()}


def _trainer(model=None, epochs=2, seed=0, callbacks=(), base_lr=0.1, **kwargs):
    if model is None:
        torch.manual_seed(0)
        model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=base_lr)
    return Trainer(model, optimizer, _forward, _mse, epochs=epochs, base_lr=base_lr, device=CPU,
                   precision=FP32, seed=seed, callbacks=callbacks, **kwargs)


class Recorder(Callback):
    """Logs ``(hook, epoch, step, global_step)`` for every hook call, and each epoch's batches."""

    def __init__(self, name="r", log=None):
        self.name = name
        self.log = [] if log is None else log

    def _note(self, hook, state):
        self.log.append((self.name, hook, state.epoch, state.step, state.global_step))

    def before_fit(self, trainer, state):
        self._note("before_fit", state)

    def before_epoch(self, trainer, state):
        self._note("before_epoch", state)

    def after_step(self, trainer, state):
        self._note("after_step", state)

    def after_epoch(self, trainer, state):
        self._note("after_epoch", state)

    def after_fit(self, trainer, state):
        self._note("after_fit", state)


# -- hooks ------------------------------------------------------------------------------------------
def test_hooks_run_in_order_with_the_position_in_the_run():
    recorder = Recorder()
    _trainer(epochs=2, callbacks=[recorder]).fit(_loader(n=6, batch_size=2))
    hooks = [(hook, epoch, step, global_step) for _, hook, epoch, step, global_step in recorder.log]
    assert hooks == [
        ("before_fit", 0, 0, 0),
        ("before_epoch", 0, 0, 0),
        ("after_step", 0, 1, 1), ("after_step", 0, 2, 2), ("after_step", 0, 3, 3),
        ("after_epoch", 0, 3, 3),
        ("before_epoch", 1, 0, 3),
        ("after_step", 1, 1, 4), ("after_step", 1, 2, 5), ("after_step", 1, 3, 6),
        ("after_epoch", 1, 3, 6),
        ("after_fit", 1, 3, 6),
    ]


def test_callbacks_run_in_the_order_given_at_every_hook():
    log = []
    _trainer(epochs=1, callbacks=[Recorder("a", log), Recorder("b", log)]).fit(_loader(n=2, batch_size=2))
    assert [(name, hook) for name, hook, *_ in log] == [
        ("a", "before_fit"), ("b", "before_fit"), ("a", "before_epoch"), ("b", "before_epoch"),
        ("a", "after_step"), ("b", "after_step"), ("a", "after_epoch"), ("b", "after_epoch"),
        ("a", "after_fit"), ("b", "after_fit")]


def test_resuming_starts_the_hooks_and_the_step_count_at_the_start_epoch():
    recorder = Recorder()
    _trainer(epochs=3, callbacks=[recorder]).fit(_loader(n=4, batch_size=2), start_epoch=2)
    assert [(hook, epoch, global_step) for _, hook, epoch, _, global_step in recorder.log] == [
        ("before_fit", 2, 4), ("before_epoch", 2, 4), ("after_step", 2, 5), ("after_step", 2, 6),
        ("after_epoch", 2, 6), ("after_fit", 2, 6)]


def test_the_epoch_loss_is_the_mean_of_the_step_losses():
    steps, epochs = [], []

    class Losses(Callback):
        def after_step(self, trainer, state):
            steps.append((state.loss, state.parts["y"]))

        def after_epoch(self, trainer, state):
            epochs.append((state.epoch_loss, state.epoch_parts["y"]))

    _trainer(epochs=1, callbacks=[Losses()]).fit(_loader(n=6, batch_size=2))
    assert len(steps) == 3 and len(epochs) == 1
    assert epochs[0][0] == pytest.approx(sum(loss for loss, _ in steps) / 3)
    assert epochs[0][1] == pytest.approx(sum(part for _, part in steps) / 3)
    assert all(loss > 0 for loss, _ in steps)


def test_training_lowers_the_loss():
    losses = []

    class Epochs(Callback):
        def after_epoch(self, trainer, state):
            losses.append(state.epoch_loss)

    _trainer(epochs=20, callbacks=[Epochs()], lr_schedule=lambda base, epoch, epochs: base).fit(_loader())
    assert losses[-1] < 0.01 * losses[0]


# -- seeds ------------------------------------------------------------------------------------------
def _orders(seed, epochs=3, start_epoch=0, loader_seed=None):
    """The item order of each epoch of a run (a list per epoch), and torch draws made in each."""
    orders, draws = {}, {}

    def forward(model, batch):
        orders.setdefault(trainer.state.epoch, []).extend(batch[0].tolist())
        draws.setdefault(trainer.state.epoch, []).append(float(torch.rand(())))  # e.g. dropout
        return model(batch[1])

    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), forward, _mse, epochs=epochs,
                      base_lr=0.1, device=CPU, precision=FP32, seed=seed)
    trainer.fit(_loader(n=8, batch_size=2, seed=loader_seed), start_epoch=start_epoch)
    return orders, draws


def test_the_data_order_of_an_epoch_is_the_same_across_runs_and_differs_between_epochs():
    first, draws_first = _orders(seed=5)
    torch.manual_seed(123)  # whatever the global RNG holds before the run
    second, draws_second = _orders(seed=5, loader_seed=99)  # and whatever the loader's generator held
    assert first == second and draws_first == draws_second
    assert sorted(first[0]) == list(range(8))                       # a permutation of the items
    assert first[0] != first[1] and first[1] != first[2] and first[0] != first[2]
    assert draws_first[0] != draws_first[1]


def test_the_data_order_comes_from_seed_plus_epoch():
    seed5, _ = _orders(seed=5)
    seed6, _ = _orders(seed=6)
    assert seed6[0] == seed5[1] and seed6[1] == seed5[2]        # epoch k of seed s = epoch k-1 of seed s+1
    assert seed6[0] != seed5[0]


def test_a_resumed_run_sees_the_same_data_order_as_an_uninterrupted_one():
    whole, draws_whole = _orders(seed=3, epochs=3)
    resumed, draws_resumed = _orders(seed=3, epochs=3, start_epoch=1)
    assert sorted(resumed) == [1, 2]
    assert resumed == {1: whole[1], 2: whole[2]}
    assert draws_resumed == {1: draws_whole[1], 2: draws_whole[2]}


def test_a_resumed_run_ends_with_the_same_weights_bit_for_bit():
    saved = {}

    class Snapshot(Callback):
        def after_epoch(self, trainer, state):
            if state.epoch == 0:
                saved["model"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
                saved["optim"] = copy.deepcopy(trainer.optimizer.state_dict())  # Adam updates in place

    def adam_trainer(epochs, callbacks=()):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(1, 8), nn.Dropout(0.3), nn.Linear(8, 1))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        return Trainer(model, optimizer, _forward, _mse, epochs=epochs, base_lr=0.01, device=CPU,
                       precision=FP32, seed=7, callbacks=callbacks)

    whole = adam_trainer(3, [Snapshot()])
    whole.fit(_loader(n=8, batch_size=2))
    resumed = adam_trainer(3)
    resumed.model.load_state_dict(saved["model"])
    resumed.optimizer.load_state_dict(saved["optim"])
    resumed.fit(_loader(n=8, batch_size=2), start_epoch=1)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(saved["model"]["0.weight"], whole.model.state_dict()["0.weight"])  # it trained on


# -- learning rate --------------------------------------------------------------------------------
def test_poly_lr_matches_the_hand_computed_schedule():
    # base * (1 - e / 4) ** 0.9 for e = 0..3: 0.01 * (1, 0.75 ** 0.9, 0.5 ** 0.9, 0.25 ** 0.9), with
    # 0.75 ** 0.9 = exp(0.9 ln 0.75) = 0.7718895..., 0.5 ** 0.9 = 2 ** -0.9 = 0.5358867...,
    # 0.25 ** 0.9 = 2 ** -1.8 = 0.2871746...
    expected = [0.01, 0.007718895067235705, 0.005358867312681466, 0.002871745887492588]
    assert [poly_lr(0.01, epoch, 4) for epoch in range(4)] == pytest.approx(expected, rel=1e-12)
    assert poly_lr(0.01, 4, 4) == 0.0
    assert poly_lr(0.5, 1, 2, power=1.0) == pytest.approx(0.25)
    assert poly_lr(0.5, 1, 2, power=2.0) == pytest.approx(0.125)
    assert poly_lr(0.01, 0, 0) == 0.01  # no division by zero for an empty run


def test_the_trainer_sets_the_scheduled_lr_on_every_param_group_each_epoch():
    seen = []

    class Lr(Callback):
        def before_epoch(self, trainer, state):
            seen.append((state.lr, [group["lr"] for group in trainer.optimizer.param_groups]))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 2), nn.Linear(2, 1))
    optimizer = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[1].parameters()}], lr=1.0)
    Trainer(model, optimizer, _forward, _mse, epochs=4, base_lr=0.01, device=CPU, precision=FP32,
            callbacks=[Lr()]).fit(_loader(n=2, batch_size=2))
    expected = [0.01, 0.007718895067235705, 0.005358867312681466, 0.002871745887492588]
    assert [lr for lr, _ in seen] == pytest.approx(expected, rel=1e-12)
    assert [groups for _, groups in seen] == [[lr, lr] for lr in [lr for lr, _ in seen]]


def test_a_custom_schedule_is_called_with_base_epoch_and_length():
    calls = []

    def schedule(base, epoch, epochs):
        calls.append((base, epoch, epochs))
        return base / (epoch + 1)

    trainer = _trainer(epochs=3, base_lr=0.3, lr_schedule=schedule)
    trainer.fit(_loader(n=2, batch_size=2))
    assert calls == [(0.3, 0, 3), (0.3, 1, 3), (0.3, 2, 3)]
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


# -- failures and modes -------------------------------------------------------------------------
def test_a_non_finite_loss_stops_the_run_before_the_weights_change():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def nan_loss(outputs, batch):
        return outputs.sum() * float("nan"), {}

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), _forward, nan_loss, epochs=2,
                      base_lr=0.1, device=CPU, precision=FP32)
    with pytest.raises(NonFiniteLoss, match=r"became nan at epoch 1, step 1.*last good checkpoint"):
        trainer.fit(_loader(n=4, batch_size=2))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_train_mode_is_applied_at_the_start_of_every_epoch():
    modes = []

    class Mode(Callback):
        def before_epoch(self, trainer, state):
            modes.append(trainer.model.training)
            trainer.model.eval()  # e.g. a validation callback leaving the model in eval mode

    _trainer(epochs=2, callbacks=[Mode()]).fit(_loader(n=2, batch_size=2))
    assert modes == [True, True]
    frozen = []
    _trainer(epochs=2, callbacks=[Mode()], train_mode=lambda m: frozen.append(m.eval())).fit(_loader(n=2, batch_size=2))
    assert modes[2:] == [False, False] and len(frozen) == 2


# -- callbacks --------------------------------------------------------------------------------------
def test_validation_runs_every_n_epochs_and_after_the_last():
    calls = []

    def evaluate():
        calls.append(trainer.state.epoch + 1)
        return {"y": {"score": float(len(calls))}}

    trainer = _trainer(epochs=5, callbacks=[Validation(evaluate, every=2)])
    state = trainer.fit(_loader(n=2, batch_size=2))
    assert calls == [2, 4, 5]
    assert [entry["epoch"] for entry in state.history] == [1, 2, 3, 4, 5]
    assert ["metrics" in entry for entry in state.history] == [False, True, False, True, True]
    assert state.history[3]["metrics"] == {"y": {"score": 2.0}}
    assert state.metrics == {"y": {"score": 3.0}}
    assert state.history[1]["lr"] == pytest.approx(poly_lr(0.1, 1, 5))
    assert state.history[0]["final_loss"]["y"] == pytest.approx(state.history[0]["loss"])  # one task, no aux


def test_json_log_writes_one_line_per_epoch(tmp_path):
    log = tmp_path / "logs" / "log.jsonl"
    trainer = _trainer(epochs=3, callbacks=[Validation(lambda: {"y": {"score": 1.5}}, every=1), JsonLog(log)])
    state = trainer.fit(_loader(n=2, batch_size=2))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert lines == json.loads(json.dumps(state.history))
    assert lines[2]["metrics"] == {"y": {"score": 1.5}}
    assert lines[0]["lr"] == 0.1 and lines[1]["lr"] == pytest.approx(poly_lr(0.1, 1, 3))


def test_the_checkpointer_saves_each_epoch_and_the_last_one_resumes(tmp_path):
    run = tmp_path / "run"
    trainer = _trainer(epochs=2, callbacks=[Validation(lambda: {"y": {"score": 2.0}}),
                                            Checkpointer(run, lambda: {"model": "linear"},
                                                         lambda: trainer.model.state_dict())])
    trainer.fit(_loader(n=4, batch_size=2))
    checkpoint = load_checkpoint(run, with_optimizer=True)
    assert checkpoint.epoch == 2
    assert checkpoint.meta["model"] == "linear" and checkpoint.meta["metrics"] == {"y": {"score": 2.0}}
    assert [entry["epoch"] for entry in checkpoint.meta["history"]] == [1, 2]
    assert checkpoint.meta["grad_scaler"] is None  # no scaler on CPU
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(checkpoint.model_state[key], value)
    assert checkpoint.optimizer_state["param_groups"][0]["lr"] == pytest.approx(poly_lr(0.1, 1, 2))
    assert [p.name for p in sorted(run.glob("epoch-*.safetensors"))] == ["epoch-0002.safetensors"]


def test_the_progress_bar_prints_one_line_per_epoch(capsys):
    _trainer(epochs=2, callbacks=[ProgressBar("unit")]).fit(_loader(n=2, batch_size=2))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("unit epoch")]
    assert [line.split(":")[0] for line in lines] == ["unit epoch 1/2", "unit epoch 2/2"]
    assert all("loss " in line and line.endswith(" s)") for line in lines)
    _trainer(epochs=2, callbacks=[ProgressBar("quiet", enabled=False)]).fit(_loader(n=2, batch_size=2))
    assert "quiet" not in capsys.readouterr().err


def test_format_metrics_and_format_loss():
    assert format_metrics({"semseg": {"mIoU": 41.234}, "depth": {"rmse": 0.5}}) == "semseg mIoU 41.23 | depth rmse 0.5"
    trainer = _trainer(epochs=1)
    state = trainer.state
    state.epoch_loss, state.epoch_parts = 1.5, {"semseg": 0.25}
    assert format_loss(state) == ("loss 1.5000 (weighted sum over tasks and deep-supervision terms); "
                                  "final output: semseg 0.2500")
    assert math.isnan(_trainer().state.loss)
