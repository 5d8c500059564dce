"""Activities of the synthetic benchmark: when they happen (`schedule`) and how they move (`motion`).

Each class is recognisable only from motion over several frames of the object and the hand: pick up lifts the
object and carries it out of the frame, put down is its exact time reversal; open slides the lid off (a bottle
cap goes onto the table) and close is its reversal; pour tilts the lifted object with a stream; wash rubs the
hand to and fro with droplets; stir circles a spoon over it; shake jolts it up and down; push slides it
sideways; rotate spins it in place. Positions are scene pixels (x right, y down), angles counter-clockwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from longvmnet.config import SYNTH_ACTIVITIES
from longvmnet.data import scene as sc

FPS = 5
ACTIVITIES = tuple(SYNTH_ACTIVITIES)
PUSH = 9  # pushes move an object between home - PUSH and home + PUSH (pixels)
SHORT = ("pick up", "put down", "open", "close", "push")  # 5-20 s; the others last 5-120 s
CONTAINERS = ("cup", "bowl", "pan")  # can be poured from / stirred without opening a lid
LIFT = 24  # pick up / put down: height of the lift (pixels)


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
    opts = ["left", "right"] if act in ("pick up", "put down") else ["left", "right", "bottom"]
    opts = [s for s in opts if s != avoid]
    dist = {"left": x, "right": sc.SIZE - x, "bottom": 1.5 * (sc.SIZE - y)}
    w = np.array([1.0 / (dist[s] + 20) ** 2 for s in opts])
    return str(rng.choice(opts, p=w / w.sum())) if opts else None


def schedule(rng: np.random.Generator, scene: sc.Scene, duration: int, share: float) -> list[Segment]:
    """Sparse activities covering about `share` of the video. Class frequencies differ per video (Dirichlet
    weights), so some classes occur once in a video and others several times; a hidden (picked up) object
    is put down and an opened lid closed again within about 1-2 minutes."""
    n_obj = len(scene.objects)
    visible, is_open, offset = [True] * n_obj, [False] * n_obj, [0] * n_obj
    since = [0] * n_obj  # when an object was hidden / opened
    mean_gap = max(16.0 * (1 - share) / share - 2, 2.0)  # activities last about 16 s on average
    t = int(rng.uniform(1, max(2.0, min(mean_gap, 0.3 * duration))))
    weights = rng.dirichlet(np.full(len(ACTIVITIES), 3.0))
    segments: list[Segment] = []

    def feasible(act: str, o: int) -> bool:
        obj = scene.objects[o]
        return _feasible(act, obj.category, visible[o], obj.lid is not None, is_open[o])

    def pick(t: int, exclude: set[int], avoid: str | None):
        urgent = []
        for o in range(n_obj):
            if o in exclude or not (not visible[o] or is_open[o]):
                continue
            act = "put down" if not visible[o] else "close"
            if t - since[o] > (60 if act == "put down" else 120) or rng.uniform() < 0.5:
                urgent.append(act)
        order = rng.choice(len(ACTIVITIES), len(ACTIVITIES), replace=False, p=weights)
        for act in urgent + [ACTIVITIES[i] for i in order]:
            objs = [o for o in range(n_obj) if o not in exclude and feasible(act, o)]
            rng.shuffle(objs)
            for o in objs:
                x, y = scene.home[o, 0] + offset[o], scene.home[o, 1]
                seg = Segment(act, o, t, t, 0, "")
                if act == "push":
                    target = int(rng.choice([p for p in (-PUSH, 0, PUSH) if p != offset[o]]))
                    seg.sign, seg.amount = (1 if target > offset[o] else -1), float(target - offset[o])
                    seg.side = "left" if seg.sign > 0 else "right"
                    if seg.side == avoid:
                        continue
                else:
                    seg.side = _side(rng, act, x, y, avoid)
                    if seg.side is None:
                        continue
                if act == "pour":
                    seg.sign = {"left": -1, "right": 1}.get(seg.side, int(rng.choice([-1, 1])))
                    seg.amount = float(rng.uniform(95, 115))
                if act == "rotate":
                    seg.sign = int(rng.choice([-1, 1]))
                return seg
        return None

    def commit(seg: Segment) -> bool:
        """Give the segment a duration and apply its effect on the object; False if it would not fit."""
        o, a = seg.obj, seg.activity
        lo, hi = (5, 20) if a in SHORT else (5, 120)
        d = int(round(lo * (hi / lo) ** (rng.uniform() ** 2)))
        seg.end = seg.start + max(5, min(d, int(0.6 * duration)))
        if seg.end > duration - 1:
            return False
        if a == "rotate":
            seg.amount = float(max(1, round((seg.end - seg.start) / 12)))
        visible[o] = {"pick up": False, "put down": True}.get(a, visible[o])
        is_open[o] = {"open": True, "close": False}.get(a, is_open[o])
        offset[o] += int(seg.amount) if a == "push" else 0
        since[o] = seg.end
        segments.append(seg)
        return True

    while t < duration - 6:
        seg = pick(t, set(), None)
        if seg is None:
            t += 5
            continue
        if not commit(seg):
            break
        ends = [seg.end]
        d = seg.end - seg.start
        if d >= 8 and rng.uniform() < 0.12:  # a second hand starts another activity meanwhile
            t2 = seg.start + int(rng.uniform(0.2, 0.6) * d)
            near = {o for o in range(n_obj) if abs(scene.home[o, 0] - scene.home[seg.obj, 0]) < 60}
            seg2 = pick(t2, near | {seg.obj}, seg.side)
            if seg2 is not None:
                seg2.hand = 1
                if commit(seg2):
                    ends.append(seg2.end)
        t = max(ends) + int(2 + rng.exponential(mean_gap))
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
        exit_x = -w / 2 + 8 if seg.side == "left" else sc.SIZE + w / 2 - 8
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
                ("stream", float(x0), float(y0 + 1), float(max(y0 + 8, cy + h / 2 + 2)))
            ]
    elif act == "wash":
        g = (
            cx + 0.42 * w * np.sin(2 * np.pi * t / 0.8) * ramp,
            cy - 0.1 * h + 2 * np.sin(2 * np.pi * t / 0.4) * ramp,
        )
        for i in np.nonzero(hold)[0]:
            out["effects"][int(i)] = [("drops", float(cx), float(cy), 0.7 * w, 0.5 * h)]
    elif act == "stir":
        r, om = 0.28 * w, 2 * np.pi * t / 1.2
        g = (cx + r * np.cos(om) * ramp, cy - h / 2 - 14 + 0.35 * r * np.sin(om) * ramp)
        for i in np.nonzero(hold)[0]:
            tip = (float(cx + 0.5 * r * np.cos(om[i])), float(cy - h / 2 + 8))
            out["effects"][int(i)] = [("spoon", float(g[0][i]), float(g[1][i] + 5), *tip)]
    elif act == "shake":
        k = np.arange(n)
        out["oy"] = cy - 10 * ramp + 5 * np.where(k % 2 == 0, 1, -1) * hold
        out["ox"] = cx + 1.5 * np.where((k // 2) % 2 == 0, 1, -1) * hold
        g = top()
    elif act == "push":
        out["ox"] = cx + seg.amount * ease(v)
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
