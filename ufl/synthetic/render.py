"""A small vectorised numpy ray caster: pinhole camera, simple primitives, Lambertian shading.

It renders the synthetic scenes of :mod:`ufl.synthetic` (:func:`ufl.synthetic.scene.render_scene`).
One primary ray per pixel is intersected with every primitive whose projected bounding sphere
covers the pixel; the nearest hit gives, for each pixel, the primitive index, the depth and the
surface normal, so that every label map derived from them (classes, instances, parts, edges, depth,
normals) is consistent with the shaded RGB image by construction.

Conventions
-----------
World frame: metres, y up (the floor / ground is the plane y = 0).
Camera frame (OpenGL style): x right, y up, z towards the viewer; the camera looks along -z.
Ray directions are scaled so that their camera-frame z component is -1: the ray parameter ``t`` of
a hit is then its **z-depth** (distance along the optical axis, what a Kinect / NYUD depth map
stores), not its Euclidean distance.
Normals are unit vectors, oriented towards the camera (a surface seen from behind is flipped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "Camera", "Hits", "Material", "Shape", "Plane", "Rect", "Box", "Ellipsoid", "Capsule", "Cylinder",
    "sphere", "rot_x", "rot_y", "rot_z", "cast", "shade",
]

EPS = 1e-4  # smallest accepted hit depth, metres (rejects self-hits at the camera)


# -- rotations ------------------------------------------------------------------------------------
def rot_x(angle: float) -> np.ndarray:
    """(3, 3) rotation about the x axis by ``angle`` radians (positive tilts -z towards +y)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    """(3, 3) rotation about the y (up) axis by ``angle`` radians (positive turns +z towards +x)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle: float) -> np.ndarray:
    """(3, 3) rotation about the z axis by ``angle`` radians (positive turns +x towards +y)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# -- camera ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Camera:
    """A pinhole camera.

    Args:
        height, width: image size in pixels.
        fx, fy, cx, cy: intrinsics in pixels (pixel centres at integer + 0.5).
        position: (3,) camera centre in world coordinates, metres.
        rotation: (3, 3) world-from-camera rotation (its columns are the camera axes in the world).
    """

    height: int
    width: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: np.ndarray
    rotation: np.ndarray

    @classmethod
    def looking(cls, height: int, width: int, fx: float, fy: float, position: Sequence[float],
                yaw: float, pitch: float, cx: float | None = None, cy: float | None = None) -> "Camera":
        """A camera at ``position`` turned by ``yaw`` about the world up axis, then tilted by
        ``pitch`` (radians, negative looks down); no roll."""
        return cls(height, width, float(fx), float(fy), width / 2 if cx is None else float(cx),
                   height / 2 if cy is None else float(cy), np.asarray(position, dtype=np.float64),
                   rot_y(yaw) @ rot_x(pitch))

    def directions(self) -> np.ndarray:
        """(H, W, 3) world-frame ray directions whose camera-frame z is -1 (so t = z-depth)."""
        x = (np.arange(self.width) + 0.5 - self.cx) / self.fx
        y = -(np.arange(self.height) + 0.5 - self.cy) / self.fy
        d = np.empty((self.height, self.width, 3))
        d[..., 0] = x[None, :]
        d[..., 1] = y[:, None]
        d[..., 2] = -1.0
        return d @ self.rotation.T

    def to_camera(self, vectors: np.ndarray) -> np.ndarray:
        """Rotate (..., 3) world-frame directions (e.g. normals) into the camera frame."""
        return vectors @ self.rotation

    def pixel_box(self, center: np.ndarray, radius: float) -> tuple[int, int, int, int] | None:
        """Pixel rows/cols ``(y0, y1, x0, x1)`` (end exclusive) that may see a sphere, or None.

        Conservative: the image of the sphere's bounding cube, assuming its nearest depth.
        """
        p = (np.asarray(center) - self.position) @ self.rotation  # camera frame
        z = -p[2]
        if z + radius <= EPS:
            return None  # entirely behind the camera
        if z - radius <= 1e-2:
            return 0, self.height, 0, self.width  # straddles the camera plane: test every pixel
        near, far = z - radius, z + radius

        def extent(c: float) -> tuple[float, float]:
            lo = (c - radius) / (near if c - radius <= 0 else far)
            hi = (c + radius) / (near if c + radius >= 0 else far)
            return lo, hi

        xl, xh = extent(p[0])
        yl, yh = extent(p[1])
        x0 = max(0, math.floor(self.cx + self.fx * xl - 0.5))
        x1 = min(self.width, math.ceil(self.cx + self.fx * xh + 0.5))
        y0 = max(0, math.floor(self.cy - self.fy * yh - 0.5))
        y1 = min(self.height, math.ceil(self.cy - self.fy * yl + 0.5))
        if x0 >= x1 or y0 >= y1:
            return None
        return y0, y1, x0, x1


# -- shapes ---------------------------------------------------------------------------------------
def _unit(dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norm = np.linalg.norm(dirs, axis=1)
    return dirs / norm[:, None], norm


def _finite(t: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(t), t, 0.0)


class Shape:
    """A primitive. ``intersect(origin, dirs)`` returns the ray parameter of the nearest hit in
    front of the origin (``inf`` on a miss), shape (N,), and the world normal there, (N, 3)
    (unit, not yet oriented towards the ray). ``bound`` is a bounding sphere ``(center, radius)``
    or None for an unbounded shape."""

    bound: tuple[np.ndarray, float] | None = None

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def transformed(self, rotation: np.ndarray, translation: Sequence[float]) -> "Shape":
        """The same shape moved rigidly: x -> rotation @ x + translation."""
        raise NotImplementedError


class Plane(Shape):
    """The infinite plane through ``point`` with normal ``normal`` (walls, floors, the ground)."""

    def __init__(self, point: Sequence[float], normal: Sequence[float]):
        self.point = np.asarray(point, dtype=np.float64)
        self.normal = np.asarray(normal, dtype=np.float64) / np.linalg.norm(normal)

    def _t(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        denom = dirs @ self.normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((self.point - origin) @ self.normal) / denom
        return np.where((np.abs(denom) > 1e-12) & (t > EPS), t, np.inf)

    def intersect(self, origin, dirs):
        return self._t(origin, dirs), np.broadcast_to(self.normal, dirs.shape)

    def transformed(self, rotation, translation):
        return Plane(rotation @ self.point + translation, rotation @ self.normal)


class Rect(Plane):
    """A rectangle: centre, unit in-plane axes ``u`` and ``v`` and half sizes (pictures, windows)."""

    def __init__(self, center: Sequence[float], u: Sequence[float], v: Sequence[float],
                 half_u: float, half_v: float):
        self.u = np.asarray(u, dtype=np.float64) / np.linalg.norm(u)
        self.v = np.asarray(v, dtype=np.float64) / np.linalg.norm(v)
        super().__init__(center, np.cross(self.u, self.v))
        self.half = (float(half_u), float(half_v))
        self.bound = (self.point, math.hypot(*self.half))

    def intersect(self, origin, dirs):
        t = self._t(origin, dirs)
        q = origin + _finite(t)[:, None] * dirs - self.point
        inside = (np.abs(q @ self.u) <= self.half[0]) & (np.abs(q @ self.v) <= self.half[1])
        return np.where(inside, t, np.inf), np.broadcast_to(self.normal, dirs.shape)

    def transformed(self, rotation, translation):
        return Rect(rotation @ self.point + translation, rotation @ self.u, rotation @ self.v, *self.half)


class Box(Shape):
    """An oriented box: centre, half sizes (3,) along its local axes, ``rotation`` world-from-local."""

    def __init__(self, center: Sequence[float], half: Sequence[float], rotation: np.ndarray | None = None):
        self.center = np.asarray(center, dtype=np.float64)
        self.half = np.asarray(half, dtype=np.float64)
        self.rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        self.bound = (self.center, float(np.linalg.norm(self.half)))

    def intersect(self, origin, dirs):
        o = (origin - self.center) @ self.rotation
        d = dirs @ self.rotation
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d
            t1 = (-self.half - o) * inv
            t2 = (self.half - o) * inv
        t_in = np.fmin(t1, t2)
        t_out = np.fmax(t1, t2)
        near = t_in.max(axis=1)
        far = t_out.min(axis=1)
        hit = (near <= far) & (far > EPS)
        t = np.where(hit, np.where(near > EPS, near, far), np.inf)
        axis = t_in.argmax(axis=1)
        rows = np.arange(len(d))
        n_local = np.zeros_like(d)
        n_local[rows, axis] = -np.sign(d[rows, axis])
        return t, n_local @ self.rotation.T

    def transformed(self, rotation, translation):
        return Box(rotation @ self.center + translation, self.half, rotation @ self.rotation)


class Ellipsoid(Shape):
    """An ellipsoid: centre, radii (3,) along its local axes, ``rotation`` world-from-local."""

    def __init__(self, center: Sequence[float], radii: Sequence[float], rotation: np.ndarray | None = None):
        self.center = np.asarray(center, dtype=np.float64)
        self.radii = np.asarray(radii, dtype=np.float64)
        self.rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        self.bound = (self.center, float(self.radii.max()))

    def intersect(self, origin, dirs):
        du, norm = _unit(dirs)
        o = ((origin - self.center) @ self.rotation) / self.radii  # unit-sphere space
        d = (du @ self.rotation) / self.radii
        a = np.einsum("ij,ij->i", d, d)
        b = d @ o
        c = o @ o - 1.0
        disc = b * b - a * c
        root = np.sqrt(np.maximum(disc, 0.0))
        t0, t1 = (-b - root) / a, (-b + root) / a
        t = np.where(t0 > EPS, t0, t1)
        t = np.where((disc >= 0) & (t > EPS), t, np.inf)
        q = o + _finite(t)[:, None] * d
        n = (q / self.radii) @ self.rotation.T  # gradient of sum((x / r)^2)
        return t / norm, n / np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)

    def transformed(self, rotation, translation):
        return Ellipsoid(rotation @ self.center + translation, self.radii, rotation @ self.rotation)


def sphere(center: Sequence[float], radius: float) -> Ellipsoid:
    """A sphere (an ellipsoid with equal radii)."""
    return Ellipsoid(center, (radius, radius, radius))


def _ball(origin: np.ndarray, du: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    """Entry parameter of unit rays into a ball (``inf`` on a miss)."""
    oc = origin - center
    b = du @ oc
    h = b * b - (oc @ oc - radius * radius)
    t = -b - np.sqrt(np.maximum(h, 0.0))
    return np.where((h >= 0) & (t > EPS), t, np.inf)


def _tube(origin: np.ndarray, du: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float):
    """Entry of unit rays into the lateral surface of the finite cylinder a-b (``inf`` on a miss);
    the first hit of a ray from outside (after Inigo Quilez's capsule / cylinder intersectors)."""
    ba, oa = b - a, origin - a
    baba = ba @ ba
    bard = du @ ba
    baoa = ba @ oa
    k2 = baba - bard * bard
    k1 = baba * (du @ oa) - baoa * bard
    k0 = baba * (oa @ oa) - baoa * baoa - radius * radius * baba
    h = k1 * k1 - k2 * k0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-k1 - np.sqrt(np.maximum(h, 0.0))) / k2
    y = baoa + t * bard
    return np.where((h >= 0) & (k2 > 1e-12) & (y > 0) & (y < baba) & (t > EPS), t, np.inf)


class Capsule(Shape):
    """A capsule (cylinder with hemispherical ends) around segment a-b: limbs, necks, tails."""

    def __init__(self, a: Sequence[float], b: Sequence[float], radius: float):
        self.a = np.asarray(a, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.radius = float(radius)
        self.bound = ((self.a + self.b) / 2, float(np.linalg.norm(self.b - self.a)) / 2 + self.radius)

    def intersect(self, origin, dirs):
        du, norm = _unit(dirs)
        # The entry into a union of convex solids is the nearest of their entries.
        t = np.minimum(_tube(origin, du, self.a, self.b, self.radius),
                       np.minimum(_ball(origin, du, self.a, self.radius), _ball(origin, du, self.b, self.radius)))
        p = origin + _finite(t)[:, None] * du - self.a
        ba = self.b - self.a
        h = np.clip((p @ ba) / (ba @ ba), 0.0, 1.0)
        n = p - h[:, None] * ba
        return t / norm, n / np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)

    def transformed(self, rotation, translation):
        return Capsule(rotation @ self.a + translation, rotation @ self.b + translation, self.radius)


class Cylinder(Shape):
    """A solid cylinder with flat caps around segment a-b, any axis: wheels, trunks, bottles."""

    def __init__(self, a: Sequence[float], b: Sequence[float], radius: float):
        self.a = np.asarray(a, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.radius = float(radius)
        self.axis = (self.b - self.a) / np.linalg.norm(self.b - self.a)
        self.bound = ((self.a + self.b) / 2, math.hypot(float(np.linalg.norm(self.b - self.a)) / 2, self.radius))

    def _disk(self, origin, du, center) -> np.ndarray:
        denom = du @ self.axis
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((center - origin) @ self.axis) / denom
        q = origin + _finite(t)[:, None] * du - center
        inside = np.einsum("ij,ij->i", q, q) <= self.radius ** 2
        return np.where((np.abs(denom) > 1e-12) & inside & (t > EPS), t, np.inf)

    def intersect(self, origin, dirs):
        du, norm = _unit(dirs)
        cands = np.stack([_tube(origin, du, self.a, self.b, self.radius),
                          self._disk(origin, du, self.a), self._disk(origin, du, self.b)])
        which = cands.argmin(axis=0)
        t = cands.min(axis=0)
        p = origin + _finite(t)[:, None] * du - self.a
        radial = p - (p @ self.axis)[:, None] * self.axis
        radial /= np.linalg.norm(radial, axis=1, keepdims=True).clip(1e-12)
        n = np.where((which == 0)[:, None], radial, np.where((which == 1)[:, None], -self.axis, self.axis))
        return t / norm, n

    def transformed(self, rotation, translation):
        return Cylinder(rotation @ self.a + translation, rotation @ self.b + translation, self.radius)


# -- casting --------------------------------------------------------------------------------------
@dataclass
class Hits:
    """Per-pixel result of :func:`cast`.

    Attributes:
        depth: (H, W) float64 z-depth in metres, ``inf`` where no shape was hit.
        index: (H, W) int64 index of the shape hit, -1 where none.
        normal: (H, W, 3) float64 unit world normals facing the camera, zero where none.
        dirs: (H, W, 3) the rays (camera-frame z = -1).
    """

    depth: np.ndarray
    index: np.ndarray
    normal: np.ndarray
    dirs: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        return self.index >= 0

    def points(self, camera: Camera) -> np.ndarray:
        """(H, W, 3) world positions of the hits (the camera centre where none)."""
        return camera.position + _finite(self.depth)[..., None] * self.dirs


def cast(camera: Camera, shapes: Sequence[Shape]) -> Hits:
    """Nearest hit of every pixel's ray among ``shapes`` (later shapes win exact ties never)."""
    dirs = camera.directions()
    depth = np.full((camera.height, camera.width), np.inf)
    index = np.full((camera.height, camera.width), -1, dtype=np.int64)
    normal = np.zeros((camera.height, camera.width, 3))
    for k, shape in enumerate(shapes):
        if shape.bound is None:
            box = (0, camera.height, 0, camera.width)
        else:
            box = camera.pixel_box(*shape.bound)
            if box is None:
                continue
        y0, y1, x0, x1 = box
        d = dirs[y0:y1, x0:x1]
        t, n = shape.intersect(camera.position, d.reshape(-1, 3))
        t = t.reshape(d.shape[:2])
        closer = t < depth[y0:y1, x0:x1]
        if not closer.any():
            continue
        depth[y0:y1, x0:x1][closer] = t[closer]
        index[y0:y1, x0:x1][closer] = k
        normal[y0:y1, x0:x1][closer] = np.asarray(n).reshape(d.shape)[closer]
    facing_away = np.einsum("hwc,hwc->hw", normal, dirs) > 0
    normal[facing_away] *= -1.0
    return Hits(depth, index, normal, dirs)


# -- shading --------------------------------------------------------------------------------------
PATTERNS = ("plain", "stripes", "checker", "noise")

# Fixed directions / frequencies / phases of the solid "noise" pattern (a sum of plane waves).
_NOISE_DIRS = np.array([[0.80, 0.36, 0.48], [-0.31, 0.83, 0.46], [0.42, -0.51, 0.75], [-0.66, -0.22, 0.72],
                        [0.12, 0.95, -0.28], [0.91, -0.12, -0.40]])
_NOISE_DIRS /= np.linalg.norm(_NOISE_DIRS, axis=1, keepdims=True)
_NOISE_FREQ = np.array([1.0, 1.37, 1.93, 2.71, 3.3, 4.1])
_NOISE_PHASE = np.array([0.3, 1.9, 4.1, 2.6, 5.3, 0.8])


@dataclass(frozen=True)
class Material:
    """Surface look: albedo ``color`` (RGB in [0, 1]) mixed towards ``color2`` by a solid pattern.

    Patterns, evaluated on the world position p (so they stick to the surface):
    ``plain``; ``stripes`` (soft square wave along ``axis``, period ``scale`` metres);
    ``checker`` (3D checkerboard of cell ``scale``); ``noise`` (sum of plane waves, feature size
    about ``scale``). ``offset`` shifts the pattern (per-instance variation).
    """

    color: tuple[float, float, float]
    color2: tuple[float, float, float] | None = None
    pattern: str = "plain"
    scale: float = 0.2
    axis: tuple[float, float, float] = (0.0, 1.0, 0.0)
    offset: float = 0.0

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; expected one of {PATTERNS}")


def _pattern_value(p: np.ndarray, code: np.ndarray, scale: np.ndarray, axis: np.ndarray,
                   offset: np.ndarray) -> np.ndarray:
    """(N,) pattern values in [0, 1] at points p (N, 3) for per-point pattern parameters."""
    s = np.zeros(len(p))
    stripes = code == 1
    if stripes.any():
        phase = 2 * np.pi * (np.einsum("ij,ij->i", p[stripes], axis[stripes]) / scale[stripes] + offset[stripes])
        s[stripes] = np.clip(0.5 + 2.0 * np.sin(phase), 0.0, 1.0)
    checker = code == 2
    if checker.any():
        cells = np.floor(p[checker] / scale[checker, None] + offset[checker, None] + 0.25).sum(axis=1)
        s[checker] = np.mod(cells, 2)
    noise = code == 3
    if noise.any():
        q = p[noise] / scale[noise, None]
        waves = np.sin(2 * np.pi * (q @ _NOISE_DIRS.T) * _NOISE_FREQ / 2 + _NOISE_PHASE + 7.0 * offset[noise, None])
        s[noise] = np.clip(0.5 + 0.9 * waves.mean(axis=1), 0.0, 1.0)
    return s


def shade(camera: Camera, hits: Hits, materials: Sequence[Material], light: Sequence[float],
          ambient: float, background: Callable[[np.ndarray], np.ndarray],
          falloff: float = 0.0) -> np.ndarray:
    """Lambertian + ambient shading of the hits; returns (H, W, 3) float RGB in [0, 1].

    Args:
        materials: one per shape, indexed like the shapes given to :func:`cast`.
        light: (3,) world direction towards a distant light.
        ambient: share of the light that is ambient (0..1).
        background: maps (M, 3) world ray directions of missed pixels to (M, 3) RGB (the sky).
        falloff: light attenuation 1 / (1 + falloff * depth^2) (indoor lamps; 0 = none).
    """
    light = np.asarray(light, dtype=np.float64) / np.linalg.norm(light)
    table_c1 = np.array([m.color for m in materials] + [(0.0, 0.0, 0.0)])
    table_c2 = np.array([m.color2 if m.color2 is not None else m.color for m in materials] + [(0.0, 0.0, 0.0)])
    table_code = np.array([PATTERNS.index(m.pattern) for m in materials] + [0])
    table_scale = np.array([m.scale for m in materials] + [1.0])
    table_axis = np.array([np.asarray(m.axis) / np.linalg.norm(m.axis) for m in materials] + [(0.0, 1.0, 0.0)])
    table_offset = np.array([m.offset for m in materials] + [0.0])

    idx = hits.index.ravel()
    hit = idx >= 0
    k = idx[hit]
    p = hits.points(camera).reshape(-1, 3)[hit]
    s = _pattern_value(p, table_code[k], table_scale[k], table_axis[k], table_offset[k])
    albedo = table_c1[k] + (table_c2[k] - table_c1[k]) * s[:, None]
    n = hits.normal.reshape(-1, 3)[hit]
    light_amount = ambient + (1.0 - ambient) * np.clip(n @ light, 0.0, None)
    light_amount = light_amount / (1.0 + falloff * hits.depth.ravel()[hit] ** 2)

    rgb = np.empty((idx.size, 3))
    rgb[hit] = albedo * light_amount[:, None]
    if (~hit).any():
        rgb[~hit] = background(hits.dirs.reshape(-1, 3)[~hit])
    return np.clip(rgb.reshape(camera.height, camera.width, 3), 0.0, 1.0)
