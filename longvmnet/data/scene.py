"""Scene assets and frame rendering for the synthetic ReST-style benchmark.

A scene is a world strip of 2-4 places (kitchen counter, sink, table, desk, stove) side by side, each a
224-pixel-wide view seen from a chest-mounted camera (wall + work surface cut from scikit-image photos, tinted
and blurred, and a fixture: basin, hob, mat, tiles), joined by short corridors the camera pans across when the
person walks; object sprites (one silhouette per category, one texture per instance, large as near the camera)
and a hand sprite. `render_frame` composes one 224 x 224 RGB frame from the per-frame state in a `Timeline`
(filled by `synth.py`) with numpy slicing only.

Coordinates are world pixels (x right, y down); a frame shows the world shifted by (-jx, -jy): jx holds the
place the camera looks at (`STRIDE` per place) plus its jitter. Angles are degrees counter-clockwise,
quantised to `ANGLE_STEP`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage import color
from skimage import data as skdata

SIZE = 224  # frame side in pixels
JITTER = 3  # largest camera shift in pixels
WALL = 60  # y of the work surface's back edge
GAP = 48  # corridor between two places in the world strip
STRIDE = SIZE + GAP  # world x distance between the left edges of two neighbouring places
HAND = 30  # hand sprite side in pixels
ANGLE_STEP = 3  # rotated sprites are cached every ANGLE_STEP degrees

CATEGORIES = ("cup", "bottle", "box", "bowl", "pan", "book", "jar", "towel")
LIDDED = ("bottle", "box", "jar")  # categories with a lid (open / close)
ASPECT = {
    "cup": 1.1,
    "bottle": 0.55,
    "box": 1.2,
    "bowl": 1.6,
    "pan": 1.7,
    "book": 0.75,
    "jar": 0.85,
    "towel": 1.0,
}
APPEARANCES = (
    "coffee", "chelsea", "rocket", "astronaut", "immunohistochemistry", "hubble_deep_field", "retina",
    "colorwheel", "coins", "camera", "moon", "clock",
)  # fmt: skip
PLACES = {  # place -> the categories found there (objects of a place are drawn from these)
    "kitchen counter": ("jar", "bottle", "box", "towel", "cup"),
    "sink": ("cup", "bowl", "pan", "bottle", "towel"),
    "table": ("cup", "bowl", "book", "bottle", "box"),
    "desk": ("book", "box", "cup", "jar", "bottle"),
    "stove": ("pan", "jar", "bowl", "bottle", "towel"),
}
TEXTURES = ("brick", "gravel", "grass", "moon", "camera", "coins")  # grey photos for wall and table
SKIN = ((224, 172, 138), (198, 134, 98), (141, 85, 54), (241, 194, 160), (170, 112, 80))
LIQUID = ((70, 130, 220), (120, 70, 30), (230, 230, 240))


@functools.cache
def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as float RGB in [0, 1], (h, w, 3)."""
    img = np.asarray(getattr(skdata, name)(), dtype=np.float32)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    img = img / (255.0 if img.max() > 1 else 1.0)
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    zoom = (h / img.shape[0], w / img.shape[1]) + (1,) * (img.ndim - 2)
    out = ndimage.zoom(img, zoom, order=1, grid_mode=True, mode="nearest")
    return out[:h, :w]


def _crop(rng: np.random.Generator, img: np.ndarray, frac: float, aspect: float) -> np.ndarray:
    """A random crop covering `frac` of the shorter side with aspect w / h."""
    ih, iw = img.shape[:2]
    ch = int(min(ih, iw / aspect) * frac)
    cw = int(ch * aspect)
    y, x = rng.integers(0, ih - ch + 1), rng.integers(0, iw - cw + 1)
    return img[y : y + ch, x : x + cw]


@dataclass
class Sprite:
    rgb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # tight mask bbox x1, y1, x2, y2 in sprite pixels

    def __post_init__(self) -> None:
        ys, xs = np.nonzero(self.mask)
        self.box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)

    def origin(self, cx: np.ndarray | float, cy: np.ndarray | float) -> tuple:
        """Integer top-left corner of the sprite centred at (cx, cy); works on arrays too."""
        h, w = self.mask.shape
        return np.floor(np.asarray(cx) - w / 2 + 0.5).astype(int), np.floor(
            np.asarray(cy) - h / 2 + 0.5
        ).astype(int)


def paste(frame: np.ndarray, sprite: Sprite, cx: float, cy: float, tint=None) -> None:
    """Draw `sprite` centred at (cx, cy) in frame pixels, clipped to the frame; `tint` (r, g, b) recolours
    it half-way (a wet object)."""
    x0, y0 = (int(v) for v in sprite.origin(cx, cy))
    h, w = sprite.mask.shape
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, frame.shape[1]), min(y0 + h, frame.shape[0])
    if fx0 >= fx1 or fy0 >= fy1:
        return
    sub = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    rgb = sprite.rgb[sub]
    if tint is not None:
        rgb = (0.4 * rgb + 0.6 * np.asarray(tint, np.float32)).astype(np.uint8)
    np.copyto(frame[fy0:fy1, fx0:fx1], rgb, where=sprite.mask[sub][..., None])


def capsule(frame: np.ndarray, p0, p1, radius: float, rgb, edge: float = 0.75) -> None:
    """Draw a thick segment from p0 to p1 (frame pixels); the rim is darkened by `edge`."""
    (x0, y0), (x1, y1) = p0, p1
    h, w = frame.shape[:2]
    bx0, bx1 = max(int(min(x0, x1) - radius), 0), min(int(max(x0, x1) + radius) + 1, w)
    by0, by1 = max(int(min(y0, y1) - radius), 0), min(int(max(y0, y1) + radius) + 1, h)
    if bx0 >= bx1 or by0 >= by1:
        return
    ys, xs = np.ogrid[by0:by1, bx0:bx1]
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    d2 = (xs - x0 - t * dx) ** 2 + (ys - y0 - t * dy) ** 2
    inside = d2 <= radius * radius
    if not inside.any():
        return
    region = frame[by0:by1, bx0:bx1]
    col = np.asarray(rgb, np.float32)
    rim = d2 > (0.6 * radius) ** 2
    np.copyto(region, col.astype(np.uint8), where=(inside & ~rim)[..., None])
    np.copyto(region, (col * edge).astype(np.uint8), where=(inside & rim)[..., None])


def _shape(category: str, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Silhouette masks (h, w) of one category: (full, lid, dark parts, light parts)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    u, v = x / w, y / h
    rect = lambda u0, v0, u1, v1: (u >= u0) & (u < u1) & (v >= v0) & (v < v1)
    ell = lambda cu, cv, ru, rv: ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 < 1
    none = np.zeros((h, w), bool)
    lid, dark, light = none, none, none
    if category == "cup":
        body = (v >= 0.12) & (np.abs(u - 0.4) < 0.34 - 0.08 * v) & (v < 0.97)
        ring = ell(0.8, 0.52, 0.18, 0.26) & ~ell(0.8, 0.52, 0.09, 0.15) & (u > 0.7)
        full, dark = body | ring, (body & (v < 0.2)) | ring
    elif category == "bottle":
        body = rect(0.2, 0.45, 0.8, 0.97) | ell(0.5, 0.47, 0.3, 0.14)
        neck = rect(0.39, 0.14, 0.61, 0.47)
        lid = rect(0.35, 0.0, 0.65, 0.15)
        full, light = body | neck | lid, rect(0.2, 0.62, 0.8, 0.8)
    elif category == "box":
        lid = rect(0.0, 0.08, 1.0, 0.3)
        full, dark = lid | rect(0.06, 0.3, 0.94, 1.0), rect(0.0, 0.27, 1.0, 0.32)
    elif category == "bowl":
        full = (ell(0.5, 0.3, 0.5, 0.66) & (v >= 0.3)) | rect(0.3, 0.9, 0.7, 1.0)
        dark = full & (v < 0.4)
    elif category == "pan":
        full = ell(0.32, 0.52, 0.31, 0.46) | rect(0.6, 0.45, 1.0, 0.6)
        dark = rect(0.6, 0.45, 1.0, 0.6) | (full & ~ell(0.32, 0.52, 0.25, 0.37) & (u < 0.64))
    elif category == "book":
        full, dark, light = (
            rect(0.08, 0.03, 0.92, 0.98),
            rect(0.08, 0.03, 0.22, 0.98),
            rect(0.84, 0.05, 0.92, 0.96),
        )
    elif category == "jar":
        body = rect(0.1, 0.3, 0.9, 0.9) | ell(0.5, 0.88, 0.4, 0.1) | rect(0.15, 0.3, 0.85, 0.98)
        lid = rect(0.05, 0.1, 0.95, 0.31)
        full, dark = body | lid, rect(0.05, 0.1, 0.95, 0.14)
    elif category == "towel":
        full = rect(0.1, 0.05, 0.9, 1.0) & (v < 0.86 + 0.08 * np.sin(4 * np.pi * u))
        dark = full & (np.floor(v * 10) % 3 == 0)
    else:
        raise ValueError(f"unknown category {category!r}")
    return full, lid & full, dark & full, light & full


def _texture(rng: np.random.Generator, source: str, w: int, h: int, hue: float) -> np.ndarray:
    """A saturated, hue-shifted crop of a photo as float RGB (h, w, 3)."""
    img = _resize(_crop(rng, photo(source), rng.uniform(0.1, 0.3), w / h), w, h)
    hsv = color.rgb2hsv(np.clip(img, 0, 1))
    if np.ptp(img) < 1e-3 or np.abs(img[..., 0] - img[..., 1]).max() < 1e-3:  # grey photo: paint it
        hsv[..., 1] = 0.65
    hsv[..., 0] = (hsv[..., 0] + hue) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.4 + 0.25, 0, 1)
    lo, hi = np.percentile(hsv[..., 2], (2, 98))
    hsv[..., 2] = 0.35 + 0.6 * np.clip((hsv[..., 2] - lo) / max(hi - lo, 1e-3), 0, 1)
    return color.hsv2rgb(hsv).astype(np.float32)


@dataclass
class ObjectAsset:
    """One object instance: its sprite, lid and rotated versions (cached)."""

    id: str
    category: str
    appearance: str
    full: Sprite  # body + lid (upright)
    body: Sprite  # without the lid (same frame as `full`)
    lid: Sprite | None  # the lid cut out of `full`
    lid_offset: tuple[float, float]  # lid centre minus sprite centre when closed
    _rotated: dict = field(default_factory=dict, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.full.mask.shape
        return w, h

    def sprite(self, angle: int, detached: bool) -> Sprite:
        """The body (+ lid unless `detached`) rotated by `angle` degrees counter-clockwise."""
        base = self.body if detached and self.lid is not None else self.full
        angle = int(angle) % 360
        if angle == 0:
            return base
        key = (angle, base is self.body)
        if key not in self._rotated:
            h, w = base.mask.shape
            side = int(np.ceil(np.hypot(w, h))) + 2
            py, px = (side - h) // 2, (side - w) // 2
            pad = ((py, side - h - py), (px, side - w - px))
            rgb = np.pad(base.rgb.astype(np.float32), pad + ((0, 0),))
            mask = np.pad(base.mask.astype(np.float32), pad)
            rgb = ndimage.rotate(rgb, angle, reshape=False, order=1)
            mask = ndimage.rotate(mask, angle, reshape=False, order=1) > 0.5
            self._rotated[key] = Sprite(np.clip(rgb, 0, 255).astype(np.uint8), mask)
        return self._rotated[key]


def make_object(rng, obj_id: str, category: str, appearance: str, source: str, hue: float, size: int):
    """Build an object instance of about `size` pixels (longer side) textured from photo `source`."""
    aspect = ASPECT[category]
    w, h = (size, max(int(size / aspect), 12)) if aspect >= 1 else (max(int(size * aspect), 12), size)
    full, lid, dark, light = _shape(category, w, h)
    rgb = _texture(rng, source, w, h, hue)
    if lid.any():
        lid_rgb = np.clip(_texture(rng, source, w, h, (hue + 0.5) % 1.0) * 0.8, 0, 1)
        if category == "jar":  # metallic lid
            lid_rgb = np.repeat(0.45 + 0.35 * np.linspace(1, 0, h, dtype=np.float32)[:, None, None], w, 1)
            lid_rgb = np.repeat(lid_rgb, 3, 2) * np.array([1.0, 0.97, 0.9], np.float32)
        rgb = np.where(lid[..., None], lid_rgb, rgb)
    rgb = np.where(dark[..., None], rgb * 0.5, rgb)
    rgb = np.where(light[..., None], 0.3 * rgb + 0.65, rgb)
    rgb = rgb * (1.15 - 0.3 * np.linspace(0, 1, w, dtype=np.float32))[None, :, None]  # lit from the left
    outline = full & ~ndimage.binary_erosion(full)
    rgb = np.where(outline[..., None], rgb * 0.3, rgb)
    rgb8 = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    full_s, body_s = Sprite(rgb8, full), Sprite(rgb8, full & ~lid) if lid.any() else Sprite(rgb8, full)
    if lid.any():  # open: its dark inside shows over the top half
        ys = np.nonzero(lid.any(1))[0]
        body = full & ~lid if category == "bottle" else full
        inside = body & (np.arange(h)[:, None] < max(ys.max() + 0.35 * h, 0.55 * h))
        shade = np.linspace(0.05, 0.3, h, dtype=np.float32)[:, None, None] * np.array(
            [1.0, 0.8, 0.6], np.float32
        )
        body_s = Sprite(np.where(inside[..., None], (shade * 255).astype(np.uint8), rgb8), body)
    lid_s, lid_off = None, (0.0, 0.0)
    if lid.any():
        ys, xs = np.nonzero(lid)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        lid_s = Sprite(rgb8[y0:y1, x0:x1].copy(), lid[y0:y1, x0:x1].copy())
        lid_off = ((x0 + x1) / 2 - w / 2, (y0 + y1) / 2 - h / 2)
    return ObjectAsset(obj_id, category, appearance, full_s, body_s, lid_s, lid_off)


def make_hand(skin, size: int = HAND) -> Sprite:
    """A skin-coloured hand, fingers up, about `size` x `size` pixels (large: the camera is on the chest)."""
    y, x = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) * (20 / size)
    palm = ((x - 10) / 7.5) ** 2 + ((y - 13) / 6.5) ** 2 < 1
    fingers = np.zeros_like(palm)
    for fx, top in ((5.0, 4.0), (8.5, 2.0), (12.0, 2.5), (15.2, 4.5)):
        fingers |= (np.abs(x - fx) < 1.7) & (y > top) & (y < 12)
    thumb = ((x - 3.5) / 2.0) ** 2 + ((y - 11) / 4.0) ** 2 < 1
    mask = palm | fingers | thumb
    shade = 1.1 - 0.35 * (y / 20) - 0.2 * (~palm & ~thumb)
    rgb = np.asarray(skin, np.float32)[None, None] * shade[..., None]
    rgb = np.where((mask & ~ndimage.binary_erosion(mask))[..., None], rgb * 0.6, rgb)
    return Sprite(np.clip(rgb, 0, 255).astype(np.uint8), mask)


def make_background(rng: np.random.Generator, place: str) -> tuple[np.ndarray, dict]:
    """The static view of one place (SIZE + 2 JITTER tall, SIZE wide, uint8) and how it was made."""
    side = SIZE + 2 * JITTER
    wall_h = WALL + JITTER
    parts, info = [], {"place": place}
    for name, rows, stretch in (("wall", wall_h, 1.0), ("surface", side - wall_h, rng.uniform(1.0, 3.0))):
        src = str(rng.choice(TEXTURES))
        grey = _crop(rng, photo(src)[..., 0], rng.uniform(0.3, 0.9), SIZE / rows / stretch)
        grey = _resize(grey, SIZE, rows)
        grey = ndimage.gaussian_filter(grey, rng.uniform(0.6, 2.5))
        grey = (grey - grey.mean()) / max(grey.std(), 1e-3)
        level = rng.uniform(0.35, 0.7) if name == "wall" else rng.uniform(0.3, 0.6)
        tint = color.hsv2rgb(np.array([[[rng.uniform(), rng.uniform(0.1, 0.45), 1.0]]]))[0, 0]
        img = np.clip(level + 0.07 * grey, 0, 1)[..., None] * tint[None, None]
        parts.append(img.astype(np.float32))
        info[name] = src
    canvas = np.concatenate(parts, axis=0)
    canvas[wall_h - 1 : wall_h + 2] *= 0.55  # edge of the work surface
    y, x = np.mgrid[0:side, 0:SIZE].astype(np.float32)
    if place == "sink":  # a steel basin in the middle of the surface
        basin = ((x - 112) / 70) ** 2 + ((y - wall_h - 60) / 38) ** 2 < 1
        canvas[basin] = 0.55 + 0.15 * (y[basin, None] - wall_h) / 120
    elif place == "stove":  # a dark hob with two burner rings
        canvas[(y > wall_h + 8) & (y < wall_h + 110) & (x > 20) & (x < 204)] = 0.12
        for bx in (70, 154):
            r = np.hypot(x - bx, y - wall_h - 58)
            canvas[(r > 22) & (r < 27)] = (0.7, 0.2, 0.1)
    elif place == "table":  # a placemat
        canvas[(y > wall_h + 50) & (y < side - 12) & (x > 40) & (x < 184)] *= 0.75
    elif place == "kitchen counter":  # tiles on the wall
        canvas[:wall_h][(x[:wall_h] % 28 < 2) | (y[:wall_h] % 28 < 2)] = 0.85
    return (np.clip(canvas, 0, 1) * 255).astype(np.uint8), info


def make_world(rng: np.random.Generator, places: list[str]) -> tuple[np.ndarray, list[dict]]:
    """The world strip: the places' views STRIDE apart with corridors between, JITTER margins all round."""
    side = SIZE + 2 * JITTER
    world = np.zeros((side, 2 * JITTER + (len(places) - 1) * STRIDE + SIZE, 3), np.uint8)
    corridor = (np.array([90, 85, 80]) * rng.uniform(0.8, 1.3)).astype(np.uint8)
    world[:] = corridor
    world[:, ::24] = corridor // 2  # door frames and panels pass by while walking
    infos = []
    for p, place in enumerate(places):
        view, info = make_background(rng, place)
        world[:, JITTER + p * STRIDE : JITTER + p * STRIDE + SIZE] = view
        infos.append(info)
    return world, infos


@dataclass
class Scene:
    """Everything static about one video."""

    background: np.ndarray  # (SIZE + 2 JITTER, world width + 2 JITTER, 3) uint8 world strip (make_world)
    places: list[str]  # place p's view starts at world x = p * STRIDE
    objects: list[ObjectAsset]
    hand: Sprite
    sleeve: tuple[int, int, int]
    liquid: tuple[int, int, int]
    ball_rgb: tuple[int, int, int]
    ball_radius: int
    screen: tuple[int, int, int, int] | None  # world x1, y1, x2, y2 of a flickering screen on a wall
    home: np.ndarray  # (O, 2) first resting centre of each object (world)
    place_of: np.ndarray  # (O,) int: the place each object starts at
    lid_rest: np.ndarray  # (O, 2) lid centre minus object centre once opened (0 without a lid)
    info: dict  # background sources etc.


@dataclass
class Timeline:
    """Per-frame state of a video (F frames, O objects, 2 hands). Filled by synth.py."""

    n: int  # frames
    place: np.ndarray  # (F,) int place the camera looks at, -1 while walking
    jx: np.ndarray  # (F,) int camera shift (place offset + jitter)
    jy: np.ndarray
    gain: np.ndarray  # (F,) float lighting gain
    ox: np.ndarray  # (O, F) object centre
    oy: np.ndarray
    angle: np.ndarray  # (O, F) int degrees counter-clockwise
    vis: np.ndarray  # (O, F) bool: the object is in the scene
    attached: np.ndarray  # (O, F) bool: lid closed (always True without a lid)
    lx: np.ndarray  # (O, F) lid centre when detached
    ly: np.ndarray
    active: np.ndarray  # (O, F) bool: being handled (drawn on top)
    hx: np.ndarray  # (2, F) hand centre
    hy: np.ndarray
    hvis: np.ndarray  # (2, F) bool
    sx: np.ndarray  # (2, F) shoulder: where the arm comes from (outside the frame)
    sy: np.ndarray
    bx: np.ndarray  # (F,) distractor ball centre, NaN when absent
    by: np.ndarray
    shadow: np.ndarray  # (F,) x centre of a passer-by shadow, NaN when absent
    screen: np.ndarray  # (F, 3) uint8 colour of the flickering screen
    effects: dict[int, list[tuple]] = field(
        default_factory=dict
    )  # frame -> [("stream" | "drops" | "spoon" | "wet" | "contents" | "lines" | "trail", ...)]

    @classmethod
    def empty(cls, n: int, n_objects: int) -> Timeline:
        z = lambda *s: np.zeros(s, np.float32)
        nan = lambda: np.full(n, np.nan, np.float32)
        return cls(
            n, np.zeros(n, int), np.zeros(n, int), np.zeros(n, int), np.ones(n, np.float32), z(n_objects, n),
            z(n_objects, n),
            np.zeros((n_objects, n), int), np.ones((n_objects, n), bool), np.ones((n_objects, n), bool),
            z(n_objects, n), z(n_objects, n), np.zeros((n_objects, n), bool), z(2, n), z(2, n),
            np.zeros((2, n), bool), z(2, n), z(2, n), nan(), nan(), nan(), np.zeros((n, 3), np.uint8),
        )  # fmt: skip


_SHADOW = np.clip(1.0 - 0.45 * np.exp(-(((np.arange(70) - 35) / 22.0) ** 2)), 0, 1).astype(np.float32)


@functools.lru_cache(maxsize=256)
def _lut(gain_q: int) -> np.ndarray:
    return np.clip(np.arange(256) * (gain_q / 100.0), 0, 255).astype(np.uint8)


def render_frame(scene: Scene, tl: Timeline, f: int, *, foreground: bool = True) -> np.ndarray:
    """Frame `f` as (SIZE, SIZE, 3) uint8 RGB. `foreground=False` leaves out objects, hands and effects."""
    jx, jy = int(tl.jx[f]), int(tl.jy[f])
    frame = scene.background[JITTER + jy : JITTER + jy + SIZE, JITTER + jx : JITTER + jx + SIZE].copy()
    if scene.screen is not None and -40 < scene.screen[0] - jx < SIZE:
        x1, y1, x2, y2 = scene.screen
        a, b = max(x1 - jx, 0), min(x2 - jx, SIZE)
        frame[y1 - jy : y2 - jy, a:b] = 25
        frame[y1 - jy + 2 : y2 - jy - 2, max(a, x1 - jx + 2) : min(b, x2 - jx - 2)] = tl.screen[f]
    if foreground:
        effects = tl.effects.get(f, ())
        wet = {e[1] for e in effects if e[0] == "wet"}
        for effect in effects:
            if effect[0] == "trail":  # on the surface, under the objects
                _draw_effect(frame, scene, effect, jx, jy, f)
        near = np.abs(tl.ox[:, f] - jx - SIZE / 2) < SIZE
        idle = [o for o in np.nonzero(near & tl.vis[:, f] & ~tl.active[:, f])[0]]
        busy = [o for o in np.nonzero(near & tl.vis[:, f] & tl.active[:, f])[0]]
        for o in sorted(idle, key=lambda o: tl.oy[o, f]) + busy:
            obj = scene.objects[o]
            detached = not tl.attached[o, f]
            if detached:
                paste(frame, obj.lid, tl.lx[o, f] - jx, tl.ly[o, f] - jy)
            paste(frame, obj.sprite(tl.angle[o, f], detached), tl.ox[o, f] - jx, tl.oy[o, f] - jy,
                  (120, 170, 255) if o in wet else None)  # fmt: skip
        for effect in effects:
            if effect[0] != "trail":
                _draw_effect(frame, scene, effect, jx, jy, f)
    if not np.isnan(tl.bx[f]):
        capsule(frame, (tl.bx[f] - jx, tl.by[f] - jy), (tl.bx[f] - jx, tl.by[f] - jy), scene.ball_radius,
                scene.ball_rgb, edge=0.8)  # fmt: skip
    if foreground:
        for k in range(2):
            if tl.hvis[k, f]:
                hand = (tl.hx[k, f] - jx, tl.hy[k, f] - jy)
                capsule(frame, (tl.sx[k, f] - jx, tl.sy[k, f] - jy), (hand[0], hand[1] + 0.3 * HAND),
                        0.33 * HAND, scene.sleeve)  # fmt: skip
                paste(frame, scene.hand, *hand)
    if not np.isnan(tl.shadow[f]):
        x0 = int(tl.shadow[f]) - 35 - jx
        a, b = max(x0, 0), min(x0 + 70, SIZE)
        if a < b:
            frame[:, a:b] = (frame[:, a:b] * _SHADOW[a - x0 : b - x0, None]).astype(np.uint8)
    gain_q = int(round(float(tl.gain[f]) * 100))
    return _lut(gain_q)[frame] if gain_q != 100 else frame


def _draw_effect(frame: np.ndarray, scene: Scene, effect: tuple, jx: int, jy: int, f: int) -> None:
    kind = effect[0]
    if kind == "stream":  # ("stream", x, y_top, y_bottom, radius): poured liquid or running tap water
        x, y0, y1, r = effect[1] - jx, effect[2] - jy, effect[3] - jy, effect[4]
        col = scene.liquid if r < 4 else (150, 200, 255)
        capsule(frame, (x, y0), (x, y1), r, col, edge=0.85)
        rng = np.random.default_rng(f)
        for yy in rng.uniform(y0, y1, 3):  # droplets break the stream
            capsule(frame, (x + rng.uniform(-3, 3), yy), (x + rng.uniform(-3, 3), yy), 0.7 * r, col)
    elif kind == "drops":  # ("drops", cx, cy, rx, ry)
        rng = np.random.default_rng(f)
        cx, cy, rx, ry = effect[1] - jx, effect[2] - jy, effect[3], effect[4]
        for px, py in zip(rng.uniform(cx - rx, cx + rx, 16), rng.uniform(cy - ry, cy + ry, 16)):
            capsule(frame, (px, py), (px, py + 2.5), 2.0, (200, 230, 255), edge=0.7)
    elif kind == "spoon":  # ("spoon", x0, y0, x1, y1)
        capsule(
            frame, (effect[1] - jx, effect[2] - jy), (effect[3] - jx, effect[4] - jy), 3.0, (225, 225, 235)
        )
    elif kind == "contents":  # ("contents", cx, cy, rx, ry, progress): stirred contents changing colour
        cx, cy, rx, ry, p = effect[1] - jx, effect[2] - jy, effect[3], effect[4], effect[5]
        y0, y1 = max(int(cy - ry), 0), min(int(cy + ry) + 1, SIZE)
        x0, x1 = max(int(cx - rx), 0), min(int(cx + rx) + 1, SIZE)
        if x0 < x1 and y0 < y1:
            ys, xs = np.ogrid[y0:y1, x0:x1]
            inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 < 1
            liquid = np.asarray(scene.liquid, np.float32)
            col = (1 - p) * liquid + p * (255 - liquid)
            swirl = 0.8 + 0.2 * np.sin((xs - cx) / 4.0 + (ys - cy) / 3.0 + f)
            np.copyto(frame[y0:y1, x0:x1], (col * swirl[..., None]).clip(0, 255).astype(np.uint8),
                      where=inside[..., None])  # fmt: skip
    elif kind == "lines":  # ("lines", cx, cy, half_width, half_height): speed lines either side of a shake
        cx, cy, hw, hh = effect[1] - jx, effect[2] - jy, effect[3], effect[4]
        for side in (-1, 1):
            for dy in (-0.5 * hh, 0.0, 0.5 * hh):
                x = cx + side * (hw + 6)
                capsule(frame, (x, cy + dy - 6), (x + side * 4, cy + dy + 6), 2.0, (250, 250, 250), edge=0.9)
    elif kind == "trail":  # ("trail", x_from, x_to, y, height): a wiped band where an object was pushed
        x0, x1 = sorted((effect[1] - jx, effect[2] - jx))
        y0 = int(effect[3] - jy - effect[4] / 2)
        a, b = max(int(x0), 0), min(int(x1), SIZE)
        if a < b:
            band = frame[max(y0, 0) : max(y0 + int(effect[4]), 0), a:b]
            band[:] = (band.astype(np.float32) * 0.5 + 125).astype(np.uint8)
