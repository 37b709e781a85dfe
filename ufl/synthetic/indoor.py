"""NYUD-like samples: furnished rooms seen by a Kinect-like camera.

Indoor rooms (bedroom, living room, office, kitchen, bathroom) with the furniture of
:mod:`ufl.synthetic.furniture` and wall decorations (windows with curtains or blinds, doors,
pictures, whiteboards, mirrors, towels), a Kinect-like camera (intrinsics of NYUD-v2 scaled to the
image), depth in 0.5..10 m with realistic holes (glass, mirrors, dark screens, the projector's
shadow band beside near objects, out of range). :func:`render_nyud_sample` returns one sample as
arrays in the conventions of the NYUD_MT files (:mod:`ufl.synthetic.formats` writes them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from skimage.morphology import thin
from skimage.segmentation import find_boundaries

from .furniture import NYU, ROOMS, standing_person
from .render import Box, Camera, Cylinder, Material, Plane, Rect, sphere
from .scene import CLOTH, FABRIC, METAL, PAINT, WOOD, Piece, Scene, Thing, look, pick, render_scene

__all__ = ["nyud_intrinsics", "render_nyud_sample", "kinect_depth"]

# NYUD-v2 RGB intrinsics at 640 x 480 (Silberman et al.'s toolbox, camera_params.m).
_NYUD_FX, _NYUD_FY, _NYUD_CX, _NYUD_CY = 518.8579, 519.4696, 325.5824, 253.7362
_KINECT_BASELINE = 0.075  # metres between the Kinect's IR projector and IR camera
_KINECT_RANGE = (0.5, 10.0)  # metres: nearer or farther reads 0 (no measurement)


def nyud_intrinsics(height: int, width: int) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` in pixels of the synthetic NYUD camera: NYUD-v2's scaled to the image."""
    return (_NYUD_FX * width / 640, _NYUD_FY * height / 480, _NYUD_CX * width / 640, _NYUD_CY * height / 480)


class _Layout:
    """Non-overlapping footprints (axis-aligned rectangles on the floor) in a room."""

    def __init__(self, width: float, depth: float, camera_xz: tuple[float, float]):
        self.width, self.depth = width, depth
        cx, cz = camera_xz
        self.rects = [(cx - 0.6, cx + 0.6, cz - 0.8, 10.0)]  # keep the space around the camera free

    def _free(self, x0, x1, z0, z1) -> bool:
        return all(x1 <= a or x0 >= b or z1 <= c or z0 >= d for a, b, c, d in self.rects)

    def against_wall(self, rng, w: float, d: float, walls: Sequence[str] = ("back", "left", "right")):
        """(position, yaw) for a footprint w x d with its back against a wall, or None."""
        W, D = self.width, self.depth
        for _ in range(25):
            wall = pick(rng, walls)
            if wall == "back":
                x = rng.uniform(-W / 2 + w / 2, W / 2 - w / 2) if W > w else 0.0
                rect, pos, yaw = (x - w / 2, x + w / 2, -D, -D + d), (x, 0.0, -D + d / 2 + 0.005), 0.0
            else:
                s = -1.0 if wall == "left" else 1.0
                z = rng.uniform(-D + w / 2, -1.2)
                edge = s * W / 2
                rect = (min(edge, edge - s * d), max(edge, edge - s * d), z - w / 2, z + w / 2)
                pos, yaw = (edge - s * (d / 2 + 0.005), 0.0, z), -s * math.pi / 2
            if rect[0] >= -W / 2 - 1e-9 and rect[1] <= W / 2 + 1e-9 and rect[2] >= -D and self._free(*rect):
                self.rects.append(rect)
                return pos, yaw
        return None

    def in_middle(self, rng, w: float, d: float):
        """(position, yaw) for a footprint w x d somewhere on the free floor, or None."""
        W, D = self.width, self.depth
        r = math.hypot(w, d) / 2
        for _ in range(25):
            if W / 2 - r <= -W / 2 + r or -D + r >= -1.0:
                return None
            x, z = rng.uniform(-W / 2 + r, W / 2 - r), rng.uniform(-D + r, -1.0)
            rect = (x - r, x + r, z - r, z + r)
            if self._free(*rect):
                self.rects.append(rect)
                return (x, 0.0, z), rng.uniform(-math.pi, math.pi)
        return None


def _wall_frame(wall: str, width: float, depth: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(origin at the wall's middle on the floor, inward normal, wall length) of a room wall."""
    if wall == "back":
        return np.array([0.0, 0.0, -depth]), np.array([0.0, 0.0, 1.0]), width
    s = -1.0 if wall == "left" else 1.0
    return np.array([s * width / 2, 0.0, -depth / 2]), np.array([-s, 0.0, 0.0]), depth


def _wall_decor(rng, room: str, width: float, depth: float, height: float) -> list[Thing]:
    """Windows (with curtains or blinds), doors, pictures, whiteboards, mirrors, towels and one
    unlabeled wall fixture, placed without overlap on the back and side walls."""
    decors = ["window", "window", "picture", "picture", "door"]
    decors += {"office": ["whiteboard", "picture"], "bathroom": ["mirror", "towel"], "bedroom": ["mirror", "picture"],
               "kitchen": ["window"], "living_room": ["picture", "window"]}[room]
    decors = [k for k in decors if rng.uniform() < 0.6] + ["fixture"]
    taken: dict[str, list[tuple[float, float, float, float]]] = {"back": [], "left": [], "right": []}
    things = []
    for decor in decors:
        # NOTE: every entry draws its size, whichever is used (the generator's draws, hence the files, stay fixed).
        w, h, y0 = {"window": (rng.uniform(0.8, 1.6), rng.uniform(1.0, 1.4), rng.uniform(0.8, 1.1)),
                    "picture": (rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.7), rng.uniform(1.2, 1.6)),
                    "door": (rng.uniform(0.8, 0.95), rng.uniform(2.0, 2.1), 0.0),
                    "whiteboard": (rng.uniform(1.2, 2.0), rng.uniform(0.9, 1.2), rng.uniform(0.9, 1.1)),
                    "mirror": (rng.uniform(0.4, 0.8), rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.3)),
                    "towel": (rng.uniform(0.3, 0.5), rng.uniform(0.5, 0.8), rng.uniform(0.9, 1.2)),
                    "fixture": (rng.uniform(0.15, 0.3), rng.uniform(0.1, 0.2), rng.uniform(0.3, 2.0))}[decor]
        for _ in range(10):
            wall = pick(rng, ["back", "back", "left", "right"])
            origin, normal, length = _wall_frame(wall, width, depth)
            along = np.cross([0.0, 1.0, 0.0], normal)  # wall's horizontal axis (to the right, seen from inside)
            margin = 0.5 if decor in ("window", "door") else 0.3
            if length - 2 * margin < w or y0 + h > height - 0.05:
                continue
            u = rng.uniform(-length / 2 + margin + w / 2, length / 2 - margin - w / 2)
            if wall != "back" and origin[2] + u * along[2] > -1.0:  # too near the camera's front wall
                continue
            box = (u - w / 2 - 0.1, u + w / 2 + 0.1, y0, y0 + h)
            if any(not (box[1] <= a or box[0] >= b or box[3] <= c or box[2] >= d) for a, b, c, d in taken[wall]):
                continue
            taken[wall].append(box)
            center = origin + u * along + np.array([0.0, y0 + h / 2, 0.0])
            things += _DECOR[decor](rng, _Spot(center, normal, along), w, h)
            break
    return things


_UP = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True)
class _Spot:
    """Where one wall decoration of size w x h hangs: the ``center`` of its area, the wall's inward
    ``normal`` and horizontal axis ``along``. Flat parts are rectangles a few mm off the wall."""

    center: np.ndarray
    normal: np.ndarray
    along: np.ndarray

    def rect(self, offset: float, hw: float, hh: float, dy: float = 0.0, dx: float = 0.0) -> Rect:
        """A rectangle ``offset`` metres off the wall, half sizes hw x hh, moved dy up and dx along."""
        return Rect(self.center + offset * self.normal + dy * _UP + dx * self.along, self.along, _UP, hw, hh)

    def frame(self) -> np.ndarray:
        """(3, 3) world-from-local rotation of a box hanging on the wall (local z = the normal)."""
        return np.column_stack([self.along, _UP, self.normal])


def _window(rng, spot: _Spot, w: float, h: float) -> list[Thing]:
    """A window (Kinect reads through the glass: dropout 0.85) with curtains, blinds or neither."""
    sky = look(rng, pick(rng, [(200, 225, 245), (225, 235, 240), (170, 200, 230)]), "noise",
               color2=(250, 250, 250), scale=0.4)
    frame = look(rng, pick(rng, [(245, 245, 245)] + WOOD), jitter=0.03)
    things = [Thing(NYU["window"], [Piece(spot.rect(0.012, w / 2 - 0.05, h / 2 - 0.05), sky),
                                    Piece(spot.rect(0.006, w / 2, h / 2), frame)], dropout=0.85)]
    cover = rng.uniform()
    if cover < 0.35:
        fabric = look(rng, pick(rng, FABRIC + CLOTH), "stripes", scale=0.1, axis=tuple(spot.along), dark=0.75)
        for s in (-1, 1):
            cw = rng.uniform(0.25, 0.45)
            drape = Box(spot.center + 0.05 * spot.normal + s * (w / 2 + cw / 2 - 0.15) * spot.along + 0.15 * _UP,
                        (cw / 2, h / 2 + 0.3, 0.03), spot.frame())
            things.append(Thing(NYU["curtain"], [Piece(drape, fabric)]))
    elif cover < 0.55:
        slats = look(rng, pick(rng, [(235, 235, 230), (200, 180, 150)]), "stripes", scale=0.05, axis=(0, 1, 0),
                     dark=0.8)
        bh = h * rng.uniform(0.4, 1.0)
        things.append(Thing(NYU["blinds"], [Piece(spot.rect(0.02, w / 2, bh / 2, dy=(h - bh) / 2), slats)]))
    return things


def _picture(rng, spot: _Spot, w: float, h: float) -> list[Thing]:
    art = look(rng, pick(rng, CLOTH + FABRIC), "noise", color2=pick(rng, CLOTH), scale=0.12)
    frame = look(rng, pick(rng, WOOD + [(30, 30, 30), (200, 170, 60)]))
    return [Thing(NYU["picture"], [Piece(spot.rect(0.012, w / 2 - 0.03, h / 2 - 0.03), art),
                                   Piece(spot.rect(0.006, w / 2, h / 2), frame)])]


def _door(rng, spot: _Spot, w: float, h: float) -> list[Thing]:
    wood = look(rng, pick(rng, WOOD + [(240, 240, 235)]), "stripes", scale=0.08, axis=(0, 1, 0), dark=0.85)
    knob = sphere(spot.center + 0.04 * spot.normal + (w / 2 - 0.1) * spot.along - 0.05 * _UP, 0.03)
    return [Thing(NYU["door"], [Piece(spot.rect(0.008, w / 2, h / 2), wood), Piece(knob, look(rng, (200, 180, 80)))])]


def _whiteboard(rng, spot: _Spot, w: float, h: float) -> list[Thing]:
    board = Piece(spot.rect(0.015, w / 2 - 0.03, h / 2 - 0.03), look(rng, (248, 248, 248), jitter=0.02))
    return [Thing(NYU["whiteboard"], [board, Piece(spot.rect(0.008, w / 2, h / 2), look(rng, METAL[0]))])]


def _mirror(rng, spot: _Spot, w: float, h: float) -> list[Thing]:
    glass = look(rng, (180, 190, 200), "noise", color2=(120, 130, 140), scale=0.3)
    return [Thing(NYU["mirror"], [Piece(spot.rect(0.01, w / 2, h / 2), glass)], dropout=0.9)]


def _towel(rng, spot: _Spot, w: float, h: float) -> list[Thing]:
    cloth = look(rng, pick(rng, CLOTH), "stripes", color2=(240, 240, 240), scale=0.15)
    hanging = Box(spot.center + 0.03 * spot.normal, (w / 2, h / 2, 0.02), spot.frame())
    return [Thing(NYU["towel"], [Piece(hanging, cloth)])]


def _fixture(rng, spot: _Spot, w: float, h: float) -> list[Thing]:
    """An air vent / switch plate / thermostat: left unlabeled, as NYUD annotators did with small fixtures."""
    grille = look(rng, (200, 200, 200), "stripes", scale=0.03, axis=(0, 1, 0), dark=0.6)
    return [Thing(0, [Piece(spot.rect(0.01, w / 2, h / 2), grille)])]


#: Builder of each wall decoration: (rng, spot, width, height) -> its things.
_DECOR: dict[str, Callable[[np.random.Generator, _Spot, float, float], list[Thing]]] = {
    "window": _window, "picture": _picture, "door": _door, "whiteboard": _whiteboard, "mirror": _mirror,
    "towel": _towel, "fixture": _fixture,
}


def _nyud_scene(rng: np.random.Generator, height: int, width: int, persons: float | None = None) -> Scene:
    """A random furnished room seen by a Kinect-like camera near its front wall.

    ``persons``: None keeps the room types' own persons (0..1 standing in living rooms and offices,
    none elsewhere); a number makes every room draw Poisson(``persons``) standing persons, placed
    in the middle of the room before the other free-standing furniture (so they usually fit).
    """
    room = pick(rng, list(ROOMS))
    W = rng.uniform(3.0, 6.0) if room != "bathroom" else rng.uniform(2.2, 3.5)
    D = rng.uniform(3.5, 8.0) if room != "bathroom" else rng.uniform(3.0, 4.5)
    ceiling = rng.uniform(2.4, 3.0)
    cam_x, cam_z = rng.uniform(-0.25, 0.25) * W, rng.uniform(-0.3, 0.0)
    fx, fy, cx, cy = nyud_intrinsics(height, width)
    camera = Camera.looking(height, width, fx, fy, (cam_x, rng.uniform(1.1, 1.7), cam_z),
                            yaw=rng.uniform(-0.45, 0.45), pitch=rng.uniform(-0.42, -0.1), cx=cx, cy=cy)

    paint = pick(rng, PAINT)
    floor_look = pick(rng, ["wood", "tile", "carpet"])
    floor_mat = {"wood": look(rng, pick(rng, WOOD), "stripes", scale=0.15, axis=(1, 0, 0.1), dark=0.75),
                 "tile": look(rng, pick(rng, [(220, 215, 205), (180, 180, 180), (150, 110, 80)]), "checker",
                              scale=0.4, dark=0.8),
                 "carpet": look(rng, pick(rng, FABRIC + [(170, 160, 140)]), "noise", scale=0.3,
                                dark=0.85)}[floor_look]
    things = [Thing(NYU["floor"], [Piece(Plane((0, 0, 0), (0, 1, 0)), floor_mat)]),
              Thing(NYU["ceiling"],
                    [Piece(Plane((0, ceiling, 0), (0, -1, 0)), look(rng, (245, 245, 242), jitter=0.02))])]
    for point, normal in (((0, 0, -D), (0, 0, 1)), ((-W / 2, 0, 0), (1, 0, 0)), ((W / 2, 0, 0), (-1, 0, 0)),
                          ((0, 0, 0.6), (0, 0, -1))):
        things.append(Thing(NYU["wall"], [Piece(Plane(point, normal), look(rng, paint, jitter=0.03))]))
    if rng.uniform() < 0.5:  # a ceiling light
        lx, lz = rng.uniform(-W / 4, W / 4), -D * rng.uniform(0.3, 0.7)
        things.append(Thing(NYU["otherprop"],
                            [Piece(Cylinder((lx, ceiling - 0.04, lz), (lx, ceiling, lz), 0.2),
                                   Material((1.0, 1.0, 0.95)))]))
    things += _wall_decor(rng, room, W, D, ceiling)

    layout = _Layout(W, D, (cam_x, cam_z))
    walls, middle = ROOMS[room]
    if persons is not None:  # the relatedness knob: persons carry the PASCAL-Part parts
        n_persons = int(rng.poisson(persons))
        middle = [(standing_person, n_persons, n_persons)] + [m for m in middle if m[0] is not standing_person]
    for builders, place in ((walls, layout.against_wall), (middle, layout.in_middle)):
        for builder, lo, hi in builders:
            for _ in range(int(rng.integers(lo, hi + 1))):
                model = builder(rng)
                spot = place(rng, model.size[0], model.size[2])
                if spot is not None:
                    things += model.placed(*spot)

    light = np.array([rng.uniform(-0.6, 0.6), 1.0, rng.uniform(-0.2, 0.9)])
    return Scene(camera, things, light, rng.uniform(0.35, 0.55), lambda d: np.zeros((len(d), 3)),
                 rng.uniform(0.005, 0.02))


def kinect_depth(rng: np.random.Generator, depth: np.ndarray, thing: np.ndarray, things: Sequence[Thing],
                  fx: float) -> np.ndarray:
    """Depth as a Kinect reads it: 0 (missing) out of range, on glass / mirrors / dark screens
    (per object, with its ``dropout`` probability), and in the projector's shadow.

    NOTE: the shadow: the IR projector sits ``_KINECT_BASELINE`` to one side of the IR camera, so
    the surface just beside a near object's edge is lit by no pattern. A pixel at depth z is in
    the shadow of a nearer pixel k columns to its right (depth z') when k < fx * b * (1/z' - 1/z)
    (the disparity difference), which gives the band of zeros on the left of near objects seen
    in raw NYUD-v2 depth. Registered to the RGB camera, the depth camera's view also misses a
    thin band along the image's left border (1..3 % of the width here).
    """
    out = np.where(np.isfinite(depth), depth, 0.0)
    missing = (out < _KINECT_RANGE[0]) | (out > _KINECT_RANGE[1])
    missing[:, :max(1, int(round(depth.shape[1] * rng.uniform(0.01, 0.03))))] = True
    for k, t in enumerate(things):
        if t.dropout > 0 and rng.uniform() < t.dropout:
            missing |= thing == k
    inv = 1.0 / np.where(out > 0, out, np.inf)
    shift = fx * _KINECT_BASELINE
    for k in range(1, int(math.ceil(shift / _KINECT_RANGE[0])) + 1):
        missing[:, :-k] |= k < shift * (inv[:, k:] - inv[:, :-k])
    out[missing] = 0.0
    return out


def _instance_edges(instances: np.ndarray, shapes: np.ndarray, depth: np.ndarray, jump: float = 0.05) -> np.ndarray:
    """(H, W) bool one-pixel boundaries: between instances, and at depth discontinuities between
    two primitives of one instance (a chair's back in front of its seat), thinned to one pixel."""
    boundary = find_boundaries(instances, connectivity=1, mode="thick")
    depth = np.where(np.isfinite(depth), depth, 1e6)
    for a, b, sa, sb in ((depth[:, :-1], depth[:, 1:], shapes[:, :-1], shapes[:, 1:]),
                         (depth[:-1], depth[1:], shapes[:-1], shapes[1:])):
        step = (np.abs(a - b) > jump * np.minimum(a, b)) & (sa != sb)
        if a.shape[1] != depth.shape[1]:  # horizontal neighbours
            boundary[:, :-1] |= step
            boundary[:, 1:] |= step
        else:
            boundary[:-1] |= step
            boundary[1:] |= step
    return thin(boundary)


def render_nyud_sample(rng: np.random.Generator, height: int, width: int,
                       persons: float | None = None) -> dict[str, np.ndarray]:
    """One NYUD-like sample as arrays, in the conventions of the NYUD_MT files.

    Returns ``image`` (H, W, 3) uint8, ``segmentation`` (H, W) uint8 (0 unlabeled, 1..40),
    ``depth`` (H, W) float32 metres (0 missing), ``normals`` (H, W, 3) float32 unit camera-frame
    (0 where depth is missing), ``edge`` (H, W) float32 {0, 1}, and ``instances`` (H, W) int64
    (an id per object; not written to disk). ``persons``: mean standing persons per room (see
    :func:`_nyud_scene`; None = the room types' own).
    """
    scene = _nyud_scene(rng, height, width, persons)
    r = render_scene(scene, rng)
    labels = np.array([t.label for t in scene.things] + [0], dtype=np.uint8)
    depth = kinect_depth(rng, r.depth, r.thing, scene.things, scene.camera.fx)
    normals = np.where((depth > 0)[..., None], r.normals, 0.0)
    edge = _instance_edges(r.thing, r.shape, r.depth)
    return {"image": r.rgb, "segmentation": labels[r.thing], "depth": depth.astype(np.float32),
            "normals": normals.astype(np.float32), "edge": edge.astype(np.float32), "instances": r.thing}
