"""ReST queries of a benchmark (synthetic or converted ADL) as training/evaluation items, their targets,
and the batch sampler that never puts two queries of one video in a batch."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from longvmnet.queries import time_grid

SPLITS = ("train", "val", "test")


@dataclass
class VideoItem:
    id: str
    path: Path  # the video file
    duration: float
    split: str
    annotations: dict
    queries: list[dict] = field(default_factory=list)


class ReSTData:
    """A benchmark folder in the layout of docs/CONTRACTS.md."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index = self.root / "benchmark.json"
        if not index.is_file():
            raise FileNotFoundError(
                f"{index} does not exist; generate a benchmark with `longvmnet generate`."
            )
        bench = json.loads(index.read_text())
        self.activities: list[str] = bench["activities"]
        self.videos: dict[str, VideoItem] = {}
        for vid, v in bench["videos"].items():
            ann = json.loads((self.root / v["annotations"]).read_text())
            self.videos[vid] = VideoItem(vid, self.root / v["file"], float(v["duration"]), v["split"], ann)
        for q in bench["queries"]:
            self.videos[q["video"]].queries.append(q)

    def split(self, name: str) -> list[VideoItem]:
        if name == "all":
            return list(self.videos.values())
        if name not in SPLITS:
            raise ValueError(f"Unknown split {name!r}; use train, val, test or all.")
        return [v for v in self.videos.values() if v.split == name]

    def path(self, rel: str) -> Path:
        return self.root / rel


def query_grid(q: dict, config, *, start: float | None = None, end: float | None = None) -> torch.Tensor:
    """The decoder's time queries for a ReST query (optionally over a sub-range). -> (l,)"""
    kind = q["type"]
    fps = config.object_fps if kind == "object" else config.query_fps
    max_len = config.activity_max_queries if kind == "activity" else 0
    return time_grid(q["start"] if start is None else start, q["end"] if end is None else end, fps, max_len)


def multi_hot(labels, activities: list[str]) -> torch.Tensor:
    """Activity names -> (c,) with 1 at each one's index in `activities`."""
    y = torch.zeros(len(activities))
    y[[activities.index(a) for a in labels]] = 1.0
    return y


def targets(q: dict, grid: torch.Tensor, activities: list[str], fps: float) -> dict[str, torch.Tensor]:
    """Training targets of one query on its time grid (see model/losses.py for the keys)."""
    kind = q["type"]
    ans = q["answer"]
    if kind == "activity":
        return {"activity": multi_hot(ans["activities"], activities)}
    if kind == "object":
        boxes = torch.zeros(len(grid), 4)
        box_mask = torch.zeros(len(grid), dtype=torch.bool)
        for i, t in enumerate(grid.tolist()):
            b = ans["boxes"].get(f"{t:.1f}")
            if b is not None:
                boxes[i] = torch.tensor(b)
                box_mask[i] = True
        return {"boxes": boxes, "box_mask": box_mask}
    inside = (grid >= ans["start"] - 1e-6) & (grid < ans["end"])
    start = int((grid - ans["start"]).abs().argmin())
    end = int((grid + 1.0 / fps - ans["end"]).abs().argmin())
    return {
        "start_idx": torch.tensor(start),
        "end_idx": torch.tensor(max(start, end)),
        "inside": inside.float(),
    }


def gt_span(q: dict) -> tuple[float, float]:
    """Where the answer lies in time (for activity queries: the window itself)."""
    ans = q["answer"]
    if "start" in ans:
        return float(ans["start"]), float(ans["end"])
    return float(q["start"]), float(q["end"])


def video_batches(
    videos: list[VideoItem], batch_size: int, rng: random.Random
) -> Iterator[list[tuple[VideoItem, dict]]]:
    """One epoch of batches, each with at most one query per video (the paper's race-free memory update).

    Every video's queries come in a shuffled order; videos with more queries left are drawn first.
    """
    queues = {v.id: rng.sample(v.queries, len(v.queries)) for v in videos if v.queries}
    by_id = {v.id: v for v in videos}
    while queues:
        ids = sorted(queues, key=lambda i: (-len(queues[i]), rng.random()))[:batch_size]
        yield [(by_id[i], queues[i].pop()) for i in ids]
        for i in ids:
            if not queues[i]:
                del queues[i]


def frames_in(times: np.ndarray, start: float, end: float) -> tuple[int, int]:
    """Index range [a, b) of the cached frames whose times fall in [start, end]."""
    a = int(np.searchsorted(times, start - 1e-3, side="left"))
    b = int(np.searchsorted(times, end + 1e-3, side="right"))
    return a, max(a + 1, b)


def _patch_centres(grid: int) -> tuple[np.ndarray, np.ndarray]:
    centres = (np.arange(grid) + 0.5) / grid
    xs, ys = np.meshgrid(centres, centres)
    return xs.reshape(-1), ys.reshape(-1)  # row-major, as the backbone's tokens


def _on_boxes(box_lists: list, f: int, xs: np.ndarray, ys: np.ndarray, pad: float) -> np.ndarray:
    """Which patch centres lie inside any of the boxes (grown by `pad`) at annotation frame f."""
    hit = np.zeros(len(xs), dtype=bool)
    for boxes in box_lists:
        box = boxes[f] if f < len(boxes) else None
        if box is not None:
            x1, y1, x2, y2 = box
            hit |= (xs >= x1 - pad) & (xs < x2 + pad) & (ys >= y1 - pad) & (ys < y2 + pad)
    return hit


def _hand_boxes(annotation: dict) -> list:
    return [boxes for key, boxes in annotation.get("actor", {}).items() if key.startswith("boxes")]


def patch_activities(annotation: dict, times: np.ndarray, grid: int, activities: list[str]) -> np.ndarray:
    """The activity each backbone token shows: (frames, grid * grid) int64 for frames at `times` (seconds),
    0 for none, else 1 + the index in `activities` of a segment under way at that frame whose object box or
    a hand box (boxes grown by half a patch) holds the token's patch centre (a later segment wins)."""
    fps, objects, hands = annotation["fps"], annotation["objects"], _hand_boxes(annotation)
    xs, ys = _patch_centres(grid)
    out = np.zeros((len(times), grid * grid), dtype=np.int64)
    for seg in annotation["segments"]:
        label = 1 + activities.index(seg["activity"])
        for i in np.flatnonzero((times >= seg["start"]) & (times <= seg["end"])):
            f = int(round(times[i] * fps))
            out[i][_on_boxes([objects[seg["object"]]["boxes"], *hands], f, xs, ys, 0.5 / grid)] = label
    return out


def token_relevance(annotation: dict, times: np.ndarray, grid: int) -> np.ndarray:
    """Which backbone tokens show an activity (`patch_activities` > 0): (frames, grid * grid) bool.
    The sampler's auxiliary target."""
    names = sorted({seg["activity"] for seg in annotation["segments"]})
    return patch_activities(annotation, times, grid, names) > 0


def answer_spans(annotation: dict, q: dict) -> list[tuple[float, float]]:
    """When a query's answer happens, in seconds: a time or object query's answer span; an activity query's
    crop object acting anywhere in the window (its segments, clipped to the window)."""
    ans = q["answer"]
    if "start" in ans:
        return [(ans["start"], ans["end"])]
    return [(max(s["start"], q["start"]), min(s["end"], q["end"])) for s in annotation["segments"]
            if s["object"] == q["object"] and s["end"] > q["start"] and s["start"] < q["end"]]  # fmt: skip


def in_spans(times: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    """(n,) bool: which of `times` (seconds) lie in one of the (start, end) spans, ends included."""
    times = np.asarray(times)
    inside = np.zeros(len(times), dtype=bool)
    for a, b in spans:
        inside |= (times >= a) & (times <= b)
    return inside


def query_token_targets(
    annotation: dict, q: dict, times: np.ndarray, pos: np.ndarray, grid: int
) -> np.ndarray:
    """Which memory tokens answer a query: (n,) bool for tokens at `times` (seconds) and patch indices `pos`.
    A token counts when its time lies in the answer (`answer_spans`) and its patch shows the query's object or
    the hand (boxes grown by half a patch). The pointer's target."""
    fps = annotation["fps"]
    boxes = [annotation["objects"][q["object"]]["boxes"], *_hand_boxes(annotation)]
    xs, ys = _patch_centres(grid)
    out = np.zeros(len(times), dtype=bool)
    for i in np.flatnonzero(in_spans(times, answer_spans(annotation, q))):
        out[i] = _on_boxes(boxes, int(round(times[i] * fps)), xs[pos[i] : pos[i] + 1], ys[pos[i] : pos[i] + 1],
                           0.5 / grid)[0]  # fmt: skip
    return out
