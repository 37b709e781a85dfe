"""ufl/cfg: one source for the protocol (default.yaml + presets) and ``--config FILE`` on the training commands."""

import json

import click
import pytest
from click.testing import CliRunner

from ufl import cfg
from ufl.cli import main
from ufl.errors import UflError

#: The reference schedule (DESIGN.md section 6) as the code had it before ufl/cfg existed.
REFERENCE = {"backbone": "hrnet_w18_small_v2", "pretrained": "auto", "optimizer": "adam", "lr": 1e-4,
             "weight_decay": 1e-4, "poly_power": 0.9, "batch_size": 8, "seed": 0, "pretrain_epochs": 100,
             "head_epochs": 100, "continual_epochs": 10, "val_every": 1}


def test_presets_equal_what_reproduce_used_before():
    # The numbers of ufl/reproduce.py's Preset(...) literals before the move to YAML, by hand:
    # Preset(name, nyud_size, pascal_size, pretrain_epochs, head_epochs, batch_size, lr, views, pretrained, val_every)
    old = {
        "paper": ("paper", (480, 640), (512, 512), 100, 100, 8, 1e-4, 4, "auto", 5),
        "quick": ("quick", (96, 128), (96, 96), 16, 30, 8, 1e-3, 2, "none", 4),
        "transfer": ("transfer", (64, 96), (64, 64), 24, 32, 8, 1e-3, 1, "none", 24),
    }
    fields = ("name", "nyud_size", "pascal_size", "pretrain_epochs", "head_epochs", "batch_size", "lr", "views",
              "pretrained", "val_every")
    poster_and_controls = ("st", "mt-baseline", "mtan", "pad-net", "mti-net", "medusa", "random", "oracle")
    assert cfg.preset_names() == ("paper", "quick", "transfer")
    for name, values in old.items():
        preset = cfg.load_preset(name)
        assert tuple(getattr(preset, f) for f in fields) == values, name
        # what the old Preset did not hold is the reference schedule (PretrainConfig's / HeadTrainingConfig's)
        assert (preset.weight_decay, preset.poly_power, preset.optimizer, preset.backbone) == \
            (1e-4, 0.9, "adam", "hrnet_w18_small_v2")
    assert cfg.load_preset("paper").models == cfg.load_preset("quick").models == poster_and_controls
    for name in ("paper", "quick"):
        p = cfg.load_preset(name)
        assert (p.ufl_tasks, p.ufl_only, p.oracle_epochs) == (("human_parts", "saliency"), False, None)
    assert cfg.load_preset("quick").synthetic == "--size 96 --train 64 --val 24"
    assert cfg.load_preset("paper").synthetic == ""
    transfer = cfg.load_preset("transfer")
    assert transfer.models == ("medusa", "medusa-no-sfa", "medusa-no-msa", "medusa-no-ip", "random", "oracle")
    assert (transfer.ufl_tasks, transfer.ufl_only, transfer.oracle_epochs) == \
        (("human_parts", "saliency", "normals"), True, 32)
    assert transfer.synthetic == "--size 64 --train 96 --val 48 --nyud-persons 2"


def test_every_default_comes_from_default_yaml():
    from ufl.models import DEFAULT_BACKBONE
    from ufl.reproduce import PRESETS, ReproduceConfig
    from ufl.training.pretrain import PretrainConfig
    from ufl.workspace import HeadTrainingConfig

    assert {k: getattr(cfg.DEFAULTS, k) for k in REFERENCE} == REFERENCE
    assert (cfg.DEFAULTS.nyud_size, cfg.DEFAULTS.pascal_size, cfg.DEFAULTS.views) == ((480, 640), (512, 512), 1)
    assert DEFAULT_BACKBONE == "hrnet_w18_small_v2"
    p = PretrainConfig()
    assert (p.backbone, p.epochs, p.batch_size, p.lr, p.weight_decay, p.poly_power, p.val_every, p.seed) == \
        ("hrnet_w18_small_v2", 100, 8, 1e-4, 1e-4, 0.9, 1, 0)
    h = HeadTrainingConfig()
    assert (h.epochs, h.batch_size, h.lr, h.weight_decay, h.poly_power, h.seed) == (100, 8, 1e-4, 1e-4, 0.9, 0)
    assert h.to_dict()["schedule"] == "poly 0.9 per epoch" and h.to_dict()["optimizer"] == "Adam"
    assert ReproduceConfig(preset="paper").schedule == PRESETS["paper"]
    defaults = {name: {p.name: p.default for p in main.commands[name].params if isinstance(p, click.Option)}
                for name in ("pretrain", "add-task", "continual", "reproduce", "profile")}
    assert {k: defaults["pretrain"][k] for k in ("backbone", "pretrained", "epochs", "batch_size", "lr",
                                                 "weight_decay", "val_every", "seed")} == \
        {"backbone": "hrnet_w18_small_v2", "pretrained": "auto", "epochs": 100, "batch_size": 8, "lr": 1e-4,
         "weight_decay": 1e-4, "val_every": 1, "seed": 0}
    assert {k: defaults["add-task"][k] for k in ("epochs", "batch_size", "lr", "weight_decay", "seed")} == \
        {"epochs": 100, "batch_size": 8, "lr": 1e-4, "weight_decay": 1e-4, "seed": 0}
    assert {k: defaults["continual"][k] for k in ("backbone", "epochs", "batch_size", "lr", "weight_decay")} == \
        {"backbone": "hrnet_w18_small_v2", "epochs": 10, "batch_size": 8, "lr": 1e-4, "weight_decay": 1e-4}
    assert defaults["profile"]["backbone"] == "hrnet_w18_small_v2"
    assert ReproduceConfig().backbone == "hrnet_w18_small_v2"


@pytest.mark.slow
def test_config_file_trains_pretrain_and_the_command_line_overrides_it(synthetic_root, tmp_path):
    config = tmp_path / "schedule.yaml"
    config.write_text("pretrain_epochs: 2\nbatch_size: 4\nlr: 1e-3\npoly_power: 1.0\npretrained: none\n"
                      "nyud_size: [64, 96]\nhead_epochs: 7  # add-task's: ignored by pretrain\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["pretrain", "--config", str(config), "--data-root", str(synthetic_root),
                                       "--model", "mt-baseline", "--tasks", "semseg", "--aux", "", "--batch-size", "2",
                                       "--device", "cpu", "--workers", "0", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "checkpoint.json").read_text())["config"]
    # from the file: epochs, lr, poly power, size, weights; from the command line: the batch size
    assert (stored["epochs"], stored["lr"], stored["poly_power"], stored["size"], stored["pretrained"]) == \
        (2, 1e-3, 1.0, [64, 96], None)
    assert stored["batch_size"] == 2
    history = json.loads(result.stdout)["history"]
    assert [round(h["lr"], 12) for h in history] == [1e-3, 0.5e-3]  # 1e-3 * (1 - 1/2) ** 1.0, not ** 0.9


def test_config_file_sets_add_task_schedule(tmp_path, monkeypatch):
    seen = {}

    class FakeWorkspace:
        def __init__(self, path):
            pass

        def add_task(self, name, config, **kwargs):
            seen.update(name=name, config=config, views=kwargs["views"])
            raise UflError("stopped after the configuration was seen")

    monkeypatch.setattr("ufl.workspace.Workspace", FakeWorkspace)
    config = tmp_path / "heads.yaml"
    config.write_text("head_epochs: 3\nlr: 2.0e-3\nweight_decay: 0\npoly_power: 2\nviews: 2\npretrain_epochs: 1\n")
    result = CliRunner().invoke(main, ["add-task", "saliency", "--config", str(config), "--lr", "5e-4",
                                       "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "stopped after" in result.stderr
    training = seen["config"]
    assert (training.epochs, training.lr, training.weight_decay, training.poly_power, seen["views"]) == \
        (3, 5e-4, 0.0, 2.0, 2)
    assert training.to_dict()["schedule"] == "poly 2 per epoch"


def test_config_file_on_top_of_the_reproduce_preset(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("ufl.reproduce.reproduce", lambda config: seen.append(config) or
                        {"markdown": "", "files": {}})
    config = tmp_path / "mine.yaml"
    config.write_text("head_epochs: 5\nviews: 3\nmodels: [medusa, random]\nbackbone: resnet18\n")
    result = CliRunner().invoke(main, ["reproduce", "--preset", "transfer", "--config", str(config),
                                       "--pretrain-epochs", "2", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    schedule = seen[0].schedule
    assert (schedule.head_epochs, schedule.views, schedule.pretrain_epochs) == (5, 3, 2)  # file, file, flag
    assert (schedule.nyud_size, schedule.oracle_epochs, schedule.lr) == ((64, 96), 32, 1e-3)  # the preset's
    assert seen[0].models == ("medusa", "random") and seen[0].backbone == schedule.backbone == "resnet18"


@pytest.mark.parametrize("command", ["pretrain", "add-task", "continual", "reproduce", "demo"])
@pytest.mark.parametrize("text, message", [
    ("epoch: 3\n", "unknown key 'epoch'; did you mean"),
    ("lr: fast\n", "lr must be a number, got 'fast'"),
    ("batch_size: 2.5\n", "batch_size must be an integer, got 2.5"),
    ("nyud_size: [64]\n", "nyud_size must be a list of 2 values"),
    ("head_epochs: 0\n", "head_epochs must be at least 1, got 0"),
    ("optimizer: sgd\n", "optimizer must be adam"),
    ("- lr\n", "expected a mapping of keys to values"),
    ("lr: [\n", "not valid YAML"),
])
def test_bad_config_file_is_one_line(tmp_path, command, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = CliRunner().invoke(main, [command, "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"ufl: error: config file {config}: ")
    assert message in result.stderr and "Traceback" not in result.output


def test_missing_config_file_is_one_line(tmp_path):
    for path in (tmp_path / "nope.yaml", tmp_path):
        result = CliRunner().invoke(main, ["pretrain", "--config", str(path)])
        assert result.exit_code == 1 and result.stderr.count("\n") == 1
        assert result.stderr.startswith(f"ufl: error: config file {path} ")


def test_overrides_through_the_python_api():
    from ufl.reproduce import ReproduceConfig

    preset = cfg.load_preset("quick").override({"lr": "2e-4", "views": 1})  # PyYAML reads 2e-4 as a string
    assert (preset.lr, preset.views, preset.head_epochs) == (2e-4, 1, 30)
    assert ReproduceConfig(preset="quick", overrides={"head_epochs": 5}, head_epochs=7).schedule.head_epochs == 7
    with pytest.raises(cfg.ConfigError, match="unknown key 'epochs'"):
        ReproduceConfig(overrides={"epochs": 5})
    with pytest.raises(cfg.ConfigError, match="unknown preset 'huge'"):
        cfg.load_preset("huge")
