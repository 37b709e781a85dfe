"""Procedural NYUD-like and PASCAL-like multi-task data, written in the official on-disk formats
(``ufl make-synthetic``); see :mod:`ufl.synthetic.generate`."""

from .generate import (CONTEXT_IDS, MAX_NYUD_PERSONS, PERSON_PARTS, SYNTHETIC_MARKER, VOC_TO_CONTEXT, is_synthetic,
                       make_synthetic, nyud_intrinsics, render_nyud_sample, render_pascal_sample)

__all__ = ["make_synthetic", "is_synthetic", "SYNTHETIC_MARKER", "nyud_intrinsics", "render_nyud_sample",
           "render_pascal_sample", "VOC_TO_CONTEXT", "CONTEXT_IDS", "PERSON_PARTS", "MAX_NYUD_PERSONS"]
