"""Evaluation in the paper's Table 2 layout: Recall@1x per query type x window, plus Recall@3x for activity.

Long-VMNet runs the two stages as the paper does: one memory per video (stage 1), then every query of that
video answered from it (stage 2); both are timed separately. The per-query baseline reads each query's own
window in non-overlapping T-frame clips and aggregates the logits. The blind method never looks at the video:
it answers from the query and the training split's answers alone, the floor every table is read against.
Every method also gets a per-activity-class table, so that classes seen only as motion stand apart.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from longvmnet.box_ops import paired_iou
from longvmnet.config import ModelConfig
from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData, VideoItem
from longvmnet.inference import answer, build_memory, crop_tokens, load_crop, scan, to_memory
from longvmnet.memory import MemoryMeta
from longvmnet.metrics import recall_at_kx, tiou, viou
from longvmnet.queries import (
    ActivityAnswer,
    ActivityQuery,
    Answer,
    ObjectAnswer,
    ObjectQuery,
    TimeAnswer,
    TimeQuery,
    collate,
    decode,
)

WINDOWS = ("short", "medium", "long")
TABLE_KEYS = ("activity", "object", "time", "activity_r3")
# Where object and time answers fall short of the table's thresholds (means, not shares):
#   object_box_iou     the predicted box's IoU on the frames that truly show the object (where, given when)
#   object_frames_iou  IoU of the frames predicted to show it with the true frames (when)
#   time_tiou          tIoU of the predicted span with the true one
DIAGNOSTIC_KEYS = ("object_box_iou", "object_frames_iou", "time_tiou")
PER_CLASS_KEYS = ("activity", "time")  # per-class table: R@1x per true class, tIoU>.3 per queried class


def to_query(q: dict, data: ReSTData):
    if q["type"] == "activity":
        return ActivityQuery(load_crop(data.path(q["crop"])), q["start"], q["end"])
    if q["type"] == "object":
        return ObjectQuery(q["activity"], q["start"], q["end"])
    return TimeQuery(q["activity"], load_crop(data.path(q["crop"])), q["start"], q["end"])


def true_boxes(ans: dict, object_fps: float) -> dict[int, list[float]]:
    """An object query's annotated boxes keyed by frame index at `object_fps`, as answers are scored."""
    return {round(float(t) * object_fps): b for t, b in ans["boxes"].items()}


def score(q: dict, a: Answer, activities: list[str], object_fps: float) -> dict[str, float]:
    """Per-query metric values (percent-ready shares) keyed like the table."""
    ans = q["answer"]
    if q["type"] == "activity":
        scores = dict(a.activities)
        s = [scores[name] for name in activities]
        true = [activities.index(x) for x in ans["activities"]]
        return {"activity": recall_at_kx(s, true, 1), "activity_r3": recall_at_kx(s, true, 3)}
    if q["type"] == "object":
        pred = {round(a.times[i] * object_fps): a.boxes[i] for i in a.present()}
        return {"object": float(viou(pred, true_boxes(ans, object_fps)) > 0.3)}
    return {"time": float(tiou((a.start, a.end), (ans["start"], ans["end"])) > 0.3)}


def diagnose(q: dict, a: Answer, object_fps: float) -> dict[str, float]:
    """Per-query values of DIAGNOSTIC_KEYS (none for activity queries)."""
    ans = q["answer"]
    if q["type"] == "object":
        true = true_boxes(ans, object_fps)
        every = {round(t * object_fps): b for t, b in zip(a.times, a.boxes)}
        present = {round(a.times[i] * object_fps) for i in a.present()}
        both = sorted(set(true) & set(every))
        box = (paired_iou(torch.tensor([every[f] for f in both], dtype=torch.float64),
                          torch.tensor([true[f] for f in both], dtype=torch.float64))[0].mean().item()
               if both else 0.0)  # fmt: skip
        frames = len(present & set(true)) / max(1, len(present | set(true)))
        return {"object_box_iou": box, "object_frames_iou": frames}
    if q["type"] == "time":
        return {"time_tiou": tiou((a.start, a.end), (ans["start"], ans["end"]))}
    return {}


class Blind:
    """Answers from the query alone, with what the training split's answers teach (the videos with queries
    when the training split has none): activity, the class frequencies of activity answers for the crop's
    object category when it occurs there, else overall; object, the mean answer box on every frame of the
    window; time, the median answer duration centred in the window."""

    def __init__(self, data: ReSTData, object_fps: float):
        self.activities, self.object_fps = data.activities, object_fps
        train = [v for v in data.split("train") if v.queries] or [v for v in data.split("all") if v.queries]
        self.overall, self.by_category = Counter(), defaultdict(Counter)
        boxes, spans = [], []
        for video in train:
            for q in video.queries:
                if q["type"] == "activity":
                    self.overall.update(q["answer"]["activities"])
                    self.by_category[self.category(video, q)].update(q["answer"]["activities"])
                elif q["type"] == "object":
                    boxes += list(q["answer"]["boxes"].values())
                else:
                    spans.append(q["answer"]["end"] - q["answer"]["start"])
        self.box = np.mean(boxes, 0).round(4).tolist() if boxes else [0.25, 0.25, 0.75, 0.75]
        self.duration = float(np.median(spans)) if spans else 30.0

    @staticmethod
    def category(video: VideoItem, q: dict) -> str | None:
        return video.annotations["objects"].get(q.get("object"), {}).get("category")

    def answer(self, video: VideoItem, q: dict) -> Answer:
        if q["type"] == "activity":
            counts = self.by_category.get(self.category(video, q)) or self.overall
            total = sum(counts.values()) + len(self.activities)
            ranked = sorted(self.activities, key=lambda a: -counts.get(a, 0))  # stable: ties in class order
            return ActivityAnswer([(a, (counts.get(a, 0) + 1) / total) for a in ranked])
        if q["type"] == "object":
            fps = self.object_fps
            first, last = math.ceil(q["start"] * fps - 1e-6), math.ceil(q["end"] * fps - 1e-6)
            times = [f / fps for f in range(first, last)]
            return ObjectAnswer(times, [self.box] * len(times), [1.0] * len(times))
        centre, half = (q["start"] + q["end"]) / 2, self.duration / 2
        return TimeAnswer(max(q["start"], centre - half), min(q["end"], centre + half), 1.0, [], [], [])


@torch.inference_mode()
def memory_from_cache(model, cache: FeatureCache, video: VideoItem):
    """Stage 1 on cached backbone tokens (same frames as the video path, without decoding and backbone)."""
    feats = cache.video(video.path)
    t_len = model.config.clip_len
    stream = (  # copies of the memory-mapped cache slices: torch refuses read-only arrays
        (torch.from_numpy(np.array(feats.times[s : s + t_len])),
         model.project(torch.from_numpy(np.array(feats.tokens[s : s + t_len]))))
        for s in range(0, len(feats.times), t_len)
    )  # fmt: skip
    memory, seen = scan(model, stream, video.duration)
    return to_memory(memory, MemoryMeta(video=video.path.name, duration_s=video.duration, frames_seen=seen,
                                        checkpoint=model.fingerprint()))  # fmt: skip


@torch.inference_mode()
def baseline_answer(model, q, clips: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Answer:
    """Per-query baseline on one query's window, given as clips of (times (t,), projected tokens (t, p, d)),
    t <= T, in time order: the encoder-decoder sees one clip at a time in place of the memory; logits are
    aggregated over the clips (activity: max; object: each clip answers its own frames; time: start/end
    logits concatenated). The same code path serves cached tokens (evaluation) and decoded video (bench)."""
    c = model.config
    kind = q.kind
    fps = c.object_fps if kind == "object" else c.query_fps
    grid = collate([q], fps, c.activity_max_queries if kind == "activity" else 0)
    qt = grid["times"][0]
    obj = act = None
    if kind in ("activity", "time"):
        obj = crop_tokens(model, [q.crop])
    if kind in ("object", "time"):
        act = torch.tensor([c.activities.index(q.activity)])
    pieces = defaultdict(list)
    for times, tok in clips:
        rows, cols = model.grid_positions(len(times))
        mem = {"tokens": tok.reshape(1, -1, c.d_model), "times": times.repeat_interleave(c.tokens_per_frame)[None],
               "rows": rows[None], "cols": cols[None]}  # fmt: skip
        lo, hi = float(times[0]), float(times[-1]) + 1.0 / c.memory_fps
        sel = (qt >= lo) & (qt < hi) if kind != "activity" else torch.ones_like(qt, dtype=torch.bool)
        if not sel.any():
            continue
        t = qt[sel][None]
        out = model(mem, kind, t, torch.ones_like(t, dtype=torch.bool), object_tokens=obj, activity=act)
        for key, v in out.items():
            pieces[key].append(v)
    if kind == "activity":
        out = {"activity_logits": torch.stack(pieces["activity_logits"]).amax(0)}
    else:
        out = {key: torch.cat(v, 1) for key, v in pieces.items()}
        qt = qt[: out[next(iter(out))].shape[1]]
    return decode(kind, out, qt[None], torch.ones(1, len(qt), dtype=torch.bool), c.activities, fps)[0]


@torch.inference_mode()
def baseline_answers(
    model, cache: FeatureCache, video: VideoItem, queries: list, batch: int = 64
) -> list[Answer]:
    """The per-query baseline (`baseline_answer`) on cached backbone tokens; clips are projected once."""
    c = model.config
    feats = cache.video(video.path)
    proj = {}

    def clips(first: int, last: int):
        for s in range(first, max(first + 1, last), c.clip_len):
            e = min(s + c.clip_len, len(feats.times))
            if s not in proj:
                proj[s] = model.project(torch.from_numpy(np.array(feats.tokens[s:e])))
            yield torch.from_numpy(feats.times[s:e]), proj[s]

    answers = []
    for q in queries:
        first = int(np.searchsorted(feats.times, q.start - 1e-3))
        last = int(np.searchsorted(feats.times, q.end + 1e-3))
        answers.append(baseline_answer(model, q, clips(first, last)))
    return answers


def evaluate(
    model,
    data: ReSTData,
    split: str = "test",
    *,
    method: str = "longvmnet",
    cache: FeatureCache | None = None,
    memory_frames: int | None = None,
    progress: bool = True,
) -> dict:
    """-> {"table": {activity|object|time|activity_r3: {short|medium|long: R%}}, "counts", "stage1_s", ...}

    method: "longvmnet" (video decoded, real stage 1), "longvmnet-cached" (stage 1 on cached tokens),
    "random" / "uniform" (memory selection ablations, cached), "baseline" (per-query, cached tokens), or
    "blind" (`Blind`: no video; `model` may be None). "per_class" holds R@1x of activity queries per true
    class and time tIoU>.3 per queried class, with their counts.
    """
    if method == "blind":
        return _evaluate(model, data, split, method, cache, progress)
    original = model.config
    if memory_frames or method in ("random", "uniform"):
        selection = {"random": "random", "uniform": "uniform"}.get(method, original.selection)
        model.config = replace(
            original, memory_frames=memory_frames or original.memory_frames, selection=selection
        )
    try:
        return _evaluate(model, data, split, method, cache, progress)
    finally:
        model.config = original


def _evaluate(
    model, data: ReSTData, split: str, method: str, cache: FeatureCache | None, progress: bool
) -> dict:
    object_fps = model.config.object_fps if model is not None else ModelConfig.object_fps
    blind = Blind(data, object_fps) if method == "blind" else None
    if model is not None:
        model.eval()
    sums, counts = defaultdict(float), defaultdict(int)
    class_sums, class_counts = defaultdict(float), defaultdict(int)  # keyed (query type, activity class)
    stage1 = stage2 = 0.0
    videos = [v for v in data.split(split) if v.queries]
    for video in tqdm(videos, desc=f"evaluating {method}", disable=not progress):
        queries = [to_query(q, data) for q in video.queries] if blind is None else []
        t0 = time.perf_counter()
        if blind is not None:
            answers = [blind.answer(video, q) for q in video.queries]
            stage2 += time.perf_counter() - t0
        elif method == "baseline":
            answers = baseline_answers(model, cache, video, queries)
            stage2 += time.perf_counter() - t0
        else:
            memory = (
                build_memory(model, video.path)
                if method == "longvmnet"
                else memory_from_cache(model, cache, video)
            )
            t1 = time.perf_counter()
            answers = answer(model, memory, queries)
            stage1 += t1 - t0
            stage2 += time.perf_counter() - t1
        for q, a in zip(video.queries, answers):
            values = score(q, a, data.activities, object_fps)
            for key, v in (values | diagnose(q, a, object_fps)).items():
                sums[(key, q["window"])] += v
                counts[(key, q["window"])] += 1
            if q["type"] in PER_CLASS_KEYS:
                for cls in q["answer"]["activities"] if q["type"] == "activity" else [q["activity"]]:
                    class_sums[(q["type"], cls)] += values[q["type"]]
                    class_counts[(q["type"], cls)] += 1
    table = {
        k: {w: round(100 * sums[(k, w)] / counts[(k, w)], 1) for w in WINDOWS if counts[(k, w)]}
        for k in TABLE_KEYS
    }
    diagnostics = {k: {w: round(sums[(k, w)] / counts[(k, w)], 3) for w in WINDOWS if counts[(k, w)]}
                   for k in DIAGNOSTIC_KEYS}  # fmt: skip
    per_class = {k: {a: {"recall": round(100 * class_sums[(k, a)] / n, 1), "count": n}
                     for a in data.activities if (n := class_counts[(k, a)])}
                 for k in PER_CLASS_KEYS}  # fmt: skip
    return {"method": method, "split": split, "table": table, "diagnostics": diagnostics,
            "per_class": per_class,
            "counts": {k: {w: counts[(k, w)] for w in WINDOWS if counts[(k, w)]} for k in TABLE_KEYS},
            "stage1_s": round(stage1, 2), "stage2_s": round(stage2, 2), "videos": len(videos),
            "memory_tokens": model.config.memory_size if model is not None else 0}  # fmt: skip


def format_table(result: dict) -> str:
    t = result["table"]
    rows = [f"{'':<18}" + "".join(f"{w:>9}" for w in WINDOWS)]
    names = {
        "activity": "activity R@1x",
        "object": "object vIoU>.3",
        "time": "time tIoU>.3",
        "activity_r3": "activity R@3x",
    }
    for k in TABLE_KEYS:
        rows.append(f"{names[k]:<18}" + "".join(f"{t[k].get(w, float('nan')):>9.1f}" for w in WINDOWS))
    for k, per_window in result.get("diagnostics", {}).items():
        rows.append(f"{k:<18}" + "".join(f"{per_window.get(w, float('nan')):>9.3f}" for w in WINDOWS))
    per_class = result.get("per_class", {})
    if any(per_class.values()):
        rows.append(f"{'per class':<18}{'R@1x':>9}{'n':>6}{'tIoU>.3':>9}{'n':>6}")
        for a in dict.fromkeys([*per_class.get("activity", {}), *per_class.get("time", {})]):
            cells = [per_class[k].get(a, {"recall": float("nan"), "count": 0}) for k in PER_CLASS_KEYS]
            rows.append(f"{a:<18}" + "".join(f"{c['recall']:>9.1f}{c['count']:>6}" for c in cells))
    rows.append(f"stage 1: {result['stage1_s']:.1f} s   stage 2: {result['stage2_s']:.1f} s   "
                f"({result['videos']} videos, {result['method']})")  # fmt: skip
    return "\n".join(rows)


def save_json(result: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out = {k: result["table"][k] for k in TABLE_KEYS}
    out.update({"stage1_s": result["stage1_s"], "stage2_s": result["stage2_s"], "method": result["method"],
                "counts": result["counts"], "diagnostics": result.get("diagnostics", {}),
                "per_class": result.get("per_class", {})})  # fmt: skip
    Path(path).write_text(json.dumps(out, indent=2))
