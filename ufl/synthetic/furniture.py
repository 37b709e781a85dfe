"""Furniture and props of the NYUD-like rooms, built from primitives, labelled with NYUD-40 classes.

Each builder takes the random generator and returns a :class:`~ufl.synthetic.scene.Model` in its
local frame (origin on the floor, +z its front); :data:`ROOMS` lists, per room type, which
builders stand against the walls and which in the middle, with how many of each. ``chair``,
``table`` and ``sofa`` also build the VOC chairs, dining tables and sofas of the PASCAL-like
scenes (:mod:`ufl.synthetic.outdoor`).
"""

from __future__ import annotations

import numpy as np

from ..datasets.catalog import NYUD_CLASSES
from .person import person_model
from .render import Capsule, Cylinder, Ellipsoid, Material, Rect, rot_x, rot_y, sphere
from .scene import CLOTH, FABRIC, METAL, PAINT, TROUSERS, WOOD, Model, Piece, Thing, look, on_floor_box, pick

__all__ = ["NYU", "ROOMS", "chair", "table", "sofa", "standing_person"]

#: Stored NYUD label of each class name: class k of the catalogue is stored as k + 1 (0 = unlabeled).
NYU = {name: k for k, name in enumerate(NYUD_CLASSES, start=1)}


def _legs(w: float, d: float, h: float, thickness: float, mat: Material, inset: float = 0.03) -> list[Piece]:
    """Four vertical box legs under a w x d top at height h."""
    xs, zs = w / 2 - inset - thickness / 2, d / 2 - inset - thickness / 2
    return [Piece(on_floor_box((thickness, h, thickness), 0.0, sz * zs, sx * xs), mat)
            for sx in (-1, 1) for sz in (-1, 1)]


def _books(rng, top_y: float, x: float, z: float) -> Thing:
    size = (rng.uniform(0.15, 0.3), rng.uniform(0.04, 0.15), rng.uniform(0.15, 0.25))
    mat = look(rng, pick(rng, CLOTH), "stripes", color2=pick(rng, CLOTH), scale=0.05)
    return Thing(NYU["books"], [Piece(on_floor_box(size, top_y, z, x), mat)])


def _paper(rng, top_y: float, x: float, z: float) -> Thing:
    size = (0.21, 0.004, 0.3)
    return Thing(NYU["paper"], [Piece(on_floor_box(size, top_y, z, x), look(rng, (245, 245, 240), jitter=0.03))])


def _small_box(rng, top_y: float, x: float, z: float) -> Thing:
    size = tuple(rng.uniform(0.15, 0.35, 3))
    return Thing(NYU["box"], [Piece(on_floor_box(size, top_y, z, x),
                                    look(rng, (170, 130, 85), "noise", scale=0.1, dark=0.85))])


def _bottle_or_vase(rng, top_y: float, x: float, z: float) -> Thing:
    r, h = rng.uniform(0.03, 0.08), rng.uniform(0.08, 0.3)
    if rng.uniform() < 0.6:
        shape = Cylinder((x, top_y, z), (x, top_y + h, z), r)
    else:
        shape = sphere((x, top_y + r, z), r)
    return Thing(NYU["otherprop"], [Piece(shape, look(rng, pick(rng, CLOTH + METAL)))])


def _small_items(rng: np.random.Generator, top_y: float, w: float, d: float, n: int) -> list[Thing]:
    """Props standing on a surface at height ``top_y``: books, paper, boxes, bottles, vases."""
    things = []
    for _ in range(n):
        x, z = rng.uniform(-w / 2 + 0.1, w / 2 - 0.1), rng.uniform(-d / 2 + 0.08, d / 2 - 0.08)
        item = pick(rng, [_books, _paper, _small_box, _bottle_or_vase, _bottle_or_vase])
        things.append(item(rng, top_y, x, z))
    return things


def _bed(rng):
    w, d = rng.uniform(1.0, 1.9), rng.uniform(1.9, 2.2)
    frame = look(rng, pick(rng, WOOD), "stripes", scale=0.06, axis=(1, 0, 0.2), dark=0.8)
    sheet = look(rng, pick(rng, [(240, 240, 235), (200, 210, 230), (230, 215, 200)]), jitter=0.04)
    blanket = look(rng, pick(rng, FABRIC), pick(rng, ["plain", "checker", "stripes", "noise"]),
                   color2=pick(rng, FABRIC), scale=0.25)
    pieces = [Piece(on_floor_box((w, 0.3, d)), frame),
              Piece(on_floor_box((w - 0.04, 0.22, d - 0.06), 0.3), sheet),
              Piece(on_floor_box((w + 0.02, 0.16, d * 0.62), 0.38, d * 0.19), blanket),
              Piece(on_floor_box((w, rng.uniform(0.8, 1.1), 0.06), 0.0, -d / 2 + 0.03), frame)]
    things = [Thing(NYU["bed"], pieces)]
    pillow = look(rng, pick(rng, [(245, 245, 240), (230, 220, 200)] + FABRIC), jitter=0.05)
    n = 2 if w > 1.3 else 1
    for i in range(n):
        x = (i - (n - 1) / 2) * w / n
        things.append(Thing(NYU["pillow"],
                            [Piece(Ellipsoid((x, 0.6, -d / 2 + 0.3), (min(0.3, w / n / 2 - 0.04), 0.08, 0.18)),
                                   pillow)]))
    if rng.uniform() < 0.4:
        heap = Ellipsoid((rng.uniform(-w / 3, w / 3), 0.56, d * 0.2), (0.25, 0.05, 0.2), rot_y(rng.uniform(0, 3)))
        things.append(Thing(NYU["clothes"], [Piece(heap, look(rng, pick(rng, CLOTH), "noise", scale=0.1))]))
    return Model(things, (w, 1.0, d))


def _lamp(rng, y0: float = 0.0, floor: bool = False) -> Thing:
    h = rng.uniform(1.4, 1.7) if floor else rng.uniform(0.35, 0.55)
    metal = look(rng, pick(rng, METAL))
    shade_mat = look(rng, pick(rng, [(245, 235, 200), (230, 230, 225), (200, 160, 110)]))
    r = 0.2 if floor else 0.13
    return Thing(NYU["lamp"], [Piece(Cylinder((0, y0, 0), (0, y0 + 0.03, 0), r * 0.8), metal),
                                Piece(Capsule((0, y0, 0), (0, y0 + h * 0.75, 0), 0.015), metal),
                                Piece(Cylinder((0, y0 + h * 0.7, 0), (0, y0 + h, 0), r), shade_mat)])


def _night_stand(rng):
    w, h, d = rng.uniform(0.4, 0.55), rng.uniform(0.45, 0.65), rng.uniform(0.35, 0.45)
    things = [Thing(NYU["night stand"],
                    [Piece(on_floor_box((w, h, d)), look(rng, pick(rng, WOOD), "stripes", scale=0.18, dark=0.75))])]
    if rng.uniform() < 0.7:
        things.append(_lamp(rng, h))
    return Model(things, (w, h, d))


def _dresser(rng):
    w, h, d = rng.uniform(0.8, 1.5), rng.uniform(0.8, 1.2), rng.uniform(0.4, 0.55)
    things = [Thing(NYU["dresser"],
                    [Piece(on_floor_box((w, h, d)), look(rng, pick(rng, WOOD), "stripes", scale=0.22, dark=0.6))])]
    things += _small_items(rng, h, w, d, int(rng.integers(0, 3)))
    return Model(things, (w, h, d))


def _cabinet(rng):
    w, h, d = rng.uniform(0.6, 1.6), rng.uniform(0.7, 2.0), rng.uniform(0.4, 0.6)
    mat = look(rng, pick(rng, WOOD + [(235, 235, 230)]), "stripes", scale=rng.uniform(0.35, 0.6), axis=(1, 0, 0),
               dark=0.7)
    things = [Thing(NYU["cabinet"], [Piece(on_floor_box((w, h, d)), mat)])]
    if h < 1.2 and rng.uniform() < 0.5:  # a television on a low cabinet
        tw = min(w, rng.uniform(0.7, 1.2))
        things.append(_television(rng, tw, h, 0.0))
    return Model(things, (w, h, d))


def _television(rng, w: float, y0: float, z: float) -> Thing:
    h = w * 0.58
    case = look(rng, (25, 25, 28), jitter=0.05)
    screen = look(rng, pick(rng, [(20, 30, 60), (40, 40, 45), (60, 90, 130)]), "noise", color2=(90, 130, 170),
                  scale=0.15)
    return Thing(NYU["television"], [Piece(on_floor_box((0.2, 0.04, 0.15), y0, z), case),
                                      Piece(on_floor_box((w, h, 0.05), y0 + 0.06, z), case),
                                      Piece(Rect((0, y0 + 0.06 + h / 2, z + 0.026), (1, 0, 0), (0, 1, 0),
                                                 w / 2 - 0.025, h / 2 - 0.025), screen)],
                 dropout=0.3)


def _bookshelf(rng):
    w, h, d = rng.uniform(0.6, 1.4), rng.uniform(1.2, 2.1), rng.uniform(0.28, 0.4)
    wood = look(rng, pick(rng, WOOD + [(240, 240, 235)]), "stripes", scale=0.1, axis=(0, 0, 1), dark=0.85)
    pieces = [Piece(on_floor_box((w, h, 0.02), 0.0, -d / 2 + 0.01), wood)]
    pieces += [Piece(on_floor_box((0.03, h, d), 0.0, 0.0, s * (w / 2 - 0.015)), wood) for s in (-1, 1)]
    n_shelves = max(2, int(h / 0.38))
    books = []
    for i in range(n_shelves + 1):
        y = i * (h - 0.03) / n_shelves
        pieces.append(Piece(on_floor_box((w, 0.03, d), y), wood))
        if i < n_shelves and rng.uniform() < 0.85:
            bw = rng.uniform(0.4, 1.0) * (w - 0.06)
            bh = rng.uniform(0.18, 0.3)
            books.append(Piece(on_floor_box((bw, bh, d * 0.8), y + 0.03, 0.0,
                                             rng.uniform(-1, 1) * (w - 0.06 - bw) / 2),
                               look(rng, pick(rng, CLOTH), "stripes", color2=pick(rng, CLOTH), scale=0.045,
                                    axis=(1, 0, 0))))
    things = [Thing(NYU["bookshelf"], pieces)]
    if books:
        things.append(Thing(NYU["books"], books))
    return Model(things, (w, h, d))


def _shelves(rng):
    w, h, d = rng.uniform(0.6, 1.2), rng.uniform(0.9, 1.8), rng.uniform(0.3, 0.45)
    metal = look(rng, pick(rng, METAL + WOOD))
    pieces = [Piece(on_floor_box((0.03, h, 0.03), 0.0, sz * (d / 2 - 0.015), sx * (w / 2 - 0.015)), metal)
              for sx in (-1, 1) for sz in (-1, 1)]
    n = max(2, int(h / 0.4))
    things = []
    for i in range(n + 1):
        y = 0.1 + i * (h - 0.13) / n
        pieces.append(Piece(on_floor_box((w, 0.025, d), y), metal))
        if i < n:
            things += _small_items(rng, y + 0.025, w, d, int(rng.integers(0, 3)))
    return Model([Thing(NYU["shelves"], pieces)] + things, (w, h, d))


def chair(rng, label: int = NYU["chair"]):
    w, d, seat = rng.uniform(0.42, 0.55), rng.uniform(0.42, 0.55), rng.uniform(0.42, 0.5)
    mat = look(rng, pick(rng, WOOD + FABRIC + METAL))
    pieces = [Piece(on_floor_box((w, 0.05, d), seat), mat),
              Piece(on_floor_box((w, rng.uniform(0.35, 0.55), 0.04), seat + 0.05, -d / 2 + 0.02), mat)]
    pieces += _legs(w, d, seat, 0.035, mat, 0.0)
    return Model([Thing(label, pieces)], (w, seat + 0.5, d))


def table(rng, label: int = NYU["table"], items: bool = True):
    w, d = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0)
    h = rng.uniform(0.4, 0.5) if rng.uniform() < 0.3 else rng.uniform(0.7, 0.78)  # coffee or dining table
    top = look(rng, pick(rng, WOOD + [(240, 240, 240), (60, 60, 60)]), "stripes", scale=0.07, axis=(0.2, 0, 1),
               dark=0.85)
    pieces = [Piece(on_floor_box((w, 0.04, d), h - 0.04), top)] + _legs(w, d, h - 0.04, 0.05, top)
    things = [Thing(label, pieces)]
    if items:
        things += _small_items(rng, h, w, d, int(rng.integers(0, 4)))
    return Model(things, (w, h, d))


def _desk(rng):
    model = table(rng, NYU["desk"], items=False)
    w, h, d = model.size
    things = model.things
    mat = things[0].pieces[0].material
    drawers = on_floor_box((0.4, h - 0.04, d - 0.04), 0.0, 0.0, w / 2 - 0.22)
    things[0].pieces.append(Piece(drawers, mat))
    if rng.uniform() < 0.7:  # a monitor (labelled television, as NYUD-40 maps monitors)
        things.append(_television(rng, rng.uniform(0.4, 0.6), h, -d / 4))
    things += _small_items(rng, h, w, d, int(rng.integers(1, 4)))
    return Model(things, (w, h, d))


def sofa(rng):
    w, d = rng.uniform(1.4, 2.4), rng.uniform(0.8, 0.95)
    fabric = look(rng, pick(rng, FABRIC), "noise", scale=0.15, dark=0.85)
    pieces = [Piece(on_floor_box((w, 0.42, d)), fabric),
              Piece(on_floor_box((w, 0.45, 0.2), 0.42, -d / 2 + 0.1), fabric)]
    pieces += [Piece(on_floor_box((0.18, 0.22, d), 0.42, 0.0, s * (w / 2 - 0.09)), fabric) for s in (-1, 1)]
    things = [Thing(NYU["sofa"], pieces)]
    for _ in range(int(rng.integers(0, 3))):
        x = rng.uniform(-w / 2 + 0.4, w / 2 - 0.4)
        cushion = Ellipsoid((x, 0.62, -d / 2 + 0.28), (0.2, 0.18, 0.07), rot_x(-0.3))
        cover = look(rng, pick(rng, FABRIC + CLOTH), "checker", scale=0.08)
        things.append(Thing(NYU["pillow"], [Piece(cushion, cover)]))
    return Model(things, (w, 0.87, d))


def _counter(rng):
    w, d = rng.uniform(1.2, 2.8), rng.uniform(0.55, 0.65)
    cab = look(rng, pick(rng, WOOD + [(235, 235, 230)]), "stripes", scale=0.5, axis=(1, 0, 0), dark=0.7)
    top = look(rng, pick(rng, [(60, 60, 60), (200, 195, 185), (150, 140, 130)]), "noise", scale=0.05, dark=0.8)
    things = [Thing(NYU["cabinet"], [Piece(on_floor_box((w, 0.86, d - 0.03)), cab)]),
              Thing(NYU["counter"], [Piece(on_floor_box((w + 0.02, 0.04, d), 0.86, 0.01), top)])]
    if rng.uniform() < 0.6:
        basin = on_floor_box((0.5, 0.03, 0.4), 0.88, 0.0, rng.uniform(-w / 4, w / 4))
        things.append(Thing(NYU["sink"], [Piece(basin, look(rng, (210, 210, 215), jitter=0.03))]))
    if rng.uniform() < 0.7:  # wall cabinets
        things.append(Thing(NYU["cabinet"], [Piece(on_floor_box((w, 0.7, 0.35), 1.45, -d / 2 + 0.175), cab)]))
    things += _small_items(rng, 0.9, w, d * 0.8, int(rng.integers(0, 3)))
    return Model(things, (w, 2.15, d))


def _refrigerator(rng):
    w, h, d = rng.uniform(0.6, 0.9), rng.uniform(1.6, 1.9), rng.uniform(0.6, 0.75)
    mat = look(rng, pick(rng, [(235, 235, 235), (190, 190, 195)]), "stripes", scale=h * 0.9, axis=(0, 1, 0), dark=0.8,
               jitter=0.03)
    handle = Capsule((w / 2 - 0.08, h * 0.45, d / 2 + 0.03), (w / 2 - 0.08, h * 0.75, d / 2 + 0.03), 0.015)
    return Model([Thing(NYU["refrigerator"], [Piece(on_floor_box((w, h, d)), mat),
                                                 Piece(handle, look(rng, pick(rng, METAL)))])], (w, h, d))


def _toilet(rng):
    white = look(rng, (240, 240, 240), jitter=0.02)
    return Model([Thing(NYU["toilet"], [Piece(on_floor_box((0.4, 0.4, 0.18), 0.35, -0.25), white),
                                         Piece(Ellipsoid((0, 0.3, 0.05), (0.19, 0.12, 0.28)), white),
                                         Piece(Cylinder((0, 0, 0.0), (0, 0.3, 0.0), 0.13), white)])],
                 (0.42, 0.75, 0.68))


def _bathtub(rng):
    w, d = rng.uniform(1.5, 1.75), rng.uniform(0.7, 0.8)
    white = look(rng, (240, 240, 238), jitter=0.02)
    things = [Thing(NYU["bathtub"], [Piece(on_floor_box((w, 0.55, d)), white)])]
    if rng.uniform() < 0.7:
        curtain = look(rng, pick(rng, CLOTH), "stripes", color2=(240, 240, 240), scale=0.12, axis=(1, 0, 0))
        things.append(Thing(NYU["shower curtain"],
                            [Piece(on_floor_box((w * rng.uniform(0.4, 0.9), 1.4, 0.02), 0.6, d / 2), curtain)]))
    return Model(things, (w, 2.0, d))


def _sink_vanity(rng):
    w, d = rng.uniform(0.6, 1.0), rng.uniform(0.45, 0.55)
    things = [Thing(NYU["cabinet"],
                    [Piece(on_floor_box((w, 0.8, d)), look(rng, pick(rng, WOOD + [(235, 235, 230)])))]),
              Thing(NYU["sink"],
                    [Piece(on_floor_box((w * 0.7, 0.08, d * 0.8), 0.8), look(rng, (240, 240, 240), jitter=0.02))])]
    if rng.uniform() < 0.6:
        things.append(Thing(NYU["towel"], [Piece(on_floor_box((0.3, 0.45, 0.03), 0.35, d / 2 + 0.02, w / 4),
                                                  look(rng, pick(rng, CLOTH), "stripes", scale=0.1))]))
    return Model(things, (w, 0.9, d))


def _floor_mat(rng):
    w, d = rng.uniform(0.6, 2.0), rng.uniform(0.5, 1.4)
    mat = look(rng, pick(rng, FABRIC + CLOTH), pick(rng, ["checker", "stripes", "noise"]),
               color2=pick(rng, FABRIC), scale=0.2, axis=(1, 0, 0))
    return Model([Thing(NYU["floor mat"], [Piece(on_floor_box((w, 0.012, d)), mat)])], (w, 0.012, d))


def _box_stack(rng, s: np.ndarray) -> Model:
    n = int(rng.integers(1, 3))
    mat = look(rng, (170, 130, 85), "noise", scale=0.1, dark=0.85)
    stack, y = [], 0.0
    for i in range(n):  # a stack of smaller and smaller boxes
        size = s * (1 - 0.2 * i)
        stack.append(Piece(on_floor_box(size, y), mat))
        y += size[1]
    return Model([Thing(NYU["box"], stack)], (s[0], y, s[2]))


def _bag(rng, s: np.ndarray) -> Model:
    bag = Ellipsoid((0, s[1] * 0.45, 0), (s[0] / 2, s[1] * 0.45, s[2] / 3))
    return Model([Thing(NYU["bag"], [Piece(bag, look(rng, pick(rng, CLOTH + TROUSERS), "noise", scale=0.1))])],
                 (s[0], s[1], s[2]))


def _stool(rng, s: np.ndarray) -> Model:
    """A stool or a side table (NYUD's otherfurniture)."""
    mat = look(rng, pick(rng, WOOD + METAL))
    return Model([Thing(NYU["otherfurniture"], [Piece(Cylinder((0, 0, 0), (0, s[1] + 0.1, 0), s[0] / 2), mat)])],
                 (s[0], s[1] + 0.1, s[0]))


def _unlabeled_lump(rng, s: np.ndarray) -> Model:
    """Unlabeled clutter (NYUD leaves some objects unannotated: label 0)."""
    lump = Ellipsoid((0, s[1] / 2, 0), s / 2)
    return Model([Thing(0, [Piece(lump, look(rng, pick(rng, CLOTH + METAL), "noise", scale=0.1))])], tuple(s))


def _clothes_heap(rng, s: np.ndarray) -> Model:
    cloth = look(rng, pick(rng, CLOTH), "noise", scale=0.08)
    return Model([Thing(NYU["clothes"], [Piece(Ellipsoid((0, 0.06, 0), (s[0] / 2, 0.06, s[2] / 2)), cloth)])],
                 (s[0], 0.12, s[2]))


def _floor_clutter(rng):
    """Boxes, a bag, a stool, unlabeled clutter or clothes on the floor, of a random size ``s`` (3,)."""
    clutter = pick(rng, [_box_stack, _bag, _stool, _unlabeled_lump, _clothes_heap])
    return clutter(rng, rng.uniform(0.3, 0.6, 3))


def _column(rng):
    w = rng.uniform(0.3, 0.5)
    pillar = Piece(on_floor_box((w, 3.2, w)), look(rng, pick(rng, PAINT), jitter=0.04))
    return Model([Thing(NYU["otherstructure"], [pillar])], (w, 3.2, w))


def _floor_lamp(rng):
    return Model([_lamp(rng, floor=True)], (0.4, 1.7, 0.4))


def standing_person(rng):
    return person_model(rng, NYU["person"])


# Room types: (furniture against walls, furniture in the middle); entries are (builder, min, max).
ROOMS = {
    "bedroom": ([(_bed, 1, 1), (_night_stand, 0, 2), (_dresser, 0, 1), (_cabinet, 0, 1), (_bookshelf, 0, 1)],
                [(_floor_mat, 0, 1), (_floor_clutter, 0, 2), (chair, 0, 1)]),
    "living_room": ([(sofa, 1, 2), (_cabinet, 0, 1), (_bookshelf, 0, 1), (_shelves, 0, 1)],
                    [(table, 1, 1), (chair, 0, 2), (_floor_mat, 0, 1), (_floor_clutter, 0, 2),
                     (_floor_lamp, 0, 1), (standing_person, 0, 1)]),
    "office": ([(_desk, 1, 2), (_shelves, 0, 1), (_cabinet, 0, 2), (_bookshelf, 0, 1)],
               [(chair, 1, 3), (_floor_clutter, 0, 3), (standing_person, 0, 1), (_column, 0, 1)]),
    "kitchen": ([(_counter, 1, 2), (_refrigerator, 0, 1), (_cabinet, 0, 1)],
                [(table, 0, 1), (chair, 0, 3), (_floor_clutter, 0, 2), (_floor_mat, 0, 1)]),
    "bathroom": ([(_toilet, 1, 1), (_bathtub, 0, 1), (_sink_vanity, 1, 1), (_cabinet, 0, 1)],
                 [(_floor_mat, 0, 1), (_floor_clutter, 0, 1)]),
}
