"""Procedural NYUD-like and PASCAL-like multi-task data, written in the official on-disk formats.

``make_synthetic(out)`` (``ufl make-synthetic``) writes ``out/NYUD_MT/`` and ``out/PASCAL_MT/``
exactly as the public MTI-Net archives unpack (DESIGN.md section 4), so that the real loaders, and
any other reader of those formats, read them. Scenes are built from simple 3D primitives and
rendered by a numpy ray caster; every label is derived from the same ray hits as the RGB image, so
depth, normals, classes, instance edges, person parts and saliency agree with each other and are
all visible in the image.

Modules, by concern:

- :mod:`~ufl.synthetic.render`: the ray caster (camera, primitives, Lambertian shading).
- :mod:`~ufl.synthetic.scene`: pieces, things, models and scenes; rendering a scene; materials.
- :mod:`~ufl.synthetic.person`: the articulated person with the 24 PASCAL-Part parts.
- :mod:`~ufl.synthetic.furniture` and :mod:`~ufl.synthetic.indoor`: NYUD-like rooms, their
  furniture and wall decorations, the Kinect-like depth (:func:`render_nyud_sample`).
- :mod:`~ufl.synthetic.outdoor`: PASCAL-like photos of persons, vehicles, animals and objects in
  front of an outdoor background (:func:`render_pascal_sample`).
- :mod:`~ufl.synthetic.formats`: the NYUD_MT / PASCAL_MT files (JPEG, PNG palettes, .mat, .npy,
  ImageSets, the marker file).
- :mod:`~ufl.synthetic.generate`: :func:`make_synthetic`, the driver (seeding, worker processes,
  atomic creation of each dataset folder).
- :mod:`~ufl.synthetic.contract`: :data:`SYNTHETIC_MARKER`, :func:`is_synthetic` and
  :data:`MAX_NYUD_PERSONS`, importable without numpy.

The names below are loaded on first use, so that ``import ufl.synthetic`` (the CLI, the provenance
check) stays light.
"""

from importlib import import_module

_LAZY = {
    "make_synthetic": "generate",
    **dict.fromkeys(("SYNTHETIC_MARKER", "is_synthetic", "MAX_NYUD_PERSONS"), "contract"),
    **dict.fromkeys(("nyud_intrinsics", "render_nyud_sample", "kinect_depth"), "indoor"),
    **dict.fromkeys(("render_pascal_sample", "VOC_TO_CONTEXT", "CONTEXT_IDS"), "outdoor"),
    **dict.fromkeys(("PERSON_PARTS", "person_model"), "person"),
    **dict.fromkeys(("Piece", "Thing", "Model", "Scene", "Rendered", "render_scene"), "scene"),
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
