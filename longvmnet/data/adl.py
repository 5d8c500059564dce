"""ADL (Activities of Daily Living, Pirsiavash & Ramanan, CVPR 2012) -> a ReST-style benchmark on disk.

Reads the dataset's annotation files in their published format and writes the docs/CONTRACTS.md layout, so
the synthetic and the real benchmark are read by the same code:

- `object_annotation/object_annot_P_XX.txt`: rows `track_id x1 y1 x2 y2 frame active label`, boxes in pixels
  of a `frame_size` frame (640 x 480 for ADL, whose videos are 1280 x 960), frame numbers at `src_fps` (30).
- `action_annotation/P_XX.txt`: rows `start end label`; times `mm:ss` (also `h:mm:ss` or seconds), label an
  action id (named through `action_names` or an `action_list.txt` next to the folders) or a name.

No official ReST query file is public: queries come from (activity, active object, time) triples. An action
segment is linked to every object track flagged `active` during it. Object boxes (annotated about once a
second in ADL) are linearly interpolated to 5 fps between samples at most `max_gap` seconds apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from longvmnet.data.benchmark import VERSION, WINDOWS, Mp4Writer, assign_splits, make_queries, write_json

FPS = 5  # annotation and output video rate
SIZE = 224  # output video side
VIDEO_SUFFIXES = (".mp4", ".MP4", ".avi", ".AVI", ".mkv", ".mov", ".webm", ".mpg", ".MPG")


@dataclass(frozen=True)
class ObjectRow:
    track: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in annotation pixels
    frame: int
    active: bool
    label: str


def parse_time(text: str) -> float:
    """Seconds from `mm:ss`, `h:mm:ss`, `ss` or `ss.s`."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"\d+(\.\d+)?", p) for p in parts):
        raise ValueError(f"not a time: {text!r}")
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + float(p)
    return seconds


def read_object_annotations(path: str | Path) -> list[ObjectRow]:
    """Rows of an `object_annot_P_XX.txt` file; blank or malformed lines are skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        tok = line.split()
        if len(tok) < 8:
            continue
        try:
            track, x1, y1, x2, y2, frame, active = (int(float(t)) for t in tok[:7])
        except ValueError:
            continue
        rows.append(ObjectRow(track, (x1, y1, x2, y2), frame, active != 0, " ".join(tok[7:])))
    return rows


def load_action_names(path: str | Path) -> dict[str, str]:
    """An action list file, one action a line: `id name`, `id 'name'` or just `name` (ids from 1)."""
    names = {}
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    for i, line in enumerate(lines, start=1):
        m = re.fullmatch(r"(\d+)[\s:,.]+(.+)", line)
        key, name = (m.group(1), m.group(2)) if m else (str(i), line)
        names[str(int(key))] = name.strip().strip("'\"").strip()
    return names


def read_action_annotations(path: str | Path, names: dict | None = None) -> list[tuple[float, float, str]]:
    """(start, end, activity name) of a `P_XX.txt` action file; ids are named by `names` (id -> name) or
    `action_<id>`. An end before its start is swapped; a zero-length action lasts one second."""
    names = {str(k): v for k, v in (names or {}).items()}
    out = []
    for line in Path(path).read_text().splitlines():
        tok = line.split()
        if len(tok) < 3:
            continue
        try:
            start, end = parse_time(tok[0]), parse_time(tok[1])
        except ValueError:
            continue
        label = " ".join(tok[2:]).strip("'\"")
        if re.fullmatch(r"\d+", label):
            label = names.get(str(int(label)), f"action_{int(label)}")
        start, end = min(start, end), max(start, end)
        out.append((start, max(end, start + 1.0), label))
    return out


def _interpolate(samples: list[tuple[float, tuple]], n: int, max_gap: float, size: tuple[int, int]) -> list:
    """Normalised boxes at 5 fps from (time, pixel box) samples of one track; None away from samples."""
    w, h = size
    times = np.array([t for t, _ in samples])
    boxes = np.array([b for _, b in samples], np.float64) / np.array([w, h, w, h])
    out: list = [None] * n
    for f in range(max(0, math.ceil(times[0] * FPS - 1e-6)), min(n, math.floor(times[-1] * FPS + 1e-6) + 1)):
        t = f / FPS
        j = int(np.searchsorted(times, t, side="right"))
        i = j - 1
        if abs(times[i] - t) < 1e-6:
            box = boxes[i]
        elif j < len(times) and times[j] - times[i] <= max_gap:
            a = (t - times[i]) / (times[j] - times[i])
            box = boxes[i] * (1 - a) + boxes[j] * a
        else:
            continue
        box = np.clip(box, 0.0, 1.0)
        if box[2] > box[0] and box[3] > box[1]:
            out[f] = [round(float(v), 4) for v in box]
    return out


def video_annotation(
    video_id: str,
    objects: list[ObjectRow],
    actions: list[tuple[float, float, str]],
    *,
    duration: float,
    src_fps: float = 30.0,
    frame_size: tuple[int, int] = (640, 480),
    max_gap: float = 1.5,
    crops_per_object: int = 3,
) -> tuple[dict, int]:
    """The annotation dict of one video (crops with "file" still None) and the number of actions dropped
    because no object was active during them."""
    n = int(math.floor(duration * FPS + 1e-6))
    tracks: dict[int, list[ObjectRow]] = {}
    for row in sorted(objects, key=lambda r: (r.track, r.frame)):
        tracks.setdefault(row.track, []).append(row)
    oid = {k: f"obj_{k:03d}" for k in tracks}
    objs = {}
    for k, rows in tracks.items():
        samples = [(r.frame / src_fps, r.box) for r in rows]
        label = max({r.label for r in rows}, key=[r.label for r in rows].count)
        objs[oid[k]] = {
            "category": label,
            "appearance": label,
            "boxes": _interpolate(samples, n, max_gap, frame_size),
        }
    segments, dropped = [], 0
    for start, end, name in sorted(actions):
        if start >= duration:
            continue
        end = min(end, duration)
        active = sorted({r.track for r in objects if r.active and start <= r.frame / src_fps <= end})
        dropped += not active
        segments += [{"activity": name, "object": oid[k], "start": start, "end": end} for k in active]
    crops = {}
    for k, rows in tracks.items():
        segs = [s for s in segments if s["object"] == oid[k]]
        idle = [
            r
            for r in rows
            if not r.active and not any(s["start"] <= r.frame / src_fps <= s["end"] for s in segs)
        ]
        idle = [
            r for r in idle if r.frame / src_fps < duration and r.box[2] > r.box[0] and r.box[3] > r.box[1]
        ]
        picks = [
            part[len(part) // 2]
            for part in np.array_split(np.arange(len(idle)), crops_per_object)
            if len(part)
        ]
        w, h = frame_size
        scale = np.array([w, h, w, h], np.float64)
        crops[oid[k]] = [
            {
                "file": None,
                "time": round(idle[i].frame / src_fps, 3),
                "box": np.round(idle[i].box / scale, 4).tolist(),
            }
            for i in picks
        ]
        if not crops[oid[k]]:
            del crops[oid[k]]
    actor = {"boxes": [None] * n}  # ADL has no hand boxes
    ann = {"video": video_id, "duration": duration, "fps": FPS, "objects": objs, "actor": actor,
           "segments": segments, "crops": crops}  # fmt: skip
    return ann, dropped


def find_video(video_dir: str | Path | None, video_id: str) -> Path | None:
    if video_dir is None:
        return None
    for suffix in VIDEO_SUFFIXES:
        path = Path(video_dir) / f"{video_id}{suffix}"
        if path.is_file():
            return path
    return None


def video_duration(path: Path) -> float:
    with av.open(str(path)) as container:
        if container.duration:
            return container.duration / 1e6
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)


def transcode(
    src: Path, dst: Path, ann: dict, root: Path, *, frames: int, margin: float = 0.25, progress=True
):
    """Write `dst` (224 x 224, 5 fps, a keyframe a second) from `src` and cut every crop of `ann` from the
    source frames at full resolution (crop "file" entries are filled in)."""
    requests = sorted((c["time"], oid, k, c) for oid, cs in ann["crops"].items() for k, c in enumerate(cs))
    crop_dir = root / "crops" / ann["video"]
    crop_dir.mkdir(parents=True, exist_ok=True)
    k, r = 0, 0
    last = None
    with av.open(str(src)) as container, Mp4Writer(dst, fps=FPS, size=SIZE) as writer:
        stream = container.streams.video[0]
        half = 0.5 / float(stream.average_rate or 30)
        bar = tqdm(total=frames, desc=ann["video"], unit="frame", leave=False, disable=not progress)
        for frame in container.decode(stream):
            t = frame.time or 0.0
            while k < frames and k / FPS <= t + half:
                last = frame.reformat(width=SIZE, height=SIZE, format="rgb24").to_ndarray()
                writer.write(last)
                k += 1
                bar.update()
            while r < len(requests) and requests[r][0] <= t + half:
                _, oid, i, crop = requests[r]
                img = frame.to_ndarray(format="rgb24")
                h, w = img.shape[:2]
                x1, y1, x2, y2 = (
                    crop["box"][0] * w,
                    crop["box"][1] * h,
                    crop["box"][2] * w,
                    crop["box"][3] * h,
                )
                mx, my = margin * (x2 - x1), margin * (y2 - y1)
                x1, y1 = int(max(x1 - mx, 0)), int(max(y1 - my, 0))
                x2, y2 = int(min(math.ceil(x2 + mx), w)), int(min(math.ceil(y2 + my), h))
                Image.fromarray(img[y1:y2, x1:x2]).save(crop_dir / f"{oid}_{i}.png")
                crop["file"] = f"crops/{ann['video']}/{oid}_{i}.png"
                r += 1
            if k >= frames and r >= len(requests):
                break
        while k < frames and last is not None:  # the stream ended early: hold the last frame
            writer.write(last)
            k += 1
        bar.close()


def adl_to_benchmark(
    adl_root: str | Path,
    video_dir: str | Path | None,
    out_dir: str | Path,
    *,
    videos: list[str] | None = None,
    action_names: dict | str | Path | None = None,
    src_fps: float = 30.0,
    frame_size: tuple[int, int] = (640, 480),
    max_gap: float = 1.5,
    seed: int = 0,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    queries_per_minute: float = 5.0,
    windows: dict[str, float] = WINDOWS,
    progress: bool = True,
) -> Path:
    """Convert ADL annotations (and videos from `video_dir`, if present) into `out_dir`; return it.

    `videos`: ids such as "P_01" (default: every object_annot_P_XX.txt with an action file). With a video,
    it is transcoded to OUT/videos/<id>.mp4 and crops are cut from it; without one, "file" entries are
    None (crops keep their time and box) and the duration comes from the annotations.
    """
    adl_root, root = Path(adl_root), Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    if action_names is None and (adl_root / "action_list.txt").is_file():
        action_names = adl_root / "action_list.txt"
    if isinstance(action_names, str | Path):
        action_names = load_action_names(action_names)
    if videos is None:
        found = sorted(
            p.stem.removeprefix("object_annot_")
            for p in (adl_root / "object_annotation").glob("object_annot_*.txt")
        )
        videos = [v for v in found if (adl_root / "action_annotation" / f"{v}.txt").is_file()]
    splits = assign_splits(videos, split, np.random.default_rng([seed, 1 << 20]))
    entries, queries, anns = {}, [], {}
    for vid in tqdm(videos, desc="videos", unit="video", disable=not progress):
        objects = read_object_annotations(adl_root / "object_annotation" / f"object_annot_{vid}.txt")
        actions = read_action_annotations(adl_root / "action_annotation" / f"{vid}.txt", action_names)
        src = find_video(video_dir, vid)
        if src is not None:
            duration = round(video_duration(src), 3)
        else:
            last = max([e for _, e, _ in actions] + [r.frame / src_fps for r in objects] + [1.0])
            duration = float(math.ceil(last) + 1)
        ann, _ = video_annotation(vid, objects, actions, duration=duration, src_fps=src_fps,
                                  frame_size=frame_size, max_gap=max_gap)  # fmt: skip
        if src is not None:
            transcode(
                src,
                root / "videos" / f"{vid}.mp4",
                ann,
                root,
                frames=len(ann["actor"]["boxes"]),
                progress=progress,
            )
        anns[vid] = ann
        entries[vid] = {
            "file": f"videos/{vid}.mp4" if src is not None else None,
            "annotations": f"annotations/{vid}.json",
            "duration": duration,
            "split": splits[vid],
        }
    known = [str(v) for v in (action_names or {}).values()]
    seen = {s["activity"] for ann in anns.values() for s in ann["segments"]}
    activities = [a for a in dict.fromkeys(known) if a in seen] + sorted(seen - set(known))
    per_window = lambda d: max(1, round(queries_per_minute * d / 60 / (3 * len(windows))))
    for i, (vid, ann) in enumerate(anns.items()):
        write_json(root / "annotations" / f"{vid}.json", ann, compact=True)
        queries += make_queries(ann, activities=activities, rng=np.random.default_rng([seed, i, 2]),
                                per_window=per_window(ann["duration"]), windows=windows)  # fmt: skip
    categories = sorted({o["category"] for ann in anns.values() for o in ann["objects"].values()})
    bench = {"version": VERSION, "seed": seed, "fps": FPS, "width": SIZE, "height": SIZE, "source": "ADL"}
    bench |= {"activities": activities, "categories": categories, "videos": entries, "queries": queries}
    write_json(root / "benchmark.json", bench)
    return root
