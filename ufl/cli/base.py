"""The ``ufl`` click group, shared options, and the one-line error contract.

Commands live in the sibling modules (one per area) and are thin: parse options, call one
function of the Python API, print. Errors a user can cause (:class:`ufl.errors.UflError`) end as
one line on stderr and exit status 1; ``ufl --debug ...`` (or ``UFL_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import sys

import click
from safetensors import SafetensorError

from feature_cache.errors import FeatureCacheError

from ..cfg import DEFAULTS, read_config
from ..errors import UflError

__all__ = ["main", "data_root_option", "workspace_option", "device_option", "seed_option", "parse_size",
           "parse_names", "pretrained_option", "optimizer_options", "threads_option", "json_option", "echo_json",
           "parse_device", "list_option_help", "FiniteFloat", "os_error_message", "check_task_names",
           "parse_task_names", "precision_option", "config_option", "backbone_option"]


def _debug_enabled(ctx: click.Context | None) -> bool:
    if os.environ.get("UFL_DEBUG", "") not in ("", "0"):
        return True
    while ctx is not None:
        if isinstance(ctx.obj, dict) and ctx.obj.get("debug"):
            return True
        ctx = ctx.parent
    return False


class UflGroup(click.Group):
    """A click group that turns :class:`UflError`, feature-cache errors and a few OS errors into one
    clear line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Commands in the pipeline's order (the order their modules register them), not A-Z."""
        return list(self.commands)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (UflError, FeatureCacheError, OSError, SafetensorError) as e:
            if _debug_enabled(ctx):
                raise
            if isinstance(e, OSError) and not isinstance(e, (FileNotFoundError, IsADirectoryError)):
                message = os_error_message(e)
            elif isinstance(e, SafetensorError):
                message = f"a weights file is unreadable or could not be written ({one_line(e)}); re-create it"
            else:
                message = one_line(e)
                if isinstance(e, OSError) and e.filename and str(e.filename) not in message:
                    message = f"{message}: {e.filename}"
            click.echo(f"ufl: error: {message}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            if _debug_enabled(ctx):
                raise
            click.echo("ufl: interrupted", err=True)
            sys.exit(130)


_OS_ADVICE = {
    errno.ENOSPC: "free space on that disk (or point the path elsewhere) and run the command again; what was "
                  "stored before is unchanged",
    errno.EDQUOT: "free space within your disk quota and run the command again",
    errno.EACCES: "check the permissions of that path (or choose another) and run the command again",
    errno.EPERM: "check the permissions of that path (or choose another) and run the command again",
    errno.EROFS: "that file system is read-only: choose a writable path",
    errno.ENAMETOOLONG: "a file name or path is too long: use a shorter name or a shorter folder",
    errno.ENOTDIR: "a part of that path is a file, not a folder: choose another path",
    errno.EISDIR: "that path is a folder, not a file: give a file path",
    errno.EEXIST: "that path exists already: remove it or choose another",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer --workers",
    errno.EIO: "the disk reported an I/O error: check the disk",
}


def os_error_message(error: OSError) -> str:
    """One line for an operating-system error: what failed, on which path, and what to do."""
    what = error.strerror or one_line(error) or type(error).__name__
    where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f)
    code = error.errno
    if code is None:  # e.g. h5py's errors carry the OS error only in their text
        code = next((c for c in _OS_ADVICE if os.strerror(c).lower() in what.lower()), None)
    advice = _OS_ADVICE.get(code, "fix that and run the command again")
    return one_line(f"{what}{f': {where}' if where else ''}; {advice}")


def one_line(error: BaseException) -> str:
    """The error's message on one line; for an error raised in a DataLoader worker (whose message
    carries the worker's traceback) the original message."""
    message = str(error)
    if "Original Traceback" in message:
        last = [line for line in message.strip().splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(message.split())


@click.group(cls=UflGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="ufl")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """ufl: universal feature learning with Medusa.

    Train one multi-scale backbone multi-task (Medusa), freeze it, cache its features once, and add
    new dense-prediction tasks one at a time by training only a small attention head. Earlier tasks
    keep their exact predictions.

    \b
    Typical session:
      ufl make-synthetic --out data          # or point --data-root at NYUD_MT/ and PASCAL_MT/
      ufl pretrain --dataset nyud --tasks semseg,depth --aux normals,edges --out runs/medusa
      ufl init --checkpoint runs/medusa
      ufl cache-features --dataset pascal
      ufl add-task human_parts && ufl add-task saliency
      ufl evaluate --all-tasks
    Or run all of it on synthetic data: ufl demo
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="ufl: %(message)s",
                        stream=sys.stderr)
    for noisy in ("timm", "h5py", "matplotlib", "PIL", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _folder_option(name: str, envvar: str, default: str, help: str):
    """A folder option with an environment variable and a default, both shown in ``--help``."""
    return click.option(name, type=click.Path(file_okay=False), envvar=envvar, default=default,
                        show_default=True, show_envvar=True, help=help)


data_root_option = _folder_option(
    "--data-root", "UFL_DATA_ROOT", "data", "Folder holding NYUD_MT/ and PASCAL_MT/ (as the public MTI-Net archives unpack).")

workspace_option = _folder_option(
    "--workspace", "UFL_WORKSPACE", "ufl-workspace", "Workspace folder (manifest, backbone, heads, feature caches).")


def parse_device(ctx, param, value):
    """Click callback: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (checked here; whether that GPU exists is
    checked when it is used)."""
    if value is None:
        return value
    text = value.strip().lower()
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise click.BadParameter(f"expected auto, cpu, cuda or cuda:N (e.g. cuda:0), got {value!r}")


def device_option(f):
    return click.option(
        "--device", default="auto", show_default=True, callback=parse_device, metavar="auto|cpu|cuda|cuda:N",
        help="Where to run; auto picks CUDA when available; cuda:N picks GPU N.",
    )(f)


class FiniteFloat(click.FloatRange):
    """A float option that must be finite (``nan``, ``inf`` refused, which ``click.FloatRange``
    lets through) and within the given range; use it for every float option."""

    name = "float"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def _set_threads(ctx, param, value):
    """Click callback of ``--threads``: set torch's CPU threads (default: $OMP_NUM_THREADS when set,
    else the CPUs this process may use)."""
    if value is None:
        from ..runtime import default_threads

        value = default_threads()
    import torch

    if torch.get_num_threads() != value:
        torch.set_num_threads(value)
    return value


def threads_option(f):
    """``--threads N``: torch's CPU threads for the command (not exposed to the command function)."""
    return click.option(
        "--threads", type=click.IntRange(1), default=None, envvar="UFL_THREADS", show_envvar=True,
        callback=_set_threads, expose_value=False,
        help="CPU threads for torch (default: $OMP_NUM_THREADS when set, else every core this process may "
             "use); fewer leave cores to others on a shared machine.",
    )(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout.")(f)


def echo_json(data) -> None:
    """One JSON object on stdout (NaN -> null, paths -> strings)."""
    import json

    from ..io import json_safe

    click.echo(json.dumps(json_safe(data), default=str))


def optimizer_options(schedule: str = "poly decay, power 0.9, per epoch"):
    """``--lr`` and ``--weight-decay`` of Adam, with the reference protocol's defaults."""
    def decorate(f):
        f = click.option("--weight-decay", type=FiniteFloat(min=0), default=DEFAULTS.weight_decay, show_default=True,
                         help="Adam weight decay.")(f)
        return click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=DEFAULTS.lr, show_default=True,
                            help=f"Adam learning rate ({schedule}).")(f)
    return decorate


def seed_option(f):
    return click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Random seed.")(f)


def parse_size(ctx, param, value):
    """Click callback: ``HxW`` (or ``N`` for a square) -> ``(H, W)``; ``None`` stays ``None``."""
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise click.BadParameter(f"expected HxW like 480x640 (or one number for a square), got {value!r}")
    if min(parts) < 32:
        raise click.BadParameter(f"both sides must be at least 32 pixels, got {value!r}")
    return tuple(parts)


def check_task_names(ctx, param, value):
    """Click callback: every task name given must be a valid name (:data:`ufl.taskspec.TASK_NAME`);
    else a :class:`ufl.errors.SpecError` (one line, exit status 1, like every other bad input)."""
    from ..taskspec import check_task_name

    names = [value] if isinstance(value, str) else list(value or [])
    what = param.opts[0] if param.opts and param.opts[0].startswith("-") else "task name"
    for name in names:
        check_task_name(name, what)
    return value


def parse_names(ctx, param, value):
    """Click callback: ``a,b,c`` -> ``["a", "b", "c"]`` (empty -> ``[]``). For an option given several
    times (``multiple=True``) each value is split and the lists are joined, duplicates dropped:
    ``--task a,b --task c`` == ``--task a,b,c``."""
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    names = [v.strip() for text in values for v in str(text).split(",") if v.strip()]
    return list(dict.fromkeys(names))


def parse_task_names(ctx, param, value):
    """Click callback: :func:`parse_names`, each name checked by :func:`check_task_names`."""
    return check_task_names(ctx, param, parse_names(ctx, param, value))


def list_option_help(text: str) -> str:
    """The help of a list option, with the one list style of every command."""
    return f"{text} Comma-separated (a,b); repeating the option also works."


def pretrained_option(f):
    return click.option(
        "--pretrained", default=DEFAULTS.pretrained, show_default=True, metavar="auto|imagenet|none|PATH",
        help="Backbone weights: timm's ImageNet weights (auto: when cached or reachable, else random "
             "init, said in the log), none for random init, or a local .safetensors/.pth file.",
    )(f)


def eval_resolution_option(f):
    return click.option(
        "--eval-resolution", type=click.Choice(["original", "working"]), default="original", show_default=True,
        help="Evaluate at each val image's original size (logits resized bilinearly, as the benchmark) or at "
             "the working size (cheaper; not the benchmark's numbers).")(f)
def precision_option(what: str, default_help: str):
    """``--precision {fp32,bf16,fp16}``: the autocast of ``what`` (the names of ufl.runtime.PRECISIONS)."""
    def decorate(f):
        return click.option(
            "--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
            help=f"Autocast of {what}: fp32 (none), bf16 (CPU or GPU), fp16 (GPU only, with gradient "
                 f"scaling). Default: {default_help}.",
        )(f)
    return decorate


def backbone_option(help: str = "timm features_only backbone (its last four levels are used)."):
    """``--backbone NAME``, by default the reference backbone (``backbone`` of ``ufl/cfg/default.yaml``)."""
    return click.option("--backbone", default=DEFAULTS.backbone, show_default=True, help=help)


def config_option(keys: dict[str, str], note: str = ""):
    """``--config FILE.yaml``: protocol keys (those of ``ufl/cfg/default.yaml``, :class:`ufl.cfg.Preset`)
    read by :func:`ufl.cfg.read_config`. ``keys`` maps each key the command has an option for to that
    option's parameter name: the file's value becomes the option's default, so the command line
    overrides the file and the file the defaults. The command receives the file's checked keys as
    ``config`` (``{}`` without a file) for the keys it uses without an option; keys it has no use
    for are ignored (one file can serve every command). A missing file, an unknown key or a value
    of the wrong type is a :class:`ufl.cfg.ConfigError` (one line, exit status 1)."""
    def load(ctx: click.Context, param, value):
        if value is None:
            return {}
        overrides = read_config(value)
        ctx.default_map = {**(ctx.default_map or {}),
                           **{name: overrides[key] for key, name in keys.items() if key in overrides}}
        return overrides

    used = note if not keys else f"used here: {', '.join(keys)}{f'; {note}' if note else ''}; other keys are ignored"
    return click.option(
        "--config", "config", type=click.Path(), default=None, is_eager=True, expose_value=True,
        callback=load, metavar="FILE.yaml",
        help=f"Protocol settings as YAML, keys as in ufl/cfg/default.yaml ({used}). The command line overrides "
             f"the file, the file the defaults.")
