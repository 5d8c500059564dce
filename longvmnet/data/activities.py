"""Activities of the synthetic benchmark: where the person goes (`itinerary`), when activities happen
(`schedule`) and how they move and look (`motion`).

Most classes change how the object looks in a single frame, over a large part of its box, besides the motion:
open takes the lid off and shows the dark inside (close is its reversal); pour tilts the lifted object with a
stream; wash runs tap water over it and makes it look wet (blue); stir changes the colour of its contents;
shake lifts and tilts it to and fro with speed lines; push leans it and wipes a trail on the surface; rotate
turns it upside down and round. Pick up (lift, carry out of the frame) and put down (its exact time reversal,
possibly at another place) are the motion-only pair. Positions are world pixels (x right, y down), angles
counter-clockwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from longvmnet.config import SYNTH_ACTIVITIES
from longvmnet.data import scene as sc

FPS = 5
ACTIVITIES = tuple(SYNTH_ACTIVITIES)
PUSH = 12  # pushes move an object between home - PUSH and home + PUSH (pixels)
# durations: (shortest, longest, skew) seconds, drawn as shortest * (longest / shortest) ** (u ** skew)
SHORT = (15, 60, 0.5)  # pick up, put down, open, close, push: median 40 s
LONG = (20, 200, 1.2)  # the other classes: median 54 s
CONTAINERS = ("cup", "bowl", "pan")  # can be poured from / stirred without opening a lid
LIFT = 30  # pick up / put down: height of the lift (pixels)
ROWS = (sc.WALL + 52, sc.WALL + 104, sc.SIZE - 4)  # y of the bottom of the back, middle and front row
SIZES = ((62, 80), (76, 95), (88, 108))  # size range (longer side, pixels) of objects in each row


@dataclass
class Segment:
    activity: str
    obj: int
    start: int  # seconds (segments start and end on whole seconds)
    end: int
    hand: int  # 0, or 1 while another activity is going on
    side: str  # frame edge the arm comes from: "left" | "right" | "bottom"
    sign: int = 1  # direction of push / tilt / spin
    amount: float = 0.0  # push distance (pixels) or number of turns
    x0: float = 0.0  # world x of the left edge of the place's view
    at: tuple[float, float] | None = None  # put down: where the object lands (world centre)


def footprint(obj: sc.ObjectAsset, lid_rest) -> tuple[float, float]:
    """Room an object needs left and right of its centre: its body, its lid once off, pushes both ways."""
    w = obj.size[0]
    left = right = w / 2
    if obj.lid is not None:
        lw = obj.lid.mask.shape[1]
        left, right = max(left, lw / 2 - lid_rest[0]), max(right, lid_rest[0] + lw / 2)
    return left + PUSH + 2, right + PUSH + 2


def itinerary(rng: np.random.Generator, n_places: int, duration: int) -> list[tuple[int, int, int]]:
    """Stays (place, start, end) in whole seconds: every place once in a random order, then revisits; the
    gaps between stays are walks (3 s plus 1.5 s per place passed)."""
    n_stays = n_places if duration < 240 else max(n_places, int(round(duration / rng.uniform(220, 400))))
    order = list(rng.permutation(n_places))
    while len(order) < n_stays:
        order.append(int(rng.choice([p for p in range(n_places) if p != order[-1]])))
    walks = [int(round(3 + 1.5 * abs(a - b))) for a, b in zip(order, order[1:])]
    lengths = rng.dirichlet(np.full(n_stays, 4.0)) * (duration - sum(walks))
    stays, t = [], 0
    for k, p in enumerate(order):
        end = duration if k == n_stays - 1 else min(t + max(int(lengths[k]), 5), duration)
        if end - t >= 5:
            stays.append((int(p), t, end))
        t = end + (walks[k] if k < len(walks) else 0)
    return stays


# --------------------------------------------------------------------------------------------- schedule


def _feasible(act: str, cat: str, visible: bool, lid: bool, is_open: bool) -> bool:
    closed = not (lid and is_open)
    return {
        "pick up": visible and closed, "put down": not visible, "open": visible and lid and not is_open,
        "close": visible and lid and is_open, "pour": visible and (cat in CONTAINERS or (lid and is_open)),
        "wash": visible, "stir": visible and (cat in CONTAINERS or (cat == "jar" and is_open)),
        "shake": visible and closed, "push": visible and closed, "rotate": visible and closed,
    }[act]  # fmt: skip


def _side(rng, act: str, x: float, y: float, avoid: str | None = None) -> str | None:
    """The frame edge an arm comes from to reach frame point (x, y): usually the nearest."""
    opts = ["left", "right"] if act in ("pick up", "put down") else ["left", "right", "bottom"]
    opts = [s for s in opts if s != avoid]
    dist = {"left": x, "right": sc.SIZE - x, "bottom": 1.5 * (sc.SIZE - y)}
    w = np.array([1.0 / (dist[s] + 20) ** 2 for s in opts])
    return str(rng.choice(opts, p=w / w.sum())) if opts else None


def _duration(rng, act: str) -> int:
    lo, hi, skew = SHORT if act in ("pick up", "put down", "open", "close", "push") else LONG
    return int(round(lo * (hi / lo) ** (rng.uniform() ** skew)))


def schedule(
    rng: np.random.Generator, scene: sc.Scene, duration: int, share: float, stays: list[tuple[int, int, int]]
) -> list[Segment]:
    """Activities covering about `share` of the video, inside the stays, on objects at the place (the
    larger, i.e. nearer the camera, the likelier). Class frequencies differ per video (Dirichlet weights,
    damped by how often a class was done already); a picked-up object is put down within about a minute,
    wherever the person is then (in a free spot), and an opened lid is closed again before leaving; half the
    stays end with an object taken along to the next place.

    One job, long because its rules (what may follow what, where, for how long) share the state of the walk
    through the video; split into functions they would pass all of it around."""
    n_obj, objs = len(scene.objects), scene.objects
    visible, is_open = [True] * n_obj, [False] * n_obj
    place = [int(p) for p in scene.place_of]  # where each object rests (-1: carried)
    pos = [tuple(map(float, xy)) for xy in scene.home]  # its centre (world)
    room = [footprint(o, r) for o, r in zip(objs, scene.lid_rest)]
    offset = [0.0] * n_obj  # push offset from pos
    since = [0] * n_obj  # when an object was hidden / opened
    shortest = min(10, max(3, duration // 6))
    short_video = duration < 240  # segments are cut to fit the stays, and follow each other closely
    mean_gap = min(max(50.0 * (1 - share) / share - 2, 2.0), 0.25 * duration)
    busy = 0  # seconds of activity so far: the next one starts no earlier than busy / share
    weights = rng.dirichlet(np.full(len(ACTIVITIES), 6.0))
    segments: list[Segment] = []

    def spot(o: int, p: int) -> tuple[float, float] | None:
        """A free resting place for object `o` at place p (the rows' gaps between resting objects)."""
        h = objs[o].size[1]
        left, right = room[o]
        options = []
        for row in ROWS:
            taken = sorted((pos[k][0] - room[k][0], pos[k][0] + room[k][1]) for k in range(n_obj)
                           if place[k] == p and abs(pos[k][1] + objs[k].size[1] / 2 - row) < 1)  # fmt: skip
            edges = [p * sc.STRIDE] + [v for iv in taken for v in iv] + [p * sc.STRIDE + sc.SIZE]
            for a, b in zip(edges[::2], edges[1::2]):
                if b - a >= left + right:
                    options.append((float(rng.uniform(a + left, b - right)), row - h / 2))
        return options[int(rng.integers(len(options)))] if options else None

    def feasible(act: str, o: int, p: int) -> bool:
        obj = objs[o]
        if not visible[o]:
            return act == "put down"
        return place[o] == p and _feasible(act, obj.category, True, obj.lid is not None, is_open[o])

    def pick(t: int, p: int, exclude: set[int], avoid: str | None, only: str | None = None):
        urgent = []
        for o in range(n_obj):
            if o in exclude or not (not visible[o] or (is_open[o] and place[o] == p)):
                continue
            act = "put down" if not visible[o] else "close"
            if t - since[o] > 30 or rng.uniform() < 0.8:
                urgent.append(act)
        used = np.array([sum(s.activity == a for s in segments) for a in ACTIVITIES])
        chance = weights / (1 + used)  # classes done already in this video are less likely again
        if short_video:  # and all but ruled out in a short one, so that object queries name one segment
            chance = chance * (1e-6 + (used == 0))
        order = rng.choice(len(ACTIVITIES), len(ACTIVITIES), replace=False, p=chance / chance.sum())
        for act in [only] if only else urgent + [ACTIVITIES[i] for i in order]:
            cands = [o for o in range(n_obj) if o not in exclude and feasible(act, o, p)]
            near = np.array([float(np.prod(objs[o].size)) ** 4 for o in cands])  # the nearer, the likelier
            for o in rng.choice(cands, len(cands), replace=False, p=near / near.sum()) if cands else ():
                o = int(o)
                seg = Segment(act, o, t, t, 0, "", x0=float(p * sc.STRIDE))
                if act == "put down":
                    seg.at = spot(o, p)
                    if seg.at is None:
                        continue
                x, y = seg.at or (pos[o][0] + offset[o], pos[o][1])
                if act == "push":
                    target = float(rng.choice([d for d in (-PUSH, 0, PUSH) if d != offset[o]]))
                    seg.sign, seg.amount = (1 if target > offset[o] else -1), target - offset[o]
                    seg.side = "left" if seg.sign > 0 else "right"
                    if seg.side == avoid:
                        continue
                else:
                    seg.side = _side(rng, act, x - seg.x0, y, avoid)
                    if seg.side is None:
                        continue
                if act == "pour":
                    seg.sign = {"left": -1, "right": 1}.get(seg.side, int(rng.choice([-1, 1])))
                    seg.amount = float(rng.uniform(95, 115))
                if act == "rotate":
                    seg.sign = int(rng.choice([-1, 1]))
                return seg
        return None

    def commit(seg: Segment, stay_end: int) -> bool:
        """Give the segment a duration (inside the stay) and apply its effect; False if it would not fit."""
        nonlocal busy
        o, a = seg.obj, seg.activity
        d = min(_duration(rng, a), int(0.6 * duration))
        if not short_video and busy + d > (0.3 if a in ("put down", "close") else 0.26) * duration:
            return False  # keep the share of time with an activity under 0.3 (0.26 for a new activity)
        if a == "open" and seg.start + d > stay_end - 20:  # leave time to close it before walking away
            return False
        if seg.start + d > stay_end - 1:  # cut to the stay if most of it fits
            if not short_video and stay_end - 1 - seg.start < 0.7 * d:
                return False
            d = stay_end - 1 - seg.start
        if d < shortest:
            return False
        seg.end = seg.start + d
        if a == "rotate":
            seg.amount = float(max(1, round((seg.end - seg.start) / 15)))
        if a == "pick up":
            visible[o], place[o], pos[o], offset[o] = False, -1, (pos[o][0] + offset[o], pos[o][1]), 0.0
        elif a == "put down":
            visible[o], place[o], pos[o] = True, int(seg.x0 // sc.STRIDE), seg.at
        is_open[o] = {"open": True, "close": False}.get(a, is_open[o])
        offset[o] += seg.amount if a == "push" else 0.0
        since[o] = seg.end
        segments.append(seg)
        busy += d if seg.hand == 0 else 0
        return True

    for p, begin, stay_end in stays:
        t = begin + int(rng.uniform(1, max(2.0, min(mean_gap, 0.5 * (stay_end - begin)))))
        t = t if short_video else max(t, int(busy / share * rng.uniform(0.95, 1.15)))
        while t < stay_end - shortest - 1:
            seg = pick(t, p, set(), None)
            if seg is None:
                t += 5
                continue
            if not commit(seg, stay_end):
                break
            ends = [seg.end]
            d = seg.end - seg.start
            if d >= 8 and rng.uniform() < 0.12:  # a second hand starts another activity meanwhile
                t2 = seg.start + int(rng.uniform(0.2, 0.6) * d)
                near = {o for o in range(n_obj) if abs(pos[o][0] - pos[seg.obj][0]) < 90}
                seg2 = pick(t2, p, near | {seg.obj}, seg.side)
                if seg2 is not None and seg2.activity != "put down":
                    seg2.hand = 1
                    if commit(seg2, stay_end):
                        ends.append(seg2.end)
            if any(not v or op for v, op in zip(visible, is_open)):  # soon put down / closed again
                t = max(ends) + int(2 + rng.exponential(8))
            else:
                t = max(ends) + int(2 + rng.exponential(mean_gap if short_video else 0.5 * mean_gap))
                t = t if short_video else max(t, int(busy / share * rng.uniform(0.95, 1.15)))
        if not short_video and all(visible) and rng.uniform() < 0.5:  # take an object along to the next place
            free = max([begin] + [s.end for s in segments if s.start >= begin]) + 2
            for _ in range(3):
                seg = pick(max(free, stay_end - int(rng.integers(16, 40))), p, set(), None, only="pick up")
                if seg is not None and commit(seg, stay_end):
                    break
    return sorted(segments, key=lambda s: (s.start, s.hand))


# ------------------------------------------------------------------------------------------ choreography


def ease(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _rot(dx, dy, deg):
    """Rotate offsets counter-clockwise on screen (y down)."""
    r = np.deg2rad(deg)
    return dx * np.cos(r) + dy * np.sin(r), -dx * np.sin(r) + dy * np.cos(r)


def _quant(deg):
    return (np.round(np.asarray(deg) / sc.ANGLE_STEP).astype(int) * sc.ANGLE_STEP) % 360


def motion(seg: Segment, obj: sc.ObjectAsset, cx: float, cy: float, lid: tuple, lid_rest) -> dict:
    """Per-frame arrays over the segment: object centre / angle / lid, hand target g and weight wt (0 = at the
    off-frame entry point, 1 = at g), effects {frame offset: [effect]}. `lid` = (attached, lx, ly) before."""
    act, d = seg.activity, seg.end - seg.start
    if act in ("put down", "close"):  # exact time reversals
        forward = replace(seg, activity={"put down": "pick up", "close": "open"}[act])
        fwd = motion(forward, obj, cx, cy, (True, 0.0, 0.0), lid_rest)
        out = {k: v[::-1].copy() for k, v in fwd.items() if k != "effects"}
        out["effects"] = {}
        if act == "close":
            out["attached"] = fwd["attached"][::-1].copy()
        return out
    n = d * FPS
    t = np.arange(n) / FPS
    a = min(2.0, 0.2 * d)
    v = np.clip((t - a) / max(d - 2 * a, 0.2), 0, 1)
    w, h = obj.size
    ramp = ease(v / 0.15) * ease((1 - v) / 0.15)  # 0 -> 1 -> 0 over the action
    hold = (ramp > 0.999).astype(np.float32)
    full = lambda x: np.full(n, x, np.float32)
    out = {"ox": full(cx), "oy": full(cy), "angle": np.zeros(n, int), "vis": np.ones(n, bool),
           "attached": np.full(n, lid[0]), "lx": full(lid[1]), "ly": full(lid[2]),
           "wt": np.minimum(ease(t / a), ease((d - t) / a)), "effects": {}}  # fmt: skip
    top = lambda: (out["ox"], out["oy"] - h / 2 + 4)
    if act == "pick up":
        t1 = a + 0.35 * (d - a)
        exit_x = seg.x0 + (-w / 2 + 8 if seg.side == "left" else sc.SIZE + w / 2 - 8)
        out["oy"] = cy - LIFT * ease((t - a) / (t1 - a))
        out["ox"] = cx + (exit_x - cx) * ease((t - t1) / max(d - 0.2 - t1, 0.2))
        out["wt"] = ease(t / a)
        g = top()
    elif act == "open":
        ax, ay = cx + obj.lid_offset[0], cy + obj.lid_offset[1]
        px, py = cx + lid_rest[0], cy + lid_rest[1]
        out["lx"] = ax + (px - ax) * ease(v)
        out["ly"] = ay + (py - ay) * ease(v) - 8 * np.sin(np.pi * v)
        out["attached"] = t < a
        g = (out["lx"], out["ly"] - 3)
    elif act == "pour":
        prof = ease(v / 0.2) * ease((1 - v) / 0.2)
        deg = seg.sign * (seg.amount * prof + 4 * np.sin(2 * np.pi * t / 1.6) * (prof > 0.999))
        out["angle"] = _quant(deg)
        out["oy"] = cy - 8 * prof
        dx, dy = _rot(seg.sign * (w / 2 - 3), 2.0, out["angle"])
        g = (out["ox"] + dx, out["oy"] + dy)
        lx, ly = _rot(-seg.sign * w / 2, -h / 2, out["angle"])
        for i in np.nonzero(prof > 0.6)[0]:
            x0, y0 = cx + lx[i], out["oy"][i] + ly[i]
            out["effects"][int(i)] = [
                ("stream", float(x0), float(y0 + 1), float(max(y0 + 8, cy + h / 2 + 2)), 3.5)
            ]
    elif act == "wash":
        g = (
            cx + 0.42 * w * np.sin(2 * np.pi * t / 0.8) * ramp,
            cy - 0.1 * h + 2 * np.sin(2 * np.pi * t / 0.4) * ramp,
        )
        for i in np.nonzero(ramp > 0.5)[0]:  # tap water runs onto it; it looks wet
            out["effects"][int(i)] = [
                ("wet", seg.obj),
                ("stream", float(cx + 0.15 * w), -12.0, float(cy - h / 2), 5.0),
                ("drops", float(cx), float(cy), 0.6 * w, 0.45 * h),
            ]
    elif act == "stir":
        r, om = 0.28 * w, 2 * np.pi * t / 1.2
        g = (cx + r * np.cos(om) * ramp, cy - h / 2 - 14 + 0.35 * r * np.sin(om) * ramp)
        for i in np.nonzero(ramp > 0.5)[0]:  # its contents change colour over the segment
            tip = (float(cx + 0.5 * r * np.cos(om[i])), float(cy - 0.1 * h))
            out["effects"][int(i)] = [
                ("contents", float(cx), float(cy - 0.1 * h), 0.4 * w, 0.32 * h, float(v[i])),
                ("spoon", float(g[0][i]), float(g[1][i] + 5), *tip),
            ]
    elif act == "shake":
        k = np.arange(n)
        to_fro = np.where(k % 2 == 0, 1, -1)
        out["oy"] = cy - 16 * ramp + 4 * to_fro * hold
        out["ox"] = cx + 2 * np.where((k // 2) % 2 == 0, 1, -1) * hold
        out["angle"] = _quant(18 * to_fro * ramp)
        for i in np.nonzero(ramp > 0.5)[0]:
            out["effects"][int(i)] = [("lines", float(cx), float(out["oy"][i]), w / 2, h / 2)]
        g = top()
    elif act == "push":
        out["ox"] = cx + seg.amount * ease(v)
        out["angle"] = _quant(-seg.sign * 12 * ramp)  # it leans the way it is pushed
        for i in np.nonzero(ramp > 0.3)[0]:
            out["effects"][int(i)] = [
                ("trail", float(cx - seg.sign * (w / 2 + 30)), float(out["ox"][i]), cy + h / 2 - 5, 10.0)
            ]
        g = (out["ox"] - seg.sign * (w / 2 + 5), full(cy + 3))
    elif act == "rotate":
        out["angle"] = _quant(seg.sign * 360 * seg.amount * ease(v))
        g = (full(cx), full(cy - h / 2 + 3))
    else:
        raise ValueError(f"unknown activity {act!r}")
    out["gx"], out["gy"] = (
        np.broadcast_to(g[0], n).astype(np.float32),
        np.broadcast_to(g[1], n).astype(np.float32),
    )
    return out
