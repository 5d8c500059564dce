"""ReST queries as plain data: validation, batching into model inputs, and decoding outputs into answers.

Letters: b batch, l time queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from longvmnet.box_ops import cxcywh_to_xyxy


class QueryError(ValueError):
    """A query the model cannot answer; str() is one sentence for the user."""


@dataclass(frozen=True)
class ActivityQuery:
    crop: np.ndarray  # (h, w, 3) uint8 RGB image of the object instance
    start: float  # seconds
    end: float
    kind: str = field(default="activity", init=False)


@dataclass(frozen=True)
class ObjectQuery:
    activity: str
    start: float
    end: float
    kind: str = field(default="object", init=False)


@dataclass(frozen=True)
class TimeQuery:
    activity: str
    crop: np.ndarray
    start: float
    end: float
    kind: str = field(default="time", init=False)


Query = ActivityQuery | ObjectQuery | TimeQuery


@dataclass
class ActivityAnswer:
    activities: list[tuple[str, float]]  # (class, probability), best first
    kind: str = "activity"


@dataclass
class ObjectAnswer:
    times: list[float]  # seconds of every sampled frame in the range (object fps)
    boxes: list[list[float]]  # normalised xyxy per sampled frame
    presence: list[float]  # probability that the frame shows the activity's object
    kind: str = "object"

    def present(self, threshold: float = 0.5) -> list[int]:
        """Indices of the frames predicted to show the object (at least the most likely one)."""
        idx = [i for i, p in enumerate(self.presence) if p >= threshold]
        return idx or ([int(np.argmax(self.presence))] if self.presence else [])


@dataclass
class TimeAnswer:
    start: float  # seconds
    end: float
    score: float  # probability of the chosen (start, end) pair
    times: list[float]  # the time query grid
    start_scores: list[float]  # per-time probability of being the start
    end_scores: list[float]
    kind: str = "time"


Answer = ActivityAnswer | ObjectAnswer | TimeAnswer


def query_times(start: float, end: float, fps: float) -> torch.Tensor:
    """Seconds of the decoder's time queries: start, start + 1/fps, ... up to end. -> (l,)"""
    n = max(1, int(math.floor((end - start) * fps + 1e-6)) + 1)
    return start + torch.arange(n, dtype=torch.float32) / fps


def validate(query: Query, *, duration_s: float, activities: list[str]) -> None:
    """Raise QueryError with a clear sentence when a query cannot be answered."""
    for name in ("start", "end"):
        if not math.isfinite(getattr(query, name)):
            raise QueryError(f"The {name} time must be a number of seconds.")
    if query.start < 0 or query.end > duration_s + 1.0:
        raise QueryError(
            f"The range {query.start:.1f}-{query.end:.1f} s is outside the video, which lasts {duration_s:.1f} s; "
            f"choose a range between 0 and {duration_s:.1f} s."
        )
    if query.end <= query.start:
        raise QueryError(f"The range must end after it starts (got {query.start:.1f}-{query.end:.1f} s).")
    if hasattr(query, "activity") and query.activity not in activities:
        raise QueryError(f"Unknown activity {query.activity!r}; choose one of: {', '.join(activities)}.")
    if hasattr(query, "crop"):
        crop = query.crop
        if crop is None or not isinstance(crop, np.ndarray) or crop.ndim != 3 or crop.shape[2] != 3:
            raise QueryError("The object crop must be an RGB image; upload one or draw a box on a frame.")
        if crop.shape[0] < 2 or crop.shape[1] < 2:
            raise QueryError("The object crop is empty; draw a larger box around the object.")


def time_grid(start: float, end: float, fps: float, max_len: int = 0) -> torch.Tensor:
    """The decoder's time queries for a range: every 1/fps seconds, or `max_len` evenly spaced ones. -> (l,)"""
    grid = query_times(start, end, fps)
    if max_len and len(grid) > max_len:
        grid = torch.linspace(float(grid[0]), float(grid[-1]), max_len)
    return grid


def collate(queries: list[Query], fps: float, max_len: int = 0) -> dict[str, torch.Tensor]:
    """Padded decoder time queries: times (b, l), mask (b, l) True = real."""
    grids = [time_grid(q.start, q.end, fps, max_len) for q in queries]
    length = max(len(g) for g in grids)
    times = torch.zeros(len(grids), length)
    mask = torch.zeros(len(grids), length, dtype=torch.bool)
    for i, g in enumerate(grids):
        times[i, : len(g)] = g
        times[i, len(g) :] = g[-1]
        mask[i, : len(g)] = True
    return {"times": times, "mask": mask}


def best_span(start_logp: torch.Tensor, end_logp: torch.Tensor) -> tuple[int, int, float]:
    """Most likely (i, j) with j >= i under independent start/end distributions. (l,), (l,) -> i, j, prob"""
    pair = start_logp[:, None] + end_logp[None, :]
    pair = pair.masked_fill(torch.ones_like(pair, dtype=torch.bool).tril(-1), float("-inf"))
    flat = int(pair.argmax())
    i, j = divmod(flat, pair.shape[1])
    return i, j, float(pair[i, j].exp())


def decode(kind: str, out: dict[str, torch.Tensor], times: torch.Tensor, mask: torch.Tensor,
           activities: list[str], fps: float) -> list[Answer]:  # fmt: skip
    """Model outputs of a batch (see model.py) -> one plain answer per query."""
    answers: list[Answer] = []
    for i in range(times.shape[0]):
        n = int(mask[i].sum())
        t = times[i, :n].tolist()
        if kind == "activity":
            probs = out["activity_logits"][i].sigmoid().tolist()
            ranked = sorted(zip(activities, probs), key=lambda x: -x[1])
            answers.append(ActivityAnswer([(a, float(p)) for a, p in ranked]))
        elif kind == "object":
            boxes = cxcywh_to_xyxy(out["boxes"][i, :n]).clamp(0, 1).tolist()
            presence = out["presence_logits"][i, :n].sigmoid().tolist()
            answers.append(ObjectAnswer(t, boxes, presence))
        else:
            s = out["start_logits"][i, :n].log_softmax(-1)
            e = out["end_logits"][i, :n].log_softmax(-1)
            a, b, p = best_span(s, e)
            answers.append(TimeAnswer(t[a], t[b] + 1.0 / fps, p, t, s.exp().tolist(), e.exp().tolist()))
    return answers
