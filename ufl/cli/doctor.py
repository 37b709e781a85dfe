"""Safety and recovery commands: ``ufl doctor`` and ``ufl register-rescued``."""

from __future__ import annotations

import json
import sys

import click

from .base import main, workspace_option


@main.command("doctor")
@workspace_option
@click.option("--fix", is_flag=True,
              help="Remove the litter of interrupted runs (temporary files, unfinished rebuilds, orphan heads, "
                   "stale shards); never a registered head or cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def doctor_cmd(workspace, fix, as_json) -> None:
    """Check a workspace: manifest schema and records, backbone fingerprint, head hashes, every
    cache (complete, this backbone, checksums where the cache has them), stale temporary files
    and orphan heads.

    Exit status 0 when all is well, 1 when something is wrong (after --fix: when something is
    still wrong).
    """
    from ..workspace.doctor import doctor

    report = doctor(workspace, fix=fix)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(0 if report.ok else 1)


@main.command("register-rescued")
@workspace_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--replace", is_flag=True, help="Replace a task of that name that is registered meanwhile.")
def register_rescued_cmd(workspace, file, replace) -> None:
    """Register a trained head that `ufl add-task` could not save (a full disk, a read-only folder)
    and kept in the rescue FILE its error named; the file is deleted once registered."""
    from ..workspace import Workspace

    name = Workspace(workspace).register_rescued(file, replace=replace)
    click.echo(f"registered {name} from {file}")
