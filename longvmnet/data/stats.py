"""What a benchmark asks, in figures (`longvmnet benchmark-stats`): the scale of the acting object, objects in
view, activity durations and share, classes, places and queries. Computed from the annotations alone, so it
reads synthetic and converted ADL benchmarks alike."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from longvmnet.data.benchmark import TYPES, WINDOWS, load_annotations, load_benchmark


def _area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _quantiles(values, qs=(10, 50, 90)) -> dict[str, float]:
    if not len(values):
        return {}
    names = {10: "p10", 50: "median", 90: "p90"}
    return {names[q]: round(float(np.percentile(values, q)), 4) for q in qs}


def video_stats(ann: dict) -> dict:
    """Per-video figures: acting-object box areas (one per annotated frame inside a segment, share of the
    frame), whether it is nearest a hand, objects in view (per frame with any object visible, at a place
    when the video has places), segment durations, activity share, classes, places visited."""
    fps, segs = ann["fps"], ann["segments"]
    hands = [b for k, b in ann.get("actor", {}).items() if k.startswith("boxes")]
    centre = lambda b: np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])  # noqa: E731
    areas, nearest = [], []
    for s in segs:
        boxes = ann["objects"][s["object"]]["boxes"]
        for f in range(round(s["start"] * fps), min(round(s["end"] * fps), len(boxes))):
            if boxes[f] is None:
                continue
            areas.append(_area(boxes[f]))
            hand = np.array([centre(h[f]) for h in hands if h[f] is not None])
            if len(hand):  # is the acting object the visible object nearest a hand?
                others = [o["boxes"][f] for o in ann["objects"].values() if o["boxes"][f] is not None]
                dist = np.array([np.abs(hand - centre(b)).sum(1).min() for b in others])
                nearest.append(bool(np.abs(hand - centre(boxes[f])).sum(1).min() <= dist.min()))
    tracks = [o["boxes"] for o in ann["objects"].values()]
    n = len(ann["actor"]["boxes"]) if ann.get("actor") else max((len(b) for b in tracks), default=0)
    in_view = np.zeros(n, int)
    for boxes in tracks:
        in_view += np.array([b is not None for b in boxes[:n]] + [False] * (n - len(boxes[:n])))
    places = ann.get("places", [])
    at_place = np.zeros(n, bool) if places else np.ones(n, bool)  # walks between places are left out
    for p in places:
        at_place[round(p["start"] * fps) : round(p["end"] * fps)] = True
    covered = np.zeros(int(np.ceil(ann["duration"])) + 1, bool)
    for s in segs:
        covered[int(s["start"]) : int(np.ceil(s["end"]))] = True
    return {
        "areas": areas,
        "nearest": nearest,
        "in_view": in_view[(in_view > 0) & at_place].tolist(),
        "durations": [s["end"] - s["start"] for s in segs],
        "share": float(covered[: int(np.ceil(ann["duration"]))].mean()) if ann["duration"] else 0.0,
        "classes": Counter(s["activity"] for s in segs),
        "places": len({p["place"] for p in places}),
        "visits": len(places),
    }


def benchmark_stats(root: str | Path) -> dict:
    """The figures of a benchmark folder (keys below); quantiles are p10 / median / p90. Box areas are shares
    of the frame; `acting_nearest_hand` is the share of segment frames with a hand in which the acting object
    is the visible object whose centre is nearest a hand's (L1)."""
    bench = load_benchmark(root)
    per = {vid: video_stats(load_annotations(root, vid)) for vid in bench["videos"]}
    pooled = lambda key: [v for s in per.values() for v in s[key]]  # noqa: E731
    classes = sum((s["classes"] for s in per.values()), Counter())
    queries = Counter((q["type"], q["window"]) for q in bench["queries"])
    shares = [s["share"] for s in per.values()]
    return {
        "videos": len(per),
        "hours": round(sum(v["duration"] for v in bench["videos"].values()) / 3600, 3),
        "acting_box_area": _quantiles(pooled("areas")),
        "acting_nearest_hand": round(float(np.mean(pooled("nearest"))), 3) if pooled("nearest") else None,
        "objects_in_view": _quantiles(pooled("in_view")),
        "segment_duration_s": _quantiles(pooled("durations")),
        "segments": len(pooled("durations")),
        "activity_share": {
            "min": round(min(shares), 3),
            "mean": round(float(np.mean(shares)), 3),
            "max": round(max(shares), 3),
        },  # fmt: skip
        "classes": {a: classes.get(a, 0) for a in bench["activities"]},
        "places_per_video": {vid: s["places"] for vid, s in per.items()},
        "visits_per_video": {vid: s["visits"] for vid, s in per.items()},
        "queries": {t: {w: queries.get((t, w), 0) for w in WINDOWS} for t in TYPES},
    }


def format_stats(stats: dict) -> str:
    """The figures as a plain-text table."""

    def q3(d: dict, fmt: str) -> str:
        return " / ".join(format(d.get(k, float("nan")), fmt) for k in ("p10", "median", "p90"))

    share = stats["activity_share"]
    places = list(stats["places_per_video"].values())
    rows = [
        f"{stats['videos']} videos, {stats['hours']:.2f} h, {stats['segments']} segments",
        f"{'acting box area (p10/med/p90)':<34}{q3(stats['acting_box_area'], '.3f')}",
        f"{'acting object nearest a hand':<34}{stats['acting_nearest_hand']}",
        f"{'objects in view (p10/med/p90)':<34}{q3(stats['objects_in_view'], '.3g')}",
        f"{'segment duration s (p10/med/p90)':<34}{q3(stats['segment_duration_s'], '.1f')}",
        f"{'activity share (min/mean/max)':<34}"
        + " / ".join(f"{share.get(k, float('nan')):.3f}" for k in ("min", "mean", "max")),
        f"{'places per video (min-max)':<34}{min(places, default=0)}-{max(places, default=0)}",
        "segments per class: " + ", ".join(f"{a} {n}" for a, n in stats["classes"].items()),
        f"{'queries':<12}" + "".join(f"{w:>9}" for w in WINDOWS),
    ]
    rows += [f"{t:<12}" + "".join(f"{n:>9}" for n in stats["queries"][t].values()) for t in TYPES]
    return "\n".join(rows)
