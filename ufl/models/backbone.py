"""The multi-scale backbone: any timm ``features_only`` model, last four levels.

The paper's "HRNet-18" is timm's ``hrnet_w18_small_v2`` with ``feature_location=''``: four branches
of 18/36/72/144 channels at strides 4/8/16/32 (about 3.9M parameters). timm also returns the stride-2
stem as a fifth level; like every other backbone we keep the **last four levels**
(``out_indices=(-4, -3, -2, -1)``), so ResNet-18 gives 64/128/256/512 channels at strides 4..32.
Channels and strides are read from timm's ``feature_info``, never hard-coded.

Plain (single-stride) ViTs get a ViTDet-style simple feature pyramid that is part of the backbone
(:mod:`ufl.models.pyramid`); Swin-style models are built with ``dynamic_img_size=True`` and their
channels-last (NHWC) maps are returned channels-first like every other backbone's.

The backbone takes RGB images in [0, 1] and normalises them itself with the pretrained config's
mean and std, so callers (datasets, caches, ``predict``) never have to know which normalisation a
backbone was trained with. Heads and feature caches are tied to :meth:`Backbone.fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

# NOTE: timm (which imports wandb and torchvision) is imported inside the functions that build or
# load a model, so that importing the models (a head for `ufl evaluate`) does not pay for it.

from ..cfg import DEFAULTS
from ..errors import UflError
from .pyramid import ViTFeaturePyramid, is_plain_vit

__all__ = ["Backbone", "DEFAULT_BACKBONE", "resolve_pretrained"]

logger = logging.getLogger(__name__)

#: The paper's HRNet-18 (``backbone`` of ``ufl/cfg/default.yaml``).
DEFAULT_BACKBONE = DEFAULTS.backbone
#: timm ``out_indices`` of the last four feature levels (negative indices count from the end).
LAST_FOUR_LEVELS = (-4, -3, -2, -1)


class Backbone(nn.Module):
    """A timm ``features_only`` backbone returning four feature maps.

    Args:
        name: timm model name (``hrnet_w18_small_v2``, ``resnet18``, ...).
        pretrained: ``None``/``False``: random init (a warning is logged); ``True``: timm's ImageNet
            weights (downloaded; a :class:`UflError` if that fails); a path: a local weights file
            (``.safetensors``, or ``.pth``/``.bin`` read with ``torch.load(weights_only=True)``)
            holding the timm model's state dict (the classification model's or the features-only
            model's keys).
        mean, std: per-channel RGB normalisation; default: the model's ``pretrained_cfg``.
        warn_random_init: log the random-init warning (off when weights are loaded right after,
            e.g. :meth:`from_config`).

    Shapes:
        ``forward(images)``: images (B, 3, H, W) RGB in [0, 1] -> list of 4 tensors
        (B, C_i, H / s_i, W / s_i) with ``C_i = self.channels[i]``, ``s_i = self.strides[i]``;
        H and W must be multiples of :attr:`size_divisor` (HRNet: 32).
    """

    def __init__(self, name: str = DEFAULT_BACKBONE, pretrained: bool | str | os.PathLike | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, *,
                 warn_random_init: bool = True):
        super().__init__()
        self.name = name
        self.frozen = False
        self.model = _create_features_model(name, pretrained is True)
        self._is_hrnet = _is_hrnet(name)
        # Swin's features_only maps are (B, H, W, C); the contract is (B, C, H, W).
        self._nhwc = getattr(self.model, "output_fmt", "NCHW") == "NHWC"
        if isinstance(pretrained, (str, os.PathLike)):
            _load_weights_file(self.model, name, Path(pretrained))
        elif not pretrained and warn_random_init:
            logger.warning("backbone %s is randomly initialised (no pretrained weights; --pretrained "
                           "imagenet or a weights file gives ImageNet features)", name)

        cfg = self.model.pretrained_cfg
        mean = tuple(float(m) for m in (mean if mean is not None else cfg["mean"]))
        std = tuple(float(s) for s in (std if std is not None else cfg["std"]))
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise UflError(f"backbone normalisation needs 3 means and 3 positive stds, got mean={mean} std={std}")
        # Non-persistent: the normalisation is part of config() and the fingerprint, not of the
        # timm state dict (so timm weight files load unchanged).
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    # -- the feature contract -------------------------------------------------------------------
    @property
    def channels(self) -> list[int]:
        """Channels of the four levels, from timm's ``feature_info`` (HRNet-18: 18, 36, 72, 144)."""
        return list(self.model.feature_info.channels())

    @property
    def strides(self) -> list[int]:
        """Output strides of the four levels (HRNet-18 and ResNets: 4, 8, 16, 32)."""
        return list(self.model.feature_info.reduction())

    @property
    def size_divisor(self) -> int:
        """Input H and W must be multiples of this (HRNet and ViT pyramids: 32, as they upsample by exact
        factors of 2; other backbones: 1). Callers resize or pad to it."""
        return max(self.strides) if self._is_hrnet else int(getattr(self.model, "size_divisor", 1))

    def check_size(self, size: Sequence[int]) -> None:
        """A :class:`UflError` (one line) when an input size ``(H, W)`` does not suit the backbone."""
        d = self.size_divisor
        h, w = int(size[0]), int(size[1])
        if h % d or w % d:
            raise UflError(f"input size {h}x{w} does not suit backbone {self.name}: its sides must be multiples "
                           f"of {d} (e.g. {max(d, h // d * d)}x{max(d, w // d * d)})")

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> normalised with the backbone's mean and std."""
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        d = self.size_divisor
        if images.shape[-2] % d or images.shape[-1] % d:
            raise ValueError(f"backbone {self.name} needs image sides divisible by {d}, got "
                             f"{images.shape[-2]}x{images.shape[-1]}; resize or pad the images")
        features = list(self.model(self.normalise(images)))
        return [f.permute(0, 3, 1, 2) for f in features] if self._nhwc else features

    # -- freezing -------------------------------------------------------------------------------
    def freeze(self) -> "Backbone":
        """Stop training: eval mode (BatchNorm statistics fixed) and no gradients, for good.

        NOTE: ``train()`` on a parent module (or avalanche's ``strategy.train()``) would switch
        BatchNorm back to training mode and drift its running statistics; the override of
        :meth:`train` keeps a frozen backbone in eval mode.
        """
        self.frozen = True
        self.requires_grad_(False)
        return self.train(False)

    def unfreeze(self) -> "Backbone":
        """Undo :meth:`freeze` (gradients on; the mode follows the next ``train()`` call)."""
        self.frozen = False
        self.requires_grad_(True)
        return self

    def train(self, mode: bool = True) -> "Backbone":
        return super().train(mode and not self.frozen)

    # -- identity -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-able arguments that rebuild this backbone's architecture and preprocessing."""
        return {"name": self.name, "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Backbone":
        """Rebuild from :meth:`config` (random init, no warning: load the weights next)."""
        return cls(config["name"], pretrained=None, mean=config.get("mean"), std=config.get("std"),
                   warn_random_init=False)

    def fingerprint(self) -> str:
        """Hex sha256 over the name, every parameter and buffer (sorted by name; dtype, shape and
        raw bytes) and the normalisation (mean, std). Equal fingerprints mean equal features."""
        h = hashlib.sha256()
        h.update(json.dumps(self.config(), sort_keys=True).encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            data = tensor.detach().to("cpu").contiguous()
            h.update(f"{key}|{data.dtype}|{tuple(data.shape)}|".encode())
            h.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def extra_repr(self) -> str:
        return f"name={self.name!r}, channels={self.channels}, strides={self.strides}, frozen={self.frozen}"


def _timm_kwargs(name: str) -> dict[str, Any]:
    """Model-specific timm arguments: HRNet's feature maps must be the raw branch outputs."""
    import timm

    if not timm.is_model(name):
        raise UflError(f"unknown backbone {name!r}; use a timm model name (see timm.list_models()), "
                       f"e.g. {DEFAULT_BACKBONE} or resnet18")
    kwargs: dict[str, Any] = {"features_only": True, "out_indices": LAST_FOUR_LEVELS}
    if _is_hrnet(name):
        # feature_location='' -> the 18/36/72/144 branch outputs, not the 128..1024 "incre" neck.
        kwargs["feature_location"] = ""
    return kwargs


def _is_hrnet(name: str) -> bool:
    import timm

    return timm.models.model_entrypoint(name).__module__ == "timm.models.hrnet"


def _create_features_model(name: str, download: bool) -> nn.Module:
    import timm

    kwargs = _timm_kwargs(name)
    try:
        if is_plain_vit(name):
            return ViTFeaturePyramid(name, pretrained=download)
        try:  # any input size for models that support it (Swin, ...): windows are padded
            return timm.create_model(name, pretrained=download, dynamic_img_size=True, **kwargs)
        except TypeError as e:
            if "dynamic_img_size" not in str(e):
                raise
        return timm.create_model(name, pretrained=download, **kwargs)
    except UflError:
        raise
    except Exception as e:  # hub/network/file errors come in many types
        if not download:
            raise UflError(f"backbone {name!r} cannot be built as a features_only model ({e}); "
                           f"pick another timm backbone") from None
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UflError(f"no pretrained weights could be fetched for backbone {name!r} ({reason}); "
                       f"pass --pretrained PATH to a local weights file, or --pretrained none for a random "
                       f"init") from None


def _load_weights_file(model: nn.Module, name: str, path: Path) -> None:
    """Load a local state dict into ``model`` with strict key checking.

    Keys of the classification model that the features-only model drops (its classifier, and for
    HRNet the incre/downsample/final layers of its classification neck) are ignored; any other
    missing, unexpected or mis-shaped key is an error.
    """
    import timm

    if not path.is_file():
        raise UflError(f"backbone weights file not found: {path}; pass an existing .safetensors/.pth file "
                       f"or --pretrained none for a random init")
    try:
        # timm's loader: safetensors, or torch.load(weights_only=True); unwraps 'state_dict'/'model'.
        state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as e:
        raise UflError(f"backbone weights file {path} is unreadable ({str(e).splitlines()[0][:200]}); "
                       f"use a safetensors or torch state-dict file") from None
    if state and all(k.startswith("model.") for k in state):  # saved from a ufl Backbone
        state = {k[len("model."):]: v for k, v in state.items()}
    if isinstance(model, ViTFeaturePyramid):
        model.load_weights(state, path)
        return

    expected = model.state_dict()
    with torch.device("meta"):  # the full model's key names only, without allocating its weights
        full_keys = set(timm.create_model(name, pretrained=False).state_dict())
    head_keys = full_keys - set(expected)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - head_keys)
    bad_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", bad_shape)):
        if keys:
            problems.append(f"{len(keys)} {what} key(s) e.g. {keys[0]!r}")
    if problems:
        raise UflError(f"backbone weights file {path} does not match {name!r} ({'; '.join(problems)}); "
                       f"pass the weights of that model or choose the matching --backbone")
    model.load_state_dict({k: state[k] for k in expected}, strict=True)


def resolve_pretrained(value: str | None, name: str = DEFAULT_BACKBONE) -> bool | str | None:
    """Turn the CLI's ``--pretrained`` into :class:`Backbone`'s argument.

    ``none`` -> random init; ``imagenet`` -> timm's ImageNet weights (an error if they cannot be
    fetched); ``auto`` -> ImageNet weights when they are in the local Hugging Face cache or the hub
    answers within two seconds, else random init with a warning; anything else is a weights file.
    """
    if value is None or value.lower() in ("none", "random"):
        return None
    if value.lower() == "imagenet":
        return True
    if value.lower() != "auto":
        return value
    if _weights_reachable(name):
        return True
    logger.warning("WARNING: no ImageNet weights for %s are cached or reachable (offline?): the backbone is "
                   "RANDOMLY INITIALISED and everything trained on it starts from scratch (recorded in the "
                   "checkpoint/workspace); pass --pretrained none to choose this on purpose, or --pretrained PATH "
                   "for a local weights file", name)
    return None


def _weights_reachable(name: str) -> bool:
    """Whether timm can load ``name``'s default pretrained weights without waiting on a dead network."""
    import timm

    if not timm.is_model(name):
        return False
    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(hub_id, filename), str):
                return True
    except Exception:  # an old or missing huggingface_hub: fall through to the network probe
        pass
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
        return True
    except OSError:
        return False
