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
