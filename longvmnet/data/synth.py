"""Synthetic ReST-style long-video benchmark (docs/CONTRACTS.md layout), deterministic for a seed.

Per video, as seen by a chest-mounted camera (ADL): 2-4 places (`scene.py`), each with 4-7 large objects of
the place's categories, visited in turn with walking transitions and revisited in long videos; a schedule of
activities at the places (about `activity_share` of the time; 15 s to 3 min, median about 40 s; occasionally
two at once, one per hand) and their motion and look (`activities.py`), all laid out as per-frame state
(`Timeline`) with distractors (bouncing ball, flickering screen, passer-by shadow, idle hand wandering, camera
jitter, lighting drift); then annotations, idle crops, queries (`benchmark.py`) and an H.264 video at 5 fps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from longvmnet.data import scene as sc
from longvmnet.data.activities import (
    ACTIVITIES,
    CONTAINERS,
    FPS,
    ROWS,
    SIZES,
    Segment,
    ease,
    footprint,
    itinerary,
    motion,
    schedule,
)
from longvmnet.data.benchmark import (  # noqa: F401  (re-exported: the benchmark API lives next to its writer)
    VERSION,
    WINDOWS,
    Mp4Writer,
    assign_splits,
    load_annotations,
    load_benchmark,
    make_queries,
    patch_labels,
    render_preview,
    write_json,
)


@dataclass
class VideoSpec:
    id: str
    duration: float
    scene: sc.Scene
    timeline: sc.Timeline
    segments: list[Segment]
    stays: list[tuple[int, int, int]]  # (place, start, end) seconds; walks in between


# ------------------------------------------------------------------------------------------------ scene


def build_scene(rng: np.random.Generator, n_places: int) -> sc.Scene:
    """`n_places` distinct places, each with 4-7 objects of its categories (one with a lid, one container;
    one photo per object), large as near a chest-mounted camera, in three rows (the nearer, the larger)."""
    names = [str(p) for p in rng.choice(list(sc.PLACES), n_places, replace=False)]
    background, info = sc.make_world(rng, names)
    sources = list(rng.permutation(sc.APPEARANCES))
    objs, home, lid_rest, place_of = [], [], [], []
    for p, name in enumerate(names):
        cats = sc.PLACES[name]
        for _ in range(20):
            n = int(rng.integers(4, 9))
            kinds = [
                rng.choice([c for c in cats if c in sc.LIDDED]),
                rng.choice([c for c in cats if c in CONTAINERS]),
            ]
            kinds += list(rng.choice(cats, n - 2))
            rows = rng.integers(0, len(ROWS), n)
            made = []
            for cat, row in zip(rng.permutation(kinds), rows):
                size = int(rng.integers(*SIZES[row]))
                hue, source = float(rng.uniform()), str(sources[(len(objs) + len(made)) % len(sources)])
                made.append(
                    sc.make_object(rng, "", str(cat), f"{source}+h{int(hue * 360):03d}", source, hue, size)
                )
            keep, centres, rests = _layout(rng, made, rows, p)
            if len(keep) >= 4 and any(made[i].lid is not None for i in keep):
                break
        else:
            raise RuntimeError(f"could not lay out the objects of place {name!r}")
        objs += [made[i] for i in keep]
        home += centres
        lid_rest += rests
        place_of += [p] * len(keep)
    for i, obj in enumerate(objs):
        obj.id = f"obj_{i:02d}"
    screen = None
    if rng.uniform() < 0.8:
        p = names.index("desk") if "desk" in names else int(rng.integers(n_places))
        x, y = p * sc.STRIDE + int(rng.integers(8, sc.SIZE - 40)), int(rng.integers(4, sc.WALL - 26))
        screen = (x, y, x + 30, y + 22)
    return sc.Scene(
        background=background, places=names, objects=objs,
        hand=sc.make_hand(sc.SKIN[int(rng.integers(len(sc.SKIN)))]),
        sleeve=tuple(int(c) for c in rng.integers(30, 200, 3)), liquid=sc.LIQUID[int(rng.integers(3))],
        ball_rgb=tuple(int(c) for c in rng.integers(0, 256, 3)), ball_radius=int(rng.integers(6, 11)),
        screen=screen, home=np.asarray(home, np.float32), place_of=np.asarray(place_of),
        lid_rest=np.asarray(lid_rest, np.float32), info={"places": info},
    )  # fmt: skip


def _lid_rest(rng, obj: sc.ObjectAsset) -> tuple[float, float]:
    """Where the lid lies once off (lid centre minus object centre): beside the object, either side."""
    if obj.lid is None:
        return 0.0, 0.0
    w, h = obj.size
    side = int(rng.choice([-1, 1]))
    if obj.category == "bottle":
        lw, lh = obj.lid.mask.shape[1], obj.lid.mask.shape[0]
        return side * (w / 2 + lw / 2 + 2), h / 2 - lh / 2
    return side * 0.55 * w, obj.lid_offset[1]


def _layout(rng, objs: list[sc.ObjectAsset], rows, p: int):
    """(kept indices, world centres, lid rests) of a place's objects spread along their rows; objects that
    do not fit in their row are left out."""
    keep, home, rest = [], [], []
    for r, bottom in enumerate(ROWS):
        members = [i for i in range(len(objs)) if rows[i] == r]
        rests = {i: _lid_rest(rng, objs[i]) for i in members}
        ext = {i: footprint(objs[i], rests[i]) for i in members}
        fit, used = [], 0.0
        for i in members:
            if used + sum(ext[i]) <= sc.SIZE:
                fit.append(i)
                used += sum(ext[i])
        gaps = rng.dirichlet(np.ones(len(fit) + 1)) * (sc.SIZE - used)
        x = p * sc.STRIDE + gaps[0]
        for k, i in enumerate(rng.permutation(fit)):
            keep.append(int(i))
            home.append((x + ext[i][0], bottom - objs[i].size[1] / 2))
            rest.append(rests[i])
            x += sum(ext[i]) + gaps[k + 1]
    return keep, home, rest


# ---------------------------------------------------------------------------------------------- timeline


def _entry(rng, side: str, gx: float, gy: float, x0: float = 0.0):
    """Shoulder (outside the frame) and entry point (12 px outside the edge) of an arm reaching world point
    (gx, gy) in the view whose left edge is at world x `x0`."""
    size, gx = sc.SIZE, gx - x0
    if side == "left":
        s = (-40.0, float(np.clip(gy + rng.uniform(10, 45), 40, size + 46)))
        alpha = (-12 - s[0]) / max(gx - s[0], 1.0)
    elif side == "right":
        s = (size + 40.0, float(np.clip(gy + rng.uniform(10, 45), 40, size + 46)))
        alpha = (s[0] - size - 12) / max(s[0] - gx, 1.0)
    else:
        s = (float(np.clip(gx + rng.uniform(-50, 50), -30, size + 30)), size + 46.0)
        alpha = (s[1] - size - 12) / max(s[1] - gy, 1.0)
    alpha = float(np.clip(alpha, 0, 1))
    return (s[0] + x0, s[1]), (s[0] + x0 + alpha * (gx - s[0]), s[1] + alpha * (gy - s[1]))


def _set_hand(tl: sc.Timeline, k: int, f0: int, hx, hy, shoulder) -> None:
    f1 = min(f0 + len(hx), tl.n)
    tl.hx[k, f0:f1], tl.hy[k, f0:f1] = hx[: f1 - f0], hy[: f1 - f0]
    tl.sx[k, f0:f1], tl.sy[k, f0:f1] = shoulder
    tl.hvis[k, f0:f1] = True


def _camera(tl: sc.Timeline, stays: list[tuple[int, int, int]]) -> None:
    """Place per frame and the camera's world x: still at a place during a stay, panning while walking."""
    tl.place[:] = -1
    for k, (p, start, end) in enumerate(stays):
        f0, f1 = start * FPS, min(end * FPS, tl.n)
        tl.place[f0:f1], tl.jx[f0:f1] = p, p * sc.STRIDE
        nxt = stays[k + 1] if k + 1 < len(stays) else None
        if nxt is not None:  # walk to the next place
            u = ease((np.arange(f1, nxt[1] * FPS) - f1 + 1) / max(nxt[1] * FPS - f1 + 1, 1))
            tl.jx[f1 : nxt[1] * FPS] = np.round((p + (nxt[0] - p) * u) * sc.STRIDE)
        else:
            tl.place[f1:], tl.jx[f1:] = p, p * sc.STRIDE


def build_timeline(
    rng: np.random.Generator, scene: sc.Scene, duration: float, segments: list[Segment], stays
):
    """Per-frame state of the whole video: camera, activities, idle hand wanders and distractors."""
    n = int(round(duration * FPS))
    tl = sc.Timeline.empty(n, len(scene.objects))
    _camera(tl, stays)
    tl.ox[:], tl.oy[:] = scene.home[:, :1], scene.home[:, 1:]
    for seg in segments:
        o, f0 = seg.obj, seg.start * FPS
        f1 = min(seg.end * FPS, n)
        cx, cy = seg.at if seg.at is not None else (float(tl.ox[o, f0]), float(tl.oy[o, f0]))
        lid = (bool(tl.attached[o, f0]), float(tl.lx[o, f0]), float(tl.ly[o, f0]))
        m = motion(seg, scene.objects[o], cx, cy, lid, scene.lid_rest[o])
        for name in ("ox", "oy", "angle", "vis", "attached", "lx", "ly"):
            getattr(tl, name)[o, f0:f1] = m[name][: f1 - f0]
        tl.active[o, f0:f1] = True
        tl.ox[o, f1:] = cx if seg.activity == "pick up" else m["ox"][-1]
        tl.oy[o, f1:], tl.angle[o, f1:] = cy, 0
        tl.vis[o, f1:] = {"pick up": False, "put down": True}.get(seg.activity, tl.vis[o, f0])
        tl.attached[o, f1:], tl.lx[o, f1:], tl.ly[o, f1:] = m["attached"][-1], m["lx"][-1], m["ly"][-1]
        reach = min(int(min(2.0, 0.2 * (seg.end - seg.start)) * FPS), len(m["gx"]) - 1)
        shoulder, entry = _entry(rng, seg.side, float(m["gx"][reach]), float(m["gy"][reach]), seg.x0)
        wt = m["wt"]
        hx, hy = entry[0] + (m["gx"] - entry[0]) * wt, entry[1] + (m["gy"] - entry[1]) * wt
        _set_hand(tl, seg.hand, f0, hx, hy, shoulder)
        for i, effects in m["effects"].items():
            if f0 + i < n:
                tl.effects.setdefault(f0 + i, []).extend(effects)
    _wanders(rng, scene, tl, segments, stays)
    _distractors(rng, scene, tl, duration)
    return tl


def _wanders(rng, scene: sc.Scene, tl: sc.Timeline, segments: list[Segment], stays) -> None:
    """Hard negatives: the hand comes in, hovers away from the objects and leaves, touching nothing."""
    for p, begin, end in stays:
        x0 = float(p * sc.STRIDE)
        busy = sorted((s.start, s.end) for s in segments if s.start < end and s.end > begin) + [(end, end)]
        free_from = float(begin)
        for start, stop in busy:
            if start - free_from >= 14 and rng.uniform() < min(0.8, (start - free_from) / 300):
                d = int(rng.integers(4, 10))
                s = int(rng.integers(int(free_from) + 2, int(start) - 2 - d + 1))
                f0 = s * FPS
                pts = rng.uniform((20, 15), (sc.SIZE - 20, sc.SIZE - 15), (64, 2)) + (x0, 0)
                near = np.hypot(pts[:, :1] - tl.ox[:, f0], pts[:, 1:] - tl.oy[:, f0]) < 40
                far = pts[~(near & tl.vis[:, f0]).any(1)]
                way = (
                    far[:2] if len(far) >= 2 else rng.uniform((20, 15), (sc.SIZE - 20, 50), (2, 2)) + (x0, 0)
                )
                shoulder, entry = _entry(rng, str(rng.choice(["left", "right", "bottom"])), *way[0], x0)
                knots = np.array([entry, way[0], way[1], entry])
                u = np.arange(d * FPS) / FPS / d * 3
                leg = np.minimum(u.astype(int), 2)
                frac = ease(u - leg)[:, None]
                path = knots[leg] + (knots[leg + 1] - knots[leg]) * frac
                _set_hand(tl, 0, f0, path[:, 0].astype(np.float32), path[:, 1].astype(np.float32), shoulder)
            free_from = max(free_from, stop)


def _distractors(rng, scene: sc.Scene, tl: sc.Timeline, duration: float) -> None:
    """Camera jitter, lighting drift, a bouncing ball, passer-by shadows and a flickering screen."""
    n, size = tl.n, sc.SIZE
    t = np.arange(n) / FPS
    cam = tl.jx.astype(np.float32)  # world x of the view (before jitter)
    knots = np.arange(0, duration + 4, 2.0)
    for arr in (tl.jx, tl.jy):
        walk = np.interp(t, knots, rng.uniform(-2, 2, len(knots)))
        for f in rng.integers(0, n, rng.poisson(duration / 60)):
            walk[f : f + 2] += rng.choice([-3, 3])
        arr[:] += np.clip(np.round(walk), -sc.JITTER, sc.JITTER).astype(int)
    periods, phases = rng.uniform((120, 20), (600, 60)), rng.uniform(0, 2 * np.pi, 2)
    tl.gain[:] = (
        1
        + 0.1 * np.sin(2 * np.pi * t / periods[0] + phases[0])
        + 0.04 * np.sin(2 * np.pi * t / periods[1] + phases[1])
    )
    r = scene.ball_radius
    for _ in range(rng.poisson(duration / 90) + int(rng.uniform() < 0.5)):
        f0 = int(rng.integers(0, n))
        f1 = min(n, f0 + int(rng.uniform(4, 25) * FPS))
        speed, ang = rng.uniform(25, 70), rng.uniform(0, 2 * np.pi)
        tt = t[f0:f1] - t[f0]
        for arr, p0, vel in (
            (tl.bx, rng.uniform(r, size - r), np.cos(ang)),
            (tl.by, rng.uniform(r, size - r), np.sin(ang)),
        ):
            span = size - 2 * r
            p = np.mod(p0 - r + speed * vel * tt, 2 * span)
            arr[f0:f1] = r + np.where(p < span, p, 2 * span - p) + (cam[f0:f1] if arr is tl.bx else 0)
    for _ in range(rng.poisson(duration / 120)):
        f0 = int(rng.integers(0, n))
        f1 = min(n, f0 + int(rng.uniform(3, 7) * FPS))
        path = np.linspace(-40, size + 40, f1 - f0)
        tl.shadow[f0:f1] = (path if rng.uniform() < 0.5 else path[::-1]) + cam[f0:f1]
    if scene.screen is not None:
        changes = np.cumsum(rng.uniform(0.6, 2.0, int(duration / 0.6) + 2))
        colours = rng.integers(40, 256, (len(changes) + 1, 3))
        base = colours[np.searchsorted(changes, t)]
        tl.screen[:] = np.clip(base * rng.uniform(0.85, 1.1, (n, 1)), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- annotation


def _sprite_boxes(sp: sc.Sprite, x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """(N, 4) boxes of the in-frame part of a sprite's mask drawn at integer origins (NaN: all outside)."""
    h, w = sp.mask.shape
    out = np.stack([x0 + sp.box[0], y0 + sp.box[1], x0 + sp.box[2], y0 + sp.box[3]], 1).astype(np.float32)
    cut = np.nonzero((out[:, 0] < 0) | (out[:, 1] < 0) | (out[:, 2] > sc.SIZE) | (out[:, 3] > sc.SIZE))[0]
    for i in cut:  # partly outside: the box of what is left of the mask
        ya, xa = max(0, -y0[i]), max(0, -x0[i])
        part = sp.mask[ya : max(ya, min(h, sc.SIZE - y0[i])), xa : max(xa, min(w, sc.SIZE - x0[i]))]
        ys, xs = np.nonzero(part)
        if len(ys) == 0:
            out[i] = np.nan
            continue
        x, y = x0[i] + xa, y0[i] + ya
        out[i] = (x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1)
    return out


def _valid(b: np.ndarray, present: np.ndarray) -> np.ndarray:
    ok = present & (b[:, 2] - b[:, 0] >= 4) & (b[:, 3] - b[:, 1] >= 4)  # at least 4 x 4 px; NaN is False
    b[~ok] = np.nan
    return b


def object_boxes(scene: sc.Scene, tl: sc.Timeline, o: int) -> np.ndarray:
    """(F, 4) pixel boxes x1, y1, x2, y2 of what is drawn of object `o` in each frame (NaN when hidden)."""
    obj, out = scene.objects[o], np.full((tl.n, 4), np.nan, np.float32)
    fx, fy = tl.ox[o] - tl.jx, tl.oy[o] - tl.jy
    keys = tl.angle[o] * 2 + tl.attached[o]
    for key in np.unique(keys[tl.vis[o]]):
        idx = np.nonzero((keys == key) & tl.vis[o])[0]
        attached = bool(key % 2)
        sp = obj.sprite(int(key // 2), not attached)
        b = _sprite_boxes(sp, *sp.origin(fx[idx], fy[idx]))
        if not attached and obj.lid is not None:
            lid = _sprite_boxes(
                obj.lid, *obj.lid.origin(tl.lx[o, idx] - tl.jx[idx], tl.ly[o, idx] - tl.jy[idx])
            )
            b = np.concatenate([np.fmin(b[:, :2], lid[:, :2]), np.fmax(b[:, 2:], lid[:, 2:])], 1)
        out[idx] = b
    return _valid(out, tl.vis[o])


def hand_boxes(scene: sc.Scene, tl: sc.Timeline, k: int) -> np.ndarray:
    """(F, 4) pixel boxes of what is drawn of hand `k` (NaN when absent or outside the frame)."""
    return _valid(
        _sprite_boxes(scene.hand, *scene.hand.origin(tl.hx[k] - tl.jx, tl.hy[k] - tl.jy)), tl.hvis[k]
    )


def _as_json(boxes: np.ndarray) -> list:
    norm = np.round(boxes.astype(np.float64) / sc.SIZE, 4)
    return [None if np.isnan(row[0]) else row for row in norm.tolist()]


def choose_crops(rng, spec: VideoSpec, objs: list[np.ndarray], hands: list[np.ndarray], per_object: int = 3):
    """Object -> [(frame, (x1, y1, x2, y2) crop region in pixels)] at idle moments: the object visible,
    outside its segments (+- 1 s), no hand, ball or shadow near it. Spread over the video."""
    tl = spec.timeline
    hand_any = [np.nan_to_num(h, nan=-1e4) for h in hands]
    out = {}
    for o, box in enumerate(objs):
        ok = ~np.isnan(box[:, 0]) & ~tl.active[o]
        ok[: FPS * 2] = False
        for seg in spec.segments:
            if seg.obj == o:
                ok[max(0, (seg.start - 1) * FPS) : (seg.end + 1) * FPS] = False
        grown = box + np.array([-12, -12, 12, 12], np.float32)
        for h in hand_any:
            ok &= ~(
                (h[:, 0] < grown[:, 2])
                & (h[:, 2] > grown[:, 0])
                & (h[:, 1] < grown[:, 3])
                & (h[:, 3] > grown[:, 1])
            )
        bx, by = np.nan_to_num(tl.bx - tl.jx, nan=-1e4), np.nan_to_num(tl.by - tl.jy, nan=-1e4)
        ok &= ~(
            (bx > grown[:, 0] - 10)
            & (bx < grown[:, 2] + 10)
            & (by > grown[:, 1] - 10)
            & (by < grown[:, 3] + 10)
        )
        ok &= ~(np.abs(np.nan_to_num(tl.shadow, nan=-1e4) - tl.jx - (box[:, 0] + box[:, 2]) / 2) < 60)
        frames = np.nonzero(ok)[0]
        picks = []
        for part in np.array_split(frames, per_object):
            if len(part):
                picks.append(int(rng.choice(part)))
        regions = []
        for f in sorted(set(picks)):
            x1, y1, x2, y2 = box[f]
            cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 0.75 + 4
            region = tuple(int(np.clip(v, 0, sc.SIZE)) for v in (cx - half, cy - half, cx + half, cy + half))
            regions.append((f, region))
        out[o] = regions
    return out


def annotate(spec: VideoSpec, rng: np.random.Generator) -> tuple[dict, dict]:
    """The annotation dict of docs/CONTRACTS.md and the chosen crops {object: [(frame, region)]}."""
    scene, tl, vid = spec.scene, spec.timeline, spec.id
    objs = [object_boxes(scene, tl, o) for o in range(len(scene.objects))]
    hands = [hand_boxes(scene, tl, k) for k in range(2)]
    crops = choose_crops(rng, spec, objs, hands)
    ann = {
        "video": vid, "duration": spec.duration, "fps": FPS,
        "objects": {obj.id: {"category": obj.category, "appearance": obj.appearance,
                             "boxes": _as_json(objs[o])} for o, obj in enumerate(scene.objects)},
        "actor": {"boxes": _as_json(hands[0]), "boxes_2": _as_json(hands[1])},
        "places": [{"place": scene.places[p], "start": float(a), "end": float(b)} for p, a, b in spec.stays],
        "segments": [{"activity": s.activity, "object": scene.objects[s.obj].id, "start": float(s.start),
                      "end": float(s.end)} for s in spec.segments],
        "crops": {obj.id: [{"file": f"crops/{vid}/{obj.id}_{k}.png", "time": round(f / FPS, 1),
                            "box": _as_json(objs[o][f : f + 1])[0]} for k, (f, _) in enumerate(crops[o])]
                  for o, obj in enumerate(scene.objects)},
    }  # fmt: skip
    return ann, crops


# ------------------------------------------------------------------------------------------ generation


def build_video(video_id: str, seed: int, index: int, duration: float, share: float = 0.2) -> VideoSpec:
    """Places, scene, itinerary, schedule and timeline of one video; deterministic for (seed, index).
    2 places under 4 minutes, else 2-4."""
    rng = np.random.default_rng([seed, index])
    scene = build_scene(rng, 2 if duration < 240 else int(rng.integers(2, 5)))
    stays = itinerary(rng, len(scene.places), int(duration))
    segments = schedule(rng, scene, int(duration), share, stays)
    timeline = build_timeline(rng, scene, duration, segments, stays)
    return VideoSpec(video_id, float(duration), scene, timeline, segments, stays)


def render_video(spec: VideoSpec, root: Path, crops: dict, *, progress: bool = True, crf: int = 26) -> Path:
    """Write videos/<id>.mp4 and the crop PNGs (cut from the same rendered frames)."""
    path = root / "videos" / f"{spec.id}.mp4"
    (root / "crops" / spec.id).mkdir(parents=True, exist_ok=True)
    crop_at: dict[int, list] = {}
    for o, picks in crops.items():
        for k, (f, region) in enumerate(picks):
            crop_at.setdefault(f, []).append((spec.scene.objects[o].id, k, region))
    with Mp4Writer(path, fps=FPS, size=sc.SIZE, crf=crf) as writer:
        for f in tqdm(range(spec.timeline.n), desc=spec.id, unit="frame", leave=False, disable=not progress):
            frame = sc.render_frame(spec.scene, spec.timeline, f)
            writer.write(frame)
            for oid, k, (x1, y1, x2, y2) in crop_at.get(f, ()):
                Image.fromarray(frame[y1:y2, x1:x2]).save(root / "crops" / spec.id / f"{oid}_{k}.png")
    return path


def generate(
    out_dir: str | Path,
    *,
    videos: int,
    minutes: float,
    seed: int,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    progress: bool = True,
    queries_per_minute: float = 10.0,
    activity_share: float = 0.2,
    windows: dict[str, float] = WINDOWS,
    render: bool = True,
) -> Path:
    """Write a benchmark of `videos` videos of `minutes` each to `out_dir` (docs/CONTRACTS.md) and return it.

    Queries: about `queries_per_minute` per video minute, spread over 3 types x len(windows) windows.
    `render=False` writes annotations and benchmark.json only (no mp4, no crop PNGs): fast, for tests.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    duration = float(max(10, round(minutes * 60)))
    ids = [f"vid_{i:03d}" for i in range(videos)]
    splits = assign_splits(ids, split, np.random.default_rng([seed, 1 << 20]))
    per_window = max(1, round(queries_per_minute * duration / 60 / (3 * len(windows))))
    bench = {"version": VERSION, "seed": seed, "fps": FPS, "width": sc.SIZE, "height": sc.SIZE,
             "activities": list(ACTIVITIES), "categories": list(sc.CATEGORIES), "videos": {}, "queries": []}  # fmt: skip
    for i, vid in enumerate(tqdm(ids, desc="videos", unit="video", disable=not progress)):
        _add_video(bench, root, vid, i, duration, splits[vid], per_window=per_window, windows=windows,
                   activity_share=activity_share, render=render, progress=progress)  # fmt: skip
    write_json(root / "benchmark.json", bench)
    return root


def extend(
    out_dir: str | Path,
    *,
    videos: int,
    split: str = "train",
    progress: bool = True,
    queries_per_minute: float = 10.0,
    activity_share: float = 0.2,
    windows: dict[str, float] = WINDOWS,
) -> Path:
    """Add `videos` more videos, all in one split, to a generated benchmark: the next video indices of the same
    seed and duration, so the videos already there (and their splits) stay exactly as they were."""
    root = Path(out_dir)
    bench = json.loads((root / "benchmark.json").read_text())
    first = len(bench["videos"])
    duration = float(next(iter(bench["videos"].values()))["duration"])
    per_window = max(1, round(queries_per_minute * duration / 60 / (3 * len(windows))))
    for i in tqdm(range(first, first + videos), desc="videos", unit="video", disable=not progress):
        _add_video(bench, root, f"vid_{i:03d}", i, duration, split, per_window=per_window, windows=windows,
                   activity_share=activity_share, render=True, progress=progress)  # fmt: skip
        write_json(root / "benchmark.json", bench)  # after each video: an interrupted run keeps what it made
    return root


def _add_video(bench: dict, root: Path, vid: str, i: int, duration: float, split: str, *, per_window: int,
               windows: dict[str, float], activity_share: float, render: bool, progress: bool) -> None:  # fmt: skip
    """Generate video `i` of the benchmark's seed (render it, annotate it, ask its queries) into `bench`."""
    seed = bench["seed"]
    spec = build_video(vid, seed, i, duration, activity_share)
    ann, crops = annotate(spec, np.random.default_rng([seed, i, 1]))
    if render:
        render_video(spec, root, crops, progress=progress)
    write_json(root / "annotations" / f"{vid}.json", ann, compact=True)
    bench["queries"] += make_queries(ann, activities=list(ACTIVITIES), rng=np.random.default_rng([seed, i, 2]),
                                     per_window=per_window, windows=windows)  # fmt: skip
    bench["videos"][vid] = {"file": f"videos/{vid}.mp4", "annotations": f"annotations/{vid}.json",
                            "duration": duration, "split": split}  # fmt: skip
