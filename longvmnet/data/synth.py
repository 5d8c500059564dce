"""Synthetic ReST-style long-video benchmark (docs/CONTRACTS.md layout), deterministic for a seed.

Per video: a table scene with 8-11 object instances of >= 6 categories (`scene.py`), a schedule of sparse
activities (about `activity_share` of the time; 5 s to 2 min each; occasionally two at once, one per hand)
and their motion (`activities.py`), all laid out as per-frame state (`Timeline`) with distractors (bouncing
ball, flickering screen, passer-by shadow, idle hand wandering, camera jitter, lighting drift); then
annotations, idle crops, queries (`benchmark.py`) and an H.264 video at 5 fps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from longvmnet.data import scene as sc
from longvmnet.data.activities import ACTIVITIES, FPS, PUSH, Segment, ease, motion, schedule
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


# ------------------------------------------------------------------------------------------------ scene


def build_scene(rng: np.random.Generator) -> sc.Scene:
    """Background, 8-11 objects (>= 6 categories, >= 2 with a lid, one photo per object) laid out in rows."""
    background, info = sc.make_background(rng)
    for attempt in range(20):
        n = int(rng.integers(8, 12))
        lidded = list(rng.choice(sc.LIDDED, 2, replace=False))
        others = [c for c in rng.permutation(sc.CATEGORIES) if c not in lidded][:4]
        cats = lidded + others + list(rng.choice(sc.CATEGORIES, n - 6))
        sources = rng.permutation(sc.APPEARANCES)
        objs = []
        for i, cat in enumerate(rng.permutation(cats)):
            hue = float(rng.uniform())
            size = int(rng.integers(28, 45 - attempt // 2))
            source = str(sources[i % len(sources)])
            objs.append(
                sc.make_object(rng, "", str(cat), f"{source}+h{int(hue * 360):03d}", source, hue, size)
            )
        placed = _layout(rng, objs)
        if placed is not None:
            break
    else:
        raise RuntimeError("could not lay out the objects of a scene")
    objs, home, lid_rest = placed
    for i, obj in enumerate(objs):
        obj.id = f"obj_{i:02d}"
    screen = None
    if rng.uniform() < 0.8:
        x, y = int(rng.integers(8, sc.SIZE - 40)), int(rng.integers(6, sc.WALL - 30))
        screen = (x, y, x + 30, y + 22)
    return sc.Scene(
        background=background, objects=objs, hand=sc.make_hand(sc.SKIN[int(rng.integers(len(sc.SKIN)))]),
        sleeve=tuple(int(c) for c in rng.integers(30, 200, 3)), liquid=sc.LIQUID[int(rng.integers(3))],
        ball_rgb=tuple(int(c) for c in rng.integers(0, 256, 3)), ball_radius=int(rng.integers(5, 9)),
        screen=screen, home=home, lid_rest=lid_rest, info=info,
    )  # fmt: skip


def _layout(rng, objs):
    """Place objects in three rows on the table; None if they do not fit with >= 6 categories."""
    rows = [sc.WALL + 4 + 49 * (r + 1) - 2 for r in range(3)]  # y of each row's bottom
    ext, rest = [], []
    for obj in objs:
        w, h = obj.size
        side = int(rng.choice([-1, 1]))
        if obj.lid is None:
            lid = (0.0, 0.0)
        elif obj.category == "bottle":
            lw, lh = obj.lid.mask.shape[1], obj.lid.mask.shape[0]
            lid = (side * (w / 2 + lw / 2 + 2), h / 2 - lh / 2)
        else:
            lid = (side * 0.55 * w, obj.lid_offset[1])
        extra = max(abs(lid[0]) + (obj.lid.mask.shape[1] / 2 if obj.lid else 0) - w / 2, 0)
        ext.append((PUSH + 2 + (extra if side < 0 else 0), PUSH + 2 + (extra if side > 0 else 0)))
        rest.append(lid)
    used, members = [0.0] * 3, [[] for _ in rows]
    for i in range(len(objs)):
        need = ext[i][0] + objs[i].size[0] + ext[i][1]
        r = int(np.argmin(used))
        if used[r] + need <= sc.SIZE:
            used[r] += need
            members[r].append(i)
    kept = sorted(i for m in members for i in m)
    if len({objs[i].category for i in kept}) < 6 or sum(objs[i].lid is not None for i in kept) < 2:
        return None
    home = np.zeros((len(objs), 2), np.float32)
    for r, m in enumerate(members):
        gaps = rng.dirichlet(np.ones(len(m) + 1)) * (sc.SIZE - used[r])
        x = gaps[0]
        for k, i in enumerate(rng.permutation(m)):
            w, h = objs[i].size
            home[i] = (x + ext[i][0] + w / 2, rows[r] - h / 2)
            x += ext[i][0] + w + ext[i][1] + gaps[k + 1]
    return [objs[i] for i in kept], home[kept], np.asarray([rest[i] for i in kept], np.float32)


# ---------------------------------------------------------------------------------------------- timeline


def _entry(rng, side: str, gx: float, gy: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Shoulder (outside the frame) and entry point (12 px outside the edge) of an arm reaching (gx, gy)."""
    size = sc.SIZE
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
    return s, (s[0] + alpha * (gx - s[0]), s[1] + alpha * (gy - s[1]))


def _set_hand(tl: sc.Timeline, k: int, f0: int, hx, hy, shoulder) -> None:
    f1 = min(f0 + len(hx), tl.n)
    tl.hx[k, f0:f1], tl.hy[k, f0:f1] = hx[: f1 - f0], hy[: f1 - f0]
    tl.sx[k, f0:f1], tl.sy[k, f0:f1] = shoulder
    tl.hvis[k, f0:f1] = True


def build_timeline(rng: np.random.Generator, scene: sc.Scene, duration: float, segments: list[Segment]):
    """Per-frame state of the whole video: activities, idle hand wanders and distractors."""
    n = int(round(duration * FPS))
    tl = sc.Timeline.empty(n, len(scene.objects))
    tl.ox[:], tl.oy[:] = scene.home[:, :1], scene.home[:, 1:]
    for seg in segments:
        o, f0 = seg.obj, seg.start * FPS
        f1 = min(seg.end * FPS, n)
        cx, cy = float(tl.ox[o, f0]), float(tl.oy[o, f0])
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
        shoulder, entry = _entry(rng, seg.side, float(m["gx"][reach]), float(m["gy"][reach]))
        wt = m["wt"]
        _set_hand(
            tl,
            seg.hand,
            f0,
            entry[0] + (m["gx"] - entry[0]) * wt,
            entry[1] + (m["gy"] - entry[1]) * wt,
            shoulder,
        )
        for i, effects in m["effects"].items():
            if f0 + i < n:
                tl.effects.setdefault(f0 + i, []).extend(effects)
    _wanders(rng, scene, tl, segments, duration)
    _distractors(rng, scene, tl, duration)
    return tl


def _wanders(rng, scene: sc.Scene, tl: sc.Timeline, segments: list[Segment], duration: float) -> None:
    """Hard negatives: the hand comes in, hovers away from the objects and leaves, touching nothing."""
    busy = sorted((s.start, s.end) for s in segments) + [(duration, duration)]
    free_from = 0.0
    for start, end in busy:
        if start - free_from >= 14 and rng.uniform() < min(0.8, (start - free_from) / 300):
            d = int(rng.integers(4, 10))
            s = int(rng.integers(int(free_from) + 2, int(start) - 2 - d + 1))
            f0 = s * FPS
            pts = rng.uniform((20, 15), (sc.SIZE - 20, sc.SIZE - 15), (64, 2))
            near = np.hypot(pts[:, :1] - tl.ox[:, f0], pts[:, 1:] - tl.oy[:, f0]) < 32
            far = pts[~(near & tl.vis[:, f0]).any(1)]
            way = far[:2] if len(far) >= 2 else rng.uniform((20, 15), (sc.SIZE - 20, 50), (2, 2))
            shoulder, entry = _entry(rng, str(rng.choice(["left", "right", "bottom"])), *way[0])
            knots = np.array([entry, way[0], way[1], entry])
            u = np.arange(d * FPS) / FPS / d * 3
            leg = np.minimum(u.astype(int), 2)
            frac = ease(u - leg)[:, None]
            path = knots[leg] + (knots[leg + 1] - knots[leg]) * frac
            _set_hand(tl, 0, f0, path[:, 0].astype(np.float32), path[:, 1].astype(np.float32), shoulder)
        free_from = max(free_from, end)


def _distractors(rng, scene: sc.Scene, tl: sc.Timeline, duration: float) -> None:
    """Camera jitter, lighting drift, a bouncing ball, passer-by shadows and a flickering screen."""
    n, size = tl.n, sc.SIZE
    t = np.arange(n) / FPS
    knots = np.arange(0, duration + 4, 2.0)
    for arr in (tl.jx, tl.jy):
        walk = np.interp(t, knots, rng.uniform(-2, 2, len(knots)))
        for f in rng.integers(0, n, rng.poisson(duration / 60)):
            walk[f : f + 2] += rng.choice([-3, 3])
        arr[:] = np.clip(np.round(walk), -sc.JITTER, sc.JITTER)
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
            arr[f0:f1] = r + np.where(p < span, p, 2 * span - p)
    for _ in range(rng.poisson(duration / 120)):
        f0 = int(rng.integers(0, n))
        f1 = min(n, f0 + int(rng.uniform(3, 7) * FPS))
        path = np.linspace(-40, size + 40, f1 - f0)
        tl.shadow[f0:f1] = path if rng.uniform() < 0.5 else path[::-1]
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
        "segments": [{"activity": s.activity, "object": scene.objects[s.obj].id, "start": float(s.start),
                      "end": float(s.end)} for s in spec.segments],
        "crops": {obj.id: [{"file": f"crops/{vid}/{obj.id}_{k}.png", "time": round(f / FPS, 1),
                            "box": _as_json(objs[o][f : f + 1])[0]} for k, (f, _) in enumerate(crops[o])]
                  for o, obj in enumerate(scene.objects)},
    }  # fmt: skip
    return ann, crops


# ------------------------------------------------------------------------------------------ generation


def build_video(video_id: str, seed: int, index: int, duration: float, share: float = 0.2) -> VideoSpec:
    """Scene, schedule and timeline of one video; deterministic for (seed, index)."""
    rng = np.random.default_rng([seed, index])
    scene = build_scene(rng)
    segments = schedule(rng, scene, int(duration), share)
    return VideoSpec(
        video_id, float(duration), scene, build_timeline(rng, scene, duration, segments), segments
    )


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
    queries_per_minute: float = 5.0,
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
    entries, queries = {}, []
    for i, vid in enumerate(tqdm(ids, desc="videos", unit="video", disable=not progress)):
        spec = build_video(vid, seed, i, duration, activity_share)
        ann, crops = annotate(spec, np.random.default_rng([seed, i, 1]))
        if render:
            render_video(spec, root, crops, progress=progress)
        write_json(root / "annotations" / f"{vid}.json", ann, compact=True)
        queries += make_queries(ann, activities=list(ACTIVITIES), rng=np.random.default_rng([seed, i, 2]),
                                per_window=per_window, windows=windows)  # fmt: skip
        entries[vid] = {"file": f"videos/{vid}.mp4", "annotations": f"annotations/{vid}.json",
                        "duration": duration, "split": splits[vid]}  # fmt: skip
    bench = {"version": VERSION, "seed": seed, "fps": FPS, "width": sc.SIZE, "height": sc.SIZE,
             "activities": list(ACTIVITIES), "categories": list(sc.CATEGORIES), "videos": entries,
             "queries": queries}  # fmt: skip
    write_json(root / "benchmark.json", bench)
    return root
