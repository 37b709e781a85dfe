"""The CLI contract: --help everywhere, one-line errors, python -m ufl."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from ufl.cli import main
from ufl.cli.base import UflGroup
from ufl.errors import DataError


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_top_level_help_lists_the_pipeline():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "make-synthetic" in result.output


@pytest.mark.parametrize("path", [p for p, _ in _commands(main)], ids=lambda p: " ".join(p))
def test_every_command_has_help(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command = dict(_commands(main))[path]
    assert command.help, f"{' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in ("help",):
            assert param.help, f"option {param.opts} of {' '.join(path)} has no help"


def _failing_group():
    @click.group(cls=UflGroup)
    @click.option("--debug", is_flag=True)
    @click.pass_context
    def cli(ctx, debug):
        ctx.ensure_object(dict)
        ctx.obj["debug"] = debug

    @cli.command()
    def boom():
        raise DataError("image file is truncated: /data/x.jpg; re-download it")

    return cli


def test_user_error_is_one_line_on_stderr_with_exit_status_1():
    result = CliRunner().invoke(_failing_group(), ["boom"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "ufl: error: image file is truncated: /data/x.jpg; re-download it"
    assert "Traceback" not in result.output


def test_debug_shows_the_exception():
    result = CliRunner().invoke(_failing_group(), ["--debug", "boom"])
    assert result.exit_code == 1
    assert isinstance(result.exception, DataError)


def test_python_dash_m_ufl_works():
    out = subprocess.run([sys.executable, "-m", "ufl", "--help"], capture_output=True, text=True, check=True)
    assert "Usage:" in out.stdout


# -- one option style across commands ---------------------------------------------------------------
def test_lists_are_comma_separated_and_repeating_also_works():
    from ufl.cli.base import parse_names

    assert parse_names(None, None, "a, b,,c") == ["a", "b", "c"]
    assert parse_names(None, None, ("a,b", "c", "a")) == ["a", "b", "c"]
    assert parse_names(None, None, ()) == []


@pytest.mark.parametrize("value, expected", [("96", (96, 96)), ("96x128", (96, 128)), ("96X128", (96, 128))])
def test_sizes_are_hxw_or_one_number_for_a_square(value, expected):
    from ufl.cli.base import parse_size

    assert parse_size(None, None, value) == expected


def test_demo_size_takes_hxw_like_every_other_command(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "d"), "--size", "96x100"])
    assert result.exit_code == 2 and "multiples of 32" in result.output  # parsed as HxW, then checked
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "d"), "--size", "big"])
    assert result.exit_code == 2 and "HxW" in result.output


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "CUDA:1"])
def test_device_accepts_cuda_n(value):
    from ufl.cli.base import parse_device

    assert parse_device(None, None, value) == value.lower()


def test_device_refuses_other_names_and_a_missing_gpu_in_one_line(tmp_path):
    from ufl.cli.base import parse_device
    from ufl.errors import UflError
    from ufl.runtime import resolve_device

    with pytest.raises(click.BadParameter, match="cuda:N"):
        parse_device(None, None, "gpu0")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(UflError, match="no CUDA GPU"):
            resolve_device("cuda:0")


COMPUTING = ["init", "cache-features", "add-task", "evaluate", "predict", "visualize", "pretrain", "continual",
             "reproduce", "profile", "demo"]
WITH_RESULT = ["init", "cache-features", "add-task", "evaluate", "list-tasks", "predict", "visualize", "pretrain",
               "continual", "reproduce", "profile", "demo", "make-synthetic"]


@pytest.mark.parametrize("name", COMPUTING)
def test_every_command_that_computes_takes_threads(name):
    options = {o for p in main.commands[name].params for o in getattr(p, "opts", [])}
    assert "--threads" in options and "--device" in options or name == "profile"


@pytest.mark.parametrize("name", WITH_RESULT)
def test_every_command_with_a_result_takes_json(name):
    assert "--json" in {o for p in main.commands[name].params for o in getattr(p, "opts", [])}


@pytest.mark.parametrize("name", ["pretrain", "add-task", "continual"])
def test_training_commands_take_a_log_dir(name):
    assert "--log-dir" in {o for p in main.commands[name].params for o in getattr(p, "opts", [])}


def test_threads_sets_torch_threads_and_defaults_to_omp_or_the_usable_cores(monkeypatch):
    import torch

    from ufl.runtime import default_threads, usable_cpus

    saved = torch.get_num_threads()
    try:
        result = CliRunner().invoke(main, ["profile", "--tasks", "1", "--models", "medusa", "--size", "64",
                                           "--backbone", "resnet18", "--threads", "1", "--json"])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert default_threads() == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert default_threads() == usable_cpus()
    finally:
        torch.set_num_threads(saved)


@pytest.mark.slow
def test_redirected_progress_has_no_carriage_returns_or_escapes(tmp_path):
    """tqdm draws only on a terminal: a log redirected to a file gets plain lines."""
    out = subprocess.run([sys.executable, "-m", "ufl", "make-synthetic", "--out", str(tmp_path / "d"), "--size", "32",
                          "--train", "2", "--val", "1"], capture_output=True, text=True, check=True)
    assert "\r" not in out.stderr and "\x1b" not in out.stderr
    assert out.stdout.count("NYUD_MT:") == 1


@pytest.mark.slow
def test_init_prints_its_result_once(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ufl", "init", "--backbone", "resnet18", "--pretrained", "none",
                          "--workspace", str(tmp_path / "ws")], capture_output=True, text=True, check=True)
    both = out.stdout + out.stderr
    assert out.stdout.count("workspace:") == 1 and both.count("fingerprint") == 1, both


def test_log_dir_without_tensorboard_is_one_line_saying_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were missing
    result = CliRunner().invoke(main, ["pretrain", "--data-root", str(tmp_path), "--out", str(tmp_path / "run"),
                                       "--log-dir", str(tmp_path / "tb"), "--device", "cpu"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "ufl: error: --log-dir writes TensorBoard events, which needs the tensorboard package: "
        "pip install 'ufl[tensorboard]' (or pip install tensorboard)"]
    assert not (tmp_path / "tb").exists() and not (tmp_path / "run").exists()
