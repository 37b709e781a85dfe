"""A simple feature pyramid that turns a plain (single-stride) ViT into a four-level backbone.

Plain ViTs (``vit_small_patch14_dinov2``, ``vit_small_patch16_224``, DeiT, EVA, ...) produce one
token grid at one stride. Medusa's heads and the feature caches expect four levels at strides
4/8/16/32, finest first. :class:`ViTFeaturePyramid` provides them, after ViTDet's *simple feature
pyramid* (Li, Mao, Girshick, He, "Exploring Plain Vision Transformer Backbones for Object
Detection", ECCV 2022), with DPT's choice of taking the levels from four different blocks
(Ranftl et al., "Vision Transformers for Dense Prediction", ICCV 2021):

=====  ======================  ==========================================  =========
level  source block (depth d)  operation on the (B, D, H/16, W/16) grid     channels
=====  ======================  ==========================================  =========
s4     d/4                     2x2 stride-2 deconv (D -> D/2), again (-> D/4)  D/4
s8     d/2                     2x2 stride-2 deconv (D -> D/2)                 D/2
s16    3d/4                    identity                                     D
s32    d                       2x2 max pool (ViTDet)                        D
=====  ======================  ==========================================  =========

Block outputs come from timm's ``forward_intermediates`` with the trunk's final norm applied to each
(as DINOv2's linear probes read them) and ``dynamic_img_size=True``, so any input size whose sides
are multiples of 32 works; the position embedding is resampled by timm.

The token grid always has stride 16: a trunk with another patch size (DINOv2's 14) sees the image
resized by ``patch / 16`` first (bilinear), so its grid is (H/16, W/16) and the four levels have
exact strides 4/8/16/32 (DINOv2 at 518 px -> 37x37 tokens becomes 512 px -> 32x32 tokens).

The pyramid's deconvolutions belong to the backbone: they are in its state dict and fingerprint and
are frozen with it. NOTE: ViTDet trains them (with LayerNorm + GELU between the two deconvs); here a
backbone can be frozen straight from ImageNet/DINOv2 weights, so they start as a fixed,
information-preserving *linear* map instead: a seeded orthogonal channel projection (scaled to keep
the feature norm) repeated over the 2x2 kernel, i.e. projection + nearest upsampling, and no
nonlinearity between the two deconvs. ``ufl pretrain`` trains them like any backbone weight.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import UflError
from ..tensors import resize

__all__ = ["ViTFeaturePyramid", "SimpleFeaturePyramid", "is_plain_vit", "pyramid_blocks", "GRID_STRIDE",
           "PYRAMID_STRIDES", "PYRAMID_SEED"]

#: Stride of the token grid the pyramid is built on (the image is resized to make it so).
GRID_STRIDE = 16
#: Output strides of the four levels, finest first.
PYRAMID_STRIDES = (4, 8, 16, 32)
#: Seed of the pyramid's deterministic initialisation (equal seeds -> equal fingerprints).
PYRAMID_SEED = 0


def is_plain_vit(name: str) -> bool:
    """Whether timm model ``name`` is a plain transformer: one stride for every block and a
    ``forward_intermediates`` method (ViT, DeiT, DINOv2, EVA, ...). Built on the meta device, so
    this costs no memory and no download."""
    import timm  # here, not at the top: loading a head (ufl evaluate) should not import timm

    if not timm.is_model(name):
        return False
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except Exception:  # a model that cannot be built on meta is no plain ViT we know how to wrap
        return False
    info = getattr(model, "feature_info", None) or []
    reductions = {int(i["reduction"]) for i in info if isinstance(i, dict) and "reduction" in i}
    return (len(reductions) == 1 and hasattr(model, "forward_intermediates") and hasattr(model, "blocks")
            and hasattr(model, "patch_embed"))


def pyramid_blocks(depth: int) -> list[int]:
    """Indices of the four blocks feeding the levels, finest level first: the ends of the four
    quarters of the trunk (depth 12 -> 2, 5, 8, 11, as DPT reads ViT-B)."""
    if depth < 4:
        raise UflError(f"a feature pyramid needs a transformer with at least 4 blocks, got {depth}")
    return [depth * q // 4 - 1 for q in (1, 2, 3, 4)]


def _projection_deconv(in_channels: int, out_channels: int, generator: torch.Generator) -> nn.ConvTranspose2d:
    """A 2x2 stride-2 deconvolution initialised as an orthogonal projection followed by nearest
    upsampling; the projection is scaled by sqrt(in / out) so a feature's expected norm is kept."""
    deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
    with torch.no_grad():
        # (in, out) with orthonormal columns, drawn on the CPU from the seeded generator whatever the
        # default device (copy_ onto a meta device, as `ufl profile` builds, is a no-op).
        q, _ = torch.linalg.qr(torch.randn(in_channels, out_channels, generator=generator, device="cpu"))
        weight = q * math.sqrt(in_channels / out_channels)
        deconv.weight.copy_(weight[:, :, None, None].expand(-1, -1, 2, 2))
        deconv.bias.zero_()
    return deconv


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's pyramid on four (B, D, h, w) grids at stride 16 -> strides 4/8/16/32 with channels
    D/4, D/2, D, D (see the module docstring for the initialisation)."""

    def __init__(self, dim: int, seed: int = PYRAMID_SEED):
        super().__init__()
        if dim < 4 or dim % 4:
            raise UflError(f"the feature pyramid needs an embedding width divisible by 4, got {dim}")
        self.dim = int(dim)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        self.up4 = nn.Sequential(_projection_deconv(dim, dim // 2, generator),
                                 _projection_deconv(dim // 2, dim // 4, generator))
        self.up8 = _projection_deconv(dim, dim // 2, generator)
        self.down32 = nn.MaxPool2d(kernel_size=2, stride=2)

    @property
    def channels(self) -> list[int]:
        return [self.dim // 4, self.dim // 2, self.dim, self.dim]

    def forward(self, grids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        g4, g8, g16, g32 = grids
        return [self.up4(g4), self.up8(g8), g16, self.down32(g32)]


class ViTFeaturePyramid(nn.Module):
    """A plain timm ViT (``trunk``) plus :class:`SimpleFeaturePyramid` (``neck``), shaped like a timm
    ``features_only`` model: ``forward`` returns four NCHW maps, ``feature_info`` carries their
    channels and strides, ``pretrained_cfg`` the trunk's normalisation.

    Args:
        name: timm model name of a plain ViT (see :func:`is_plain_vit`).
        pretrained: download timm's default weights for ``name``.

    Shapes: images (B, 3, H, W), already normalised, H and W multiples of 32 (:attr:`size_divisor`)
    -> [(B, D/4, H/4, W/4), (B, D/2, H/8, W/8), (B, D, H/16, W/16), (B, D, H/32, W/32)].
    """

    size_divisor = 32

    def __init__(self, name: str, pretrained: bool = False):
        super().__init__()
        self.name = name
        # num_classes=0: no classifier; dynamic_img_size: any input size (pos-embed resampled).
        import timm
        from timm.models._features import FeatureInfo

        self.trunk = timm.create_model(name, pretrained=pretrained, num_classes=0, dynamic_img_size=True)
        self.blocks = pyramid_blocks(len(self.trunk.blocks))
        # Drop the blocks after the last one read (none here) and the head; keep the final norm.
        self.trunk.prune_intermediate_layers(self.blocks, prune_norm=False, prune_head=True)
        patch = self.trunk.patch_embed.patch_size
        self.patch = (int(patch[0]), int(patch[1]))
        self.dim = int(self.trunk.embed_dim)
        self.neck = SimpleFeaturePyramid(self.dim)
        self.pretrained_cfg = dict(self.trunk.pretrained_cfg)
        self.feature_info = FeatureInfo(
            [{"num_chs": c, "reduction": s, "module": f"neck.s{s}"} for c, s in zip(self.neck.channels, PYRAMID_STRIDES)],
            out_indices=(0, 1, 2, 3))

    def tokens_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the trunk sees, so that its token grid is (height / 16, width / 16)."""
        return height // GRID_STRIDE * self.patch[0], width // GRID_STRIDE * self.patch[1]

    def grids(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The four blocks' token grids (B, D, H/16, W/16), the final norm applied to each."""
        size = self.tokens_size(images.shape[-2], images.shape[-1])
        images = resize(images, size)
        return self.trunk.forward_intermediates(images, indices=self.blocks, norm=True, output_fmt="NCHW",
                                                intermediates_only=True)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.neck(self.grids(images))

    # -- weights --------------------------------------------------------------------------------
    def load_weights(self, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
        """Load a state dict that is either a timm classification model's (the trunk's weights; the
        pyramid keeps its seeded initialisation) or this module's own (``trunk.*`` and ``neck.*``).

        Keys of the classifier the trunk dropped are ignored; any other missing, unexpected or
        mis-shaped trunk key is a :class:`UflError` naming ``source``.
        """
        import timm

        own = self.state_dict()
        if not any(k.startswith(("trunk.", "neck.")) for k in state):
            state = {f"trunk.{k}": v for k, v in state.items()}
        with torch.device("meta"):
            full = {f"trunk.{k}" for k in timm.create_model(self.name, pretrained=False).state_dict()}
        ignorable = full - set(own)
        trunk_keys = {k for k in own if k.startswith("trunk.")}
        missing = sorted(trunk_keys - set(state))
        unexpected = sorted(set(state) - set(own) - ignorable)
        bad_shape = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
        problems = [f"{len(keys)} {what} key(s) e.g. {keys[0]!r}"
                    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", bad_shape))
                    if keys]
        if problems:
            raise UflError(f"backbone weights file {source} does not match {self.name!r} ({'; '.join(problems)}); "
                           f"pass the weights of that model or choose the matching --backbone")
        self.load_state_dict({k: state[k] for k in own if k in state}, strict=False)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, blocks={self.blocks}, patch={self.patch}, channels={self.neck.channels}"


def pyramid_cost(backbone, size: Sequence[int]) -> dict[str, Any] | None:
    """Parameters and GFLOPs (multiply-add = 2) of a backbone's feature pyramid against its trunk at
    input ``size`` (H, W), batch 1; ``None`` for backbones without a pyramid."""
    from torch.utils.flop_counter import FlopCounterMode

    model = getattr(backbone, "model", backbone)
    if not isinstance(model, ViTFeaturePyramid):
        return None
    device = next(model.parameters()).device
    images = torch.zeros(1, 3, int(size[0]), int(size[1]), device=device)
    with torch.no_grad():
        with FlopCounterMode(display=False) as trunk_counter:
            grids = model.grids(images)
        with FlopCounterMode(display=False) as neck_counter:
            model.neck(grids)
    return {"trunk_params": int(sum(p.numel() for p in model.trunk.parameters())),
            "pyramid_params": int(sum(p.numel() for p in model.neck.parameters())),
            "trunk_gflops": trunk_counter.get_total_flops() / 1e9,
            "pyramid_gflops": neck_counter.get_total_flops() / 1e9,
            "blocks": list(model.blocks), "channels": list(model.neck.channels)}
