"""ReST queries as plain data: validation, batching into model inputs, and decoding outputs into answers.

Letters: b batch, l time queries.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from longvmnet.model.box_ops import cxcywh_to_xyxy
from longvmnet.model.runs import best_run


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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(eq=False)
class ObjectAnswer:
    """A box per sampled frame, as arrays (lists are converted): a 30-minute range holds 9000 frames at 5 fps,
    and making Python lists of their boxes took longer than the decoder's reading of the memory. `to_dict`
    gives plain lists (JSON)."""

    times: np.ndarray  # (n,) seconds of every sampled frame in the range (object fps)
    boxes: np.ndarray  # (n, 4) normalised xyxy per sampled frame
    presence: np.ndarray  # (n,) probability that the frame shows the activity's object
    run: tuple[int, int] | None = None  # the frames chosen (first, last index) when a reader ranked the runs
    kind: str = "object"

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.presence = np.asarray(self.presence, dtype=np.float32)

    def to_dict(self) -> dict:
        return {"times": self.times.tolist(), "boxes": self.boxes.tolist(), "presence": self.presence.tolist(),
                "run": None if self.run is None else list(self.run), "kind": self.kind}  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectAnswer):
            return NotImplemented
        return self.run == other.run and all(
            np.array_equal(getattr(self, k), getattr(other, k)) for k in ("times", "boxes", "presence")
        )

    def present(self) -> list[int]:
        """Indices of the frames predicted to show the object: the activity is one segment, so one run of
        consecutive frames: `run` when set (`inference.rerank`), else the run with the largest sum of presence
        logits (`best_run`; at least the likeliest)."""
        if self.run is not None:
            return list(range(self.run[0], self.run[1] + 1))
        if not len(self.presence):
            return []
        p = torch.tensor(self.presence, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        i, j = best_run(p.logit())
        return list(range(i, j + 1))


@dataclass
class TimeAnswer:
    start: float  # seconds
    end: float
    score: float  # probability of the chosen (start, end) pair
    times: list[float]  # the time query grid
    start_scores: list[float]  # per-time probability of being the start
    end_scores: list[float]
    inside_scores: list[float] = field(default_factory=list)  # per-time probability of lying in the answer
    kind: str = "time"

    def to_dict(self) -> dict:
        return asdict(self)


Answer = ActivityAnswer | ObjectAnswer | TimeAnswer


def query_times(start: float, end: float, fps: float) -> torch.Tensor:
    """Seconds of the decoder's time queries: the multiples of 1/fps from start to end (the video's frames at
    that rate, as annotations and scores index them), or start alone when none falls in between. -> (l,)"""
    first, last = math.ceil(start * fps - 1e-6), math.floor(end * fps + 1e-6)
    if last < first:
        return torch.tensor([float(start)])
    return torch.arange(first, last + 1, dtype=torch.float64).div(fps).float()


def _seconds(x: float) -> str:
    """A time for a message: one decimal, or three significant digits when huge (1e308 reads 1e+308)."""
    return f"{x:.1f}" if abs(x) < 1e7 else f"{x:.3g}"


def validate(query: Query, *, duration_s: float, activities: list[str]) -> None:
    """Raise QueryError with a clear sentence when a query cannot be answered."""
    for name in ("start", "end"):
        if not math.isfinite(getattr(query, name)):
            raise QueryError(f"The {name} time must be a number of seconds.")
    if query.start < 0 or query.end > duration_s + 1.0:
        raise QueryError(
            f"The range {_seconds(query.start)}-{_seconds(query.end)} s is outside the video, which lasts {duration_s:.1f} s; "
            f"choose a range between 0 and {duration_s:.1f} s."
        )
    if query.end <= query.start:
        raise QueryError(
            f"The range must end after it starts (got {_seconds(query.start)}-{_seconds(query.end)} s)."
        )
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
    return collate_ranges([(q.start, q.end) for q in queries], fps, max_len)


def collate_ranges(
    ranges: list[tuple[float, float]], fps: float, max_len: int = 0
) -> dict[str, torch.Tensor]:
    """`collate` for (start, end) ranges in seconds."""
    grids = [time_grid(start, end, fps, max_len) for start, end in ranges]
    length = max(len(g) for g in grids)
    times = torch.zeros(len(grids), length)
    mask = torch.zeros(len(grids), length, dtype=torch.bool)
    for i, g in enumerate(grids):
        times[i, : len(g)] = g
        times[i, len(g) :] = g[-1]
        mask[i, : len(g)] = True
    return {"times": times, "mask": mask}


def decode(kind: str, out: dict[str, torch.Tensor], times: torch.Tensor, mask: torch.Tensor,
           activities: list[str], fps: float,
           runs: list[tuple[int, int] | None] | None = None) -> list[Answer]:  # fmt: skip
    """Model outputs of a batch (see model/network.py) -> one plain answer per query. `runs`: per query the
    run of time queries chosen for an object or time answer (`inference.rerank`; None: the best run)."""
    answers: list[Answer] = []
    for i in range(times.shape[0]):
        n = int(mask[i].sum())
        if kind == "activity":
            probs = out["activity_logits"][i].sigmoid().tolist()
            ranked = sorted(zip(activities, probs), key=lambda x: -x[1])
            answers.append(ActivityAnswer([(a, float(p)) for a, p in ranked]))
        elif kind == "object":
            boxes = cxcywh_to_xyxy(out["boxes"][i, :n]).clamp(0, 1).numpy()
            presence = out["presence_logits"][i, :n].sigmoid().numpy()
            answers.append(ObjectAnswer(times[i, :n].numpy(), boxes, presence, runs[i] if runs else None))
        else:
            t = times[i, :n].tolist()
            s = out["start_logits"][i, :n].log_softmax(-1)
            e = out["end_logits"][i, :n].log_softmax(-1)
            inside = out["inside_logits"][i, :n]
            a, b = runs[i] if runs and runs[i] else best_run(inside)
            p = float(inside[a : b + 1].sigmoid().mean())
            answers.append(TimeAnswer(t[a], t[b] + 1.0 / fps, p, t, s.exp().tolist(), e.exp().tolist(),
                                      inside.sigmoid().tolist()))  # fmt: skip
    return answers
