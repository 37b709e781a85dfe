"""``ufl continual``: the avalanche stream, frozen vs fine-tuning strategies, metrics, CLI contract."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EWCPlugin, SynapticIntelligencePlugin

from ufl.checkpoint import save_checkpoint
from ufl.cli import main
from ufl.cli.continual import DEFAULT_STRATEGIES as CLI_STRATEGIES
from ufl.cli.continual import DEFAULT_TASKS as CLI_TASKS
from ufl.continual import (DEFAULT_STRATEGIES, DEFAULT_TASKS, ContinualConfig, CopyingSynapticIntelligence,
                           DenseFeatureDistillation, HeadlineScore, build_benchmark, format_results, parse_strategies,
                           parse_tasks, run_continual, starting_backbone)
from ufl.errors import DataError, SpecError, UflError
from ufl.models import Backbone
from ufl.outputs import inverse
from ufl.runtime import seed_everything

SIZE = (64, 96)


def _config(root, **kw) -> ContinualConfig:
    base = dict(data_root=str(root), backbone="hrnet_w18_small_v2", pretrained=None, epochs=1, batch_size=4,
                size=SIZE, device="cpu", workers=0, progress=False, seed=0)
    base.update(kw)
    return ContinualConfig(**base)


# -- the stream -----------------------------------------------------------------------------------
def test_stream_has_one_experience_per_task_with_its_label(synthetic_root):
    tasks = parse_tasks(["nyud:semseg", "nyud:depth", "pascal:saliency"])
    bench = build_benchmark(tasks, synthetic_root, SIZE, augment=False)
    assert len(bench.train_stream) == len(bench.test_stream) == 3
    shapes = {0: ((64, 96), torch.int64), 1: ((1, 64, 96), torch.float32), 2: ((1, 64, 96), torch.float32)}
    for i, (train, test) in enumerate(zip(bench.train_stream, bench.test_stream)):
        assert train.task_label == test.task_label == i and train.task_labels == [i]
        assert (len(train.dataset), len(test.dataset)) == (8, 4)
        image, target, label = train.dataset[0]
        assert image.shape == (3, 64, 96) and image.dtype == torch.float32
        assert (tuple(target.shape), target.dtype) == shapes[i] and label == i
    # the semseg targets are NYUD's labels (40 classes, 255 = ignore), the saliency ones binary
    _, semseg, _ = bench.test_stream[0].dataset[0]
    assert set(semseg.unique().tolist()) <= set(range(40)) | {255}
    _, saliency, _ = bench.test_stream[2].dataset[0]
    assert set(saliency.unique().tolist()) <= {0.0, 1.0, 255.0}


def test_task_and_strategy_names_are_checked():
    assert [t.key for t in parse_tasks(list(DEFAULT_TASKS))] == list(DEFAULT_TASKS)
    assert [t.label for t in parse_tasks(list(DEFAULT_TASKS))] == [0, 1, 2, 3]
    with pytest.raises(SpecError, match=r"task 'saliency' is not available on dataset 'nyud' \(it provides: semseg"):
        parse_tasks(["nyud:saliency"])
    with pytest.raises(SpecError, match=r"unknown task 'segment' in 'nyud:segment'; known tasks: depth, edges"):
        parse_tasks(["nyud:segment"])
    with pytest.raises(SpecError, match=r"unknown dataset 'kitti'.*known datasets: nyud, pascal"):
        parse_tasks(["kitti:depth"])
    with pytest.raises(SpecError, match="not of the form DATASET:TASK"):
        parse_tasks(["semseg"])
    with pytest.raises(SpecError, match="listed twice"):
        parse_tasks(["nyud:depth", "nyud:depth"])
    assert parse_strategies(["frozen", "si"]) == ["frozen", "si"]
    with pytest.raises(UflError, match=r"^unknown strategy 'replay'; known: ewc, frozen, lwf, naive, si$"):
        parse_strategies(["frozen", "replay"])
    # the CLI spells out the API's defaults (to stay fast to load): they must agree
    assert CLI_TASKS.split(",") == list(DEFAULT_TASKS) and CLI_STRATEGIES.split(",") == list(DEFAULT_STRATEGIES)


# -- the headline score and its orientation ---------------------------------------------------------
def test_headline_score_pools_the_split_and_turns_lower_is_better_around():
    tasks = parse_tasks(["nyud:depth", "pascal:saliency"])
    metric = HeadlineScore(tasks)
    assert metric.result() is None and metric.score() is None
    target = torch.tensor([[[[1.0, 2.0], [0.0, 4.0]]]])  # 0 = no measurement
    def logits(depth):  # the raw outputs whose activation (softplus, ufl.outputs) is ``depth``
        return torch.tensor(depth).apply_(lambda d: inverse("depth", d))

    metric.update(logits([[[[2.0, 2.0], [9.0, 1.0]]]]), target, 0)
    metric.update(logits([[[[1.0, 4.0], [3.0, 3.0]]]]), target, 0)
    # pooled over the 6 valid pixels: errors 1, 0, -3 and 0, 2, -1
    rmse = math.sqrt((1 + 0 + 9 + 0 + 4 + 1) / 6)
    assert metric.result() == pytest.approx(rmse) and metric.score() == pytest.approx(-rmse)
    with pytest.raises(ValueError, match="reset it"):
        metric.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 1)
    metric.reset()
    metric.update(torch.full((1, 1, 2, 2), 10.0), torch.ones(1, 1, 2, 2), 1)  # sigmoid(10) > every threshold
    assert metric.result() == metric.score() == pytest.approx(100.0)


def test_feature_distillation_is_zero_for_the_same_backbone_and_positive_after_a_change(torch_seed):
    backbone = Backbone("resnet18", warn_random_init=False).eval()
    images = torch.rand(2, 3, 64, 64)

    class Strategy:  # what the plugin reads from an avalanche strategy
        model = torch.nn.Module()
        mb_x = images

    strategy = Strategy()
    strategy.model.backbone = backbone
    plugin = DenseFeatureDistillation(alpha=2.0)
    strategy.loss = torch.zeros(())
    plugin.before_backward(strategy)  # no previous experience yet: nothing added
    assert strategy.loss.item() == 0.0
    plugin.after_training_exp(strategy)
    assert plugin.prev_model is not backbone and not plugin.prev_model.training
    strategy.model.features = backbone(images)
    plugin.before_backward(strategy)
    assert strategy.loss.item() == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        backbone.model.conv1.weight.mul_(-1.0)
    strategy.loss = torch.zeros(())
    strategy.model.features = backbone(images)
    plugin.before_backward(strategy)
    assert 0.0 < strategy.loss.item() <= 4.0  # alpha * (1 - cos), cos in [-1, 1]


@pytest.mark.parametrize("plugin_class, moves",
                         [(CopyingSynapticIntelligence, True), (SynapticIntelligencePlugin, False)])
def test_synaptic_intelligence_importance_on_cpu(torch_seed, plugin_class, moves):
    """SI's importance is the path integral of -grad * step: positive for gradient descent steps. The
    stock plugin's weight snapshots are views of the live CPU parameters, so its importance is 0."""
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    strategy = SimpleNamespace(model=model, device=torch.device("cpu"), clock=SimpleNamespace(train_exp_counter=0))
    plugin = plugin_class(si_lambda=1.0)
    x, y = torch.rand(8, 3), torch.rand(8, 1)
    plugin.before_training_exp(strategy)
    for _ in range(3):
        plugin.before_training_iteration(strategy)
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()
        plugin.after_training_iteration(strategy)
    plugin.after_training_exp(strategy)
    importance = torch.cat([v.data for v in plugin.ewc_data[1].values()])
    assert importance.numel() == 4
    assert bool((importance > 0).all()) is moves and bool((importance == 0).all()) is not moves


# -- frozen vs naive --------------------------------------------------------------------------------
@pytest.mark.slow
def test_frozen_forgets_nothing_and_naive_does(synthetic_root):
    config = _config(synthetic_root, strategies=["frozen", "naive"],
                     tasks=["nyud:semseg", "nyud:depth", "pascal:saliency"])
    results = run_continual(config, keep_models=True)
    seed_everything(config.seed)
    start = starting_backbone(config).state_dict()
    keys = ["nyud:semseg", "nyud:depth", "pascal:saliency"]
    assert results["tasks"] == keys and results["metric"] == dict(zip(keys, ["mIoU", "rmse", "maxF"]))

    frozen = results["strategies"]["frozen"]
    assert frozen["forgetting"] == {k: 0.0 for k in keys}
    assert all(type(v) is float for v in frozen["forgetting"].values())
    # every task keeps its exact score after each later experience
    matrix = frozen["matrix"]
    assert [len(row) for row in matrix] == [3, 3, 3] and matrix[0][1:] == [None, None] and matrix[1][2] is None
    for j in range(3):
        assert len({matrix[i][j] for i in range(j, 3)}) == 1
    assert frozen["final"] == dict(zip(keys, matrix[-1]))
    # backbone weights and BatchNorm statistics untouched, although strategy.train() calls model.train()
    after = frozen["model"].backbone.state_dict()
    assert any("running_mean" in k for k in after)
    for key, value in start.items():
        assert torch.equal(after[key], value), key

    naive = results["strategies"]["naive"]
    changed = [k for k, v in start.items() if not torch.equal(naive["model"].backbone.state_dict()[k], v)]
    assert any("running_mean" in k for k in changed) and any(k.endswith("weight") for k in changed)
    assert naive["forgetting"][keys[-1]] == 0.0
    assert any(naive["forgetting"][k] != 0.0 for k in keys[:-1])
    # forgetting = score just after learning - score at the end, on the higher-is-better score
    signs = {"nyud:semseg": 1, "nyud:depth": -1}
    for j, key in enumerate(keys[:-1]):
        expected = signs[key] * (naive["matrix"][j][j] - naive["matrix"][-1][j])
        assert naive["forgetting"][key] == pytest.approx(expected, abs=1e-9)
    assert all(np.isfinite(v) for v in naive["final"].values())
    text = format_results(results)
    assert "strategy frozen" in text and "strategy naive" in text and "nyud:depth" in text


@pytest.mark.slow
def test_same_seed_gives_the_same_run(synthetic_root):
    config = _config(synthetic_root, strategies=["naive"], tasks=["nyud:depth", "pascal:saliency"],
                     backbone="resnet18")
    first, second = run_continual(config), run_continual(copy.deepcopy(config))
    assert first == second


class _WeightRecorder(SupervisedPlugin):
    """Records, for each strategy in turn, the backbone's parameters after every training experience and
    the importances ``w`` of its penalty after the first one (EWC: the Fisher information; SI: the path
    integral; none for the others), keyed by parameter name."""

    def __init__(self):
        super().__init__()
        self.weights: list[list[dict[str, torch.Tensor]]] = []
        self.importances: list[dict[str, torch.Tensor]] = []

    def before_training_exp(self, strategy, **kwargs):
        if strategy.clock.train_exp_counter == 0:  # a new strategy starts
            self.weights.append([])
            self.importances.append({})

    def after_training_exp(self, strategy, **kwargs):  # runs after the strategy's own plugins
        backbone = {f"backbone.{k}": p.detach().clone() for k, p in strategy.model.backbone.named_parameters()}
        self.weights[-1].append(backbone)
        if len(self.weights[-1]) > 1:
            return
        for plugin in strategy.plugins:
            if isinstance(plugin, EWCPlugin):
                self.importances[-1] = {k: plugin.importances[0][k].data.clone() for k in backbone}
            elif isinstance(plugin, SynapticIntelligencePlugin):  # flat, BatchNorm parameters excluded
                self.importances[-1] = {k: plugin.ewc_data[1][k].data.view_as(v).clone()
                                        for k, v in backbone.items() if k in plugin.ewc_data[1]}


@pytest.fixture(scope="module")
def regularised_run(synthetic_root, tmp_path_factory):
    """naive, ewc, lwf and si over depth then saliency, same backbone and seed, with their weights recorded.

    EWC's lambda is raised from its default (1e5) to 1e10: with 2 steps per experience from a random
    resnet18 the default moves the weights by too little to measure (a Fisher-weighted drift 0.9999x
    naive's); SI keeps its default (1e3)."""
    log_dir = tmp_path_factory.mktemp("continual_logs")
    recorder = _WeightRecorder()
    config = _config(synthetic_root, strategies=["naive", "ewc", "lwf", "si"], tasks=["nyud:depth", "pascal:saliency"],
                     backbone="resnet18", ewc_lambda=1e10, log_dir=log_dir, tensorboard=True)
    results = run_continual(config, plugins=[recorder])
    runs = {name: (weights, importance) for name, weights, importance
            in zip(config.strategies, recorder.weights, recorder.importances)}
    return SimpleNamespace(results=results, runs=runs, log_dir=log_dir)


@pytest.mark.slow
def test_ewc_lwf_and_si_run_on_dense_tasks(regularised_run):
    results, log_dir = regularised_run.results, regularised_run.log_dir
    for name in ("ewc", "lwf", "si"):
        result = results["strategies"][name]
        assert set(result["final"]) == {"nyud:depth", "pascal:saliency"}
        assert result["forgetting"]["pascal:saliency"] == 0.0 and np.isfinite(result["forgetting"]["nyud:depth"])
        log = (log_dir / f"{name}.log").read_text()
        assert "Headline/eval_phase/test_stream/Task001/Exp001" in log
        assert "HeadlineForgetting/eval_phase/test_stream/Task000/Exp000" in log
        assert list((log_dir / "tensorboard" / name).glob("events.out.tfevents.*"))


def _weighted_drift(before, after, importance) -> float:
    """sum_i max(w_i, 0) (theta_i' - theta_i)^2: how far the second task moved the weights that the
    penalty pulls back towards the first task's optimum (SI's w may be negative: those it does not)."""
    return sum(float((w.clamp(min=0) * (after[k] - before[k]) ** 2).sum()) for k, w in importance.items())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ewc", "si"])
def test_penalty_keeps_the_first_tasks_weights_closer_than_naive_fine_tuning(regularised_run, name):
    """EWC and SI add lambda * sum_i w_i (theta_i - theta*_i)^2 to the second task's loss (theta*: the weights
    after the first task). Against naive fine-tuning on the same stream, seed and first-task weights,
    the important weights must move clearly less; a zero penalty (the same run as naive) or one of the
    wrong sign (pushing away) fails."""
    (naive_first, naive_second), _ = regularised_run.runs["naive"]
    (first, second), importance = regularised_run.runs[name]
    # the penalty starts with the second experience: the first one is naive's, bit for bit
    assert naive_first.keys() == first.keys()
    assert all(torch.equal(naive_first[k], first[k]) for k in first)
    assert importance and sum(float(w.clamp(min=0).sum()) for w in importance.values()) > 0
    naive = _weighted_drift(naive_first, naive_second, importance)
    regularised = _weighted_drift(first, second, importance)
    assert naive > 0 and regularised < 0.5 * naive, (regularised, naive)


# -- the starting backbone ----------------------------------------------------------------------------
@pytest.mark.slow
def test_checkpoint_backbone_starts_every_strategy(tmp_path, torch_seed):
    backbone = Backbone("resnet18", warn_random_init=False)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state["heads.depth.weight"] = torch.zeros(1)  # other keys of the run are ignored
    save_checkpoint(tmp_path / "run", state, {"epoch": 1, "backbone": backbone.config()})
    loaded = starting_backbone(ContinualConfig(checkpoint=tmp_path / "run"))
    assert loaded.name == "resnet18"
    for key, value in backbone.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    save_checkpoint(tmp_path / "heads", {"heads.depth.weight": torch.zeros(1)},
                    {"epoch": 1, "backbone": backbone.config()})
    with pytest.raises(UflError, match="holds no backbone weights"):
        starting_backbone(ContinualConfig(checkpoint=tmp_path / "heads"))
    with pytest.raises(UflError, match="checkpoint folder not found"):
        starting_backbone(ContinualConfig(checkpoint=tmp_path / "none"))


# -- the CLI ----------------------------------------------------------------------------------------
def _cli(*args):
    return CliRunner().invoke(main, ["continual", *args])


@pytest.mark.slow
def test_cli_json_contract(synthetic_root, tmp_path):
    result = _cli("--data-root", str(synthetic_root), "--strategies", "frozen,naive", "--tasks",
                  "nyud:depth,pascal:saliency", "--backbone", "resnet18", "--pretrained", "none", "--epochs", "1",
                  "--batch-size", "4", "--size", "64x96", "--device", "cpu", "--workers", "0", "--json",
                  "--log-dir", str(tmp_path / "logs"))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # JSON alone on stdout
    assert set(out) == {"strategies", "tasks", "metric"}
    assert out["tasks"] == ["nyud:depth", "pascal:saliency"]
    assert out["metric"] == {"nyud:depth": "rmse", "pascal:saliency": "maxF"}
    assert set(out["strategies"]) == {"frozen", "naive"}
    for entry in out["strategies"].values():
        assert set(entry) == {"final", "forgetting", "matrix"}
        assert set(entry["final"]) == set(entry["forgetting"]) == set(out["tasks"])
        assert len(entry["matrix"]) == 2 and entry["matrix"][0][1] is None
    assert out["strategies"]["frozen"]["forgetting"] == {"nyud:depth": 0.0, "pascal:saliency": 0.0}
    assert "Headline" in result.stderr  # progress and metrics went to stderr
    assert (tmp_path / "logs" / "frozen.log").is_file() and (tmp_path / "logs" / "naive.log").is_file()


@pytest.mark.parametrize("args, message", [
    (["--strategies", "frozen,replay"], "ufl: error: unknown strategy 'replay'; known: ewc, frozen, lwf, naive, si"),
    (["--tasks", "nyud:depth,nyud:parts"], "ufl: error: unknown task 'parts' in 'nyud:parts'; known tasks: depth,"),
    (["--tasks", "pascal:depth"], "ufl: error: task 'depth' is not available on dataset 'pascal' (it provides:"),
    (["--checkpoint", "run", "--backbone", "resnet18"],
     "ufl: error: --checkpoint sets the backbone; drop --backbone"),
])
def test_cli_bad_names_give_one_line_errors(synthetic_root, args, message):
    result = _cli("--data-root", str(synthetic_root), "--device", "cpu", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_cli_missing_data_is_one_line(tmp_path):
    result = _cli("--data-root", str(tmp_path), "--tasks", "nyud:depth", "--strategies", "frozen",
                  "--pretrained", "none", "--device", "cpu")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"ufl: error: nyud data folder not found: {tmp_path / 'NYUD_MT'}")
    assert result.stderr.count("\n") == 1


def test_missing_split_file_is_a_data_error(synthetic_root, tmp_path):
    import shutil

    shutil.copytree(synthetic_root / "NYUD_MT", tmp_path / "NYUD_MT")
    (tmp_path / "NYUD_MT" / "gt_sets" / "val.txt").unlink()
    with pytest.raises(DataError, match="split file not found"):
        run_continual(_config(tmp_path, strategies=["frozen"], tasks=["nyud:depth"]))


def test_sizes_the_backbone_cannot_take_are_refused(synthetic_root):
    with pytest.raises(UflError, match=r"^--size 64x80: backbone hrnet_w18_small_v2 needs sides divisible by 32$"):
        run_continual(_config(synthetic_root, strategies=["frozen"], tasks=["nyud:depth"], size=(64, 80)))
