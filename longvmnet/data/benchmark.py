"""The on-disk benchmark (docs/CONTRACTS.md): reading, query generation, checks, patch labels and previews.

Shared by the synthetic generator (`synth.py`) and the ADL converter (`adl.py`): both produce per-video
annotation dicts {video, duration, fps, objects, actor, segments, crops} and call `make_queries` on them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np

VERSION = 2  # 2: egocentric scale, places, visible activities, ADL-like durations (issue 16)
WINDOWS = {"short": 300.0, "medium": 900.0, "long": 1800.0}  # nominal query window lengths (seconds)
TYPES = ("activity", "object", "time")


# ----------------------------------------------------------------------------------------------- reading


def load_benchmark(root: str | Path) -> dict:
    """benchmark.json of a benchmark folder (keys: version, seed, fps, width, height, activities, categories,
    videos, queries). Raises ValueError on an unknown version."""
    path = Path(root) / "benchmark.json"
    bench = json.loads(path.read_text())
    if bench.get("version") != VERSION:
        raise ValueError(f"{path}: benchmark version {bench.get('version')!r}, expected {VERSION}")
    return bench


def load_annotations(root: str | Path, video_id: str) -> dict:
    """annotations/<video_id>.json (keys: video, duration, fps, objects, actor, segments, crops)."""
    return json.loads((Path(root) / "annotations" / f"{video_id}.json").read_text())


def write_json(path: Path, obj: dict, *, compact: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=1)
    path.write_text(text + "\n")


class Mp4Writer:
    """H.264 yuv420p mp4 with one keyframe every `fps` frames (one per second) and +faststart."""

    def __init__(
        self, path: str | Path, *, fps: int = 5, size: int = 224, crf: int = 26, preset: str = "veryfast"
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), "w", container_options={"movflags": "+faststart"})
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width = self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        gop = str(fps)
        self.stream.options = {
            "g": gop,
            "keyint_min": gop,
            "sc_threshold": "0",
            "crf": str(crf),
            "preset": preset,
        }

    def write(self, rgb: np.ndarray) -> None:
        self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))

    def close(self) -> None:
        self.container.mux(self.stream.encode())
        self.container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------- queries


def assign_splits(video_ids: list[str], split: tuple[float, ...], rng: np.random.Generator) -> dict[str, str]:
    """Video id -> "train" | "val" | "test" by the given shares; train, then test, then val get one first."""
    n = len(video_ids)
    shares = np.asarray(split, float) / sum(split)
    counts = np.floor(shares * n).astype(int)
    for k in (0, 2, 1):  # every named split gets a video while there are videos left
        if counts[k] == 0 and shares[k] > 0 and counts.sum() < n:
            counts[k] = 1
    for k in np.argsort(-(shares * n - np.floor(shares * n)), kind="stable"):
        if counts.sum() < n:
            counts[k] += 1
    names = np.repeat(["train", "val", "test"], counts)
    order = rng.permutation(n)
    return {video_ids[i]: str(names[r]) for r, i in enumerate(order)}


def _overlaps(seg: dict, start: float, end: float) -> bool:
    return seg["start"] < end and seg["end"] > start


def _window(rng: np.random.Generator, seg: dict, length: float, duration: float):
    """A window of `length` inside the video that contains `seg`, or None."""
    lo, hi = max(0.0, seg["end"] - length), min(seg["start"], duration - length)
    if lo > hi:
        return None
    start = min(max(round(float(rng.uniform(lo, hi)), 1), lo), hi)
    end = min(max(round(start + length, 3), seg["end"]), duration)
    return start, end


def _crop_for(rng, ann: dict, obj: str, start: float, end: float):
    near = [s for s in ann["segments"] if s["object"] == obj and _overlaps(s, start, end)]
    ok = [c for c in ann["crops"].get(obj, []) if not any(s["start"] <= c["time"] <= s["end"] for s in near)]
    return ok[int(rng.integers(len(ok)))] if ok else None


def _answer_boxes(ann: dict, obj: str, start: float, end: float) -> dict[str, list[float]]:
    fps, boxes = ann["fps"], ann["objects"][obj]["boxes"]
    first, last = math.ceil(start * fps - 1e-6), min(math.ceil(end * fps - 1e-6), len(boxes))
    return {f"{f / fps:.1f}": boxes[f] for f in range(first, last) if boxes[f] is not None}


def _sample(rng, qtype: str, ann: dict, activities: list[str], wname: str, length: float) -> dict | None:
    duration, segs = ann["duration"], ann["segments"]
    cands = [s for s in segs if s["end"] - s["start"] <= length]
    if qtype != "object":  # activity and time queries show a crop of the object
        cands = [s for s in cands if ann["crops"].get(s["object"])]
    if not cands:
        return None
    seg = cands[int(rng.integers(len(cands)))]
    win = _window(rng, seg, length, duration)
    if win is None:
        return None
    start, end = win
    q = {"video": ann["video"], "type": qtype, "window": wname, "start": start, "end": end}
    others = [s for s in segs if s is not seg and _overlaps(s, start, end)]
    if qtype == "activity":
        crop = _crop_for(rng, ann, seg["object"], start, end)
        if crop is None:
            return None
        found = {s["activity"] for s in segs if s["object"] == seg["object"] and _overlaps(s, start, end)}
        answer = {"activities": [a for a in activities if a in found]}
        return q | {"object": seg["object"], "crop": crop["file"], "answer": answer}
    if qtype == "object":  # the activity must name one segment in the window
        if any(s["activity"] == seg["activity"] for s in others):
            return None
        boxes = _answer_boxes(ann, seg["object"], seg["start"], seg["end"])
        if not boxes:
            return None
        answer = {"start": seg["start"], "end": seg["end"], "boxes": boxes}
        return q | {"activity": seg["activity"], "object": seg["object"], "answer": answer}
    if any(s["activity"] == seg["activity"] and s["object"] == seg["object"] for s in others):
        return None
    crop = _crop_for(rng, ann, seg["object"], start, end)
    if crop is None:
        return None
    answer = {"start": seg["start"], "end": seg["end"]}
    return q | {"activity": seg["activity"], "object": seg["object"], "crop": crop["file"], "answer": answer}


def make_queries(
    ann: dict,
    *,
    activities: list[str],
    rng: np.random.Generator,
    per_window: int,
    windows: dict[str, float] = WINDOWS,
) -> list[dict]:
    """Up to `per_window` queries of each type for each window (length = min(nominal, duration)).

    Time/object queries: the segment lies inside the window and is the only one matching the query there.
    Activity queries: the window contains a segment on the object; the answer lists the activities of all
    segments on that object overlapping the window. Crops are taken outside those segments.
    """
    out, seen, counters = [], set(), dict.fromkeys(TYPES, 0)
    for wname, nominal in windows.items():
        length = min(float(nominal), float(ann["duration"]))
        for qtype in TYPES:
            made = 0
            for _ in range(30 * per_window):
                if made == per_window:
                    break
                q = _sample(rng, qtype, ann, activities, wname, length)
                if q is None:
                    continue
                key = (qtype, wname, q["start"], q.get("object"), q.get("activity"))
                if key in seen:
                    continue
                seen.add(key)
                counters[qtype] += 1
                out.append({"id": f"{ann['video']}/{qtype[0]}{counters[qtype]:04d}"} | q)
                made += 1
    return out


def check_query(q: dict, ann: dict, activities: list[str]) -> None:
    """Raise ValueError if a query breaks the constraints of docs/CONTRACTS.md."""
    v_e, qs, qe = ann["duration"], q["start"], q["end"]
    if not 0.0 <= qs <= qe <= v_e:
        raise ValueError(f"{q['id']}: window [{qs}, {qe}] outside [0, {v_e}]")
    obj = q["object"]
    near = [s for s in ann["segments"] if s["object"] == obj and _overlaps(s, qs, qe)]
    if q["type"] == "activity":
        found = {s["activity"] for s in near}
        if not near or q["answer"]["activities"] != [a for a in activities if a in found]:
            raise ValueError(f"{q['id']}: activity answer {q['answer']} does not match segments {near}")
    else:
        ts, te = q["answer"]["start"], q["answer"]["end"]
        if not qs <= ts <= te <= qe:
            raise ValueError(f"{q['id']}: answer [{ts}, {te}] not inside window [{qs}, {qe}]")
        match = [s for s in near if s["activity"] == q["activity"] and (s["start"], s["end"]) == (ts, te)]
        if not match:
            raise ValueError(f"{q['id']}: no segment {q['activity']} on {obj} at [{ts}, {te}]")
    if q["type"] != "object":
        crops = [c for c in ann["crops"][obj] if c["file"] == q["crop"]]
        if not crops or any(s["start"] <= crops[0]["time"] <= s["end"] for s in near):
            raise ValueError(f"{q['id']}: crop {q['crop']} missing or inside a segment on {obj}")


# ------------------------------------------------------------------------------------------ patch labels


def patch_labels(annotation: dict, frame_index: int, grid: int = 7, categories: list[str] | None = None):
    """(grid, grid) int64 labels of the patch centres of one frame: 0 background, 1 hand,
    2 + category index for an object box (front objects, i.e. lower box bottoms, win; the hand wins over all).
    `categories` defaults to the synthetic benchmark's."""
    if categories is None:
        from longvmnet.data.scene import CATEGORIES as categories
    centres = (np.arange(grid) + 0.5) / grid
    xs, ys = np.meshgrid(centres, centres)  # (grid, grid): row = y, column = x
    labels = np.zeros((grid, grid), np.int64)
    objs = [(o["boxes"][frame_index], 2 + list(categories).index(o["category"]))
            for o in annotation["objects"].values() if o["boxes"][frame_index] is not None]  # fmt: skip
    hands = [(boxes[frame_index], 1) for key, boxes in annotation["actor"].items()
             if key.startswith("boxes") and boxes[frame_index] is not None]  # fmt: skip
    for (x1, y1, x2, y2), label in sorted(objs, key=lambda b: b[0][3]) + hands:
        labels[(xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)] = label
    return labels


# ------------------------------------------------------------------------------------------------ preview


def read_frames(path: str | Path, times: list[float]) -> list[np.ndarray]:
    """RGB frames at the given times (the first frame at or after each time), seeking to keyframes."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for t in times:
            container.seek(int(max(t - 1.0, 0.0) / stream.time_base), stream=stream, backward=True)
            frame = None
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= t - 1e-3:
                    break
            frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def describe_query(q: dict) -> str:
    """One line of text for a query and its answer."""
    span = f"[{q['start']:.0f} s, {q['end']:.0f} s]"
    if q["type"] == "activity":
        acts = ", ".join(q["answer"]["activities"])
        return f"activity query ({q['window']}) {span}: what is done to {q['object']}? -> {acts}"
    ans = f"{q['answer']['start']:.0f}-{q['answer']['end']:.0f} s"
    if q["type"] == "object":
        what = f"which object is '{q['activity']}' done to?"
        return f"object query ({q['window']}) {span}: {what} -> {q['object']}, {ans}"
    return f"time query ({q['window']}) {span}: when is '{q['activity']}' done to {q['object']}? -> {ans}"


def render_preview(
    root: str | Path, video_id: str, times: list[float], out_png: str | Path, query_id=None
) -> Path:
    """Save a picture of the frames at `times` with every box drawn and labelled, the crop of one query of the
    video (`query_id`, default: its first time query) and that query in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    root = Path(root)
    bench, ann = load_benchmark(root), load_annotations(root, video_id)
    queries = [q for q in bench["queries"] if q["video"] == video_id]
    pick = (
        [q for q in queries if q["id"] == query_id] or [q for q in queries if q["type"] == "time"] or queries
    )
    query = pick[0] if pick else None
    frames = read_frames(root / bench["videos"][video_id]["file"], times)
    crop = query.get("crop") if query else None
    n = len(frames) + (crop is not None)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.1), squeeze=False)
    colours = plt.get_cmap("tab10")
    cats = sorted({o["category"] for o in ann["objects"].values()})
    for ax, t, img in zip(axes[0], times, frames):
        f = min(int(round(t * ann["fps"])), len(ann["actor"]["boxes"]) - 1)
        h, w = img.shape[:2]
        ax.imshow(img)
        items = [(oid, o["boxes"][f], colours(cats.index(o["category"]) % 10), f"{oid[4:]} {o['category']}")
                 for oid, o in ann["objects"].items()]  # fmt: skip
        items += [("hand", b[f], "orange", "hand") for k, b in ann["actor"].items() if k.startswith("boxes")]
        for _, box, col, label in items:
            if box is None:
                continue
            x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=col, lw=1.2))
            ax.text(
                x1,
                y1 - 1,
                label,
                color="white",
                fontsize=5,
                va="bottom",
                bbox=dict(fc=col, ec="none", pad=0.5),
            )
        doing = [f"{s['activity']} {s['object'][4:]}" for s in ann["segments"] if s["start"] <= t < s["end"]]
        ax.set_title(f"t = {t:.1f} s\n{', '.join(doing) or 'idle'}", fontsize=7)
        ax.axis("off")
    if crop is not None:
        ax = axes[0][-1]
        ax.imshow(np.asarray(Image.open(root / crop).convert("RGB")))
        ax.set_title(f"query crop\n{query['object']}", fontsize=7)
        ax.axis("off")
    fig.suptitle(describe_query(query) if query else video_id, fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
