"""Evaluation in the paper's Table 2 layout: Recall@1x per query type x window, plus Recall@3x for activity,
for every rung of the accuracy ladder (`ladder.py`: prior, blind, oracle, baseline, longvmnet, random, uniform)
on the same queries, so that a table says where accuracy is lost.

Long-VMNet runs the two stages as the paper does: one memory per video (stage 1), then every query of that
video answered from it (stage 2); both are timed separately. Every method also gets a per-activity-class
table, so that classes seen only as motion stand apart, and every memory method the figures of
`ladder.memory_stats` (enrichment in activity tokens, collapse onto one grid cell, repeats).
"""

from __future__ import annotations

import json
import time
import zlib
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from longvmnet.config import ModelConfig
from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData
from longvmnet.inference import answer, build_memory, load_crop
from longvmnet.measure.ladder import (
    Prior,
    baseline_answers,
    blind_memory,
    memory_from_cache,
    memory_stats,
    oracle_memory,
)
from longvmnet.measure.metrics import recall_at_kx, tiou, viou
from longvmnet.model.box_ops import paired_iou
from longvmnet.queries import ActivityQuery, Answer, ObjectQuery, TimeQuery

WINDOWS = ("short", "medium", "long")
TABLE_KEYS = ("activity", "object", "time", "activity_r3")
# Where object and time answers fall short of the table's thresholds (means, not shares):
#   object_box_iou     the predicted box's IoU on the frames that truly show the object (where, given when)
#   object_frames_iou  IoU of the frames predicted to show it with the true frames (when)
#   time_tiou          tIoU of the predicted span with the true one
DIAGNOSTIC_KEYS = ("object_box_iou", "object_frames_iou", "time_tiou")
MEMORY_KEYS = ("enrichment", "top_cell_share", "duplicate_share")  # ladder.memory_stats, mean over videos
# The ladder, bottom up; "longvmnet-cached" is longvmnet with stage 1 on cached tokens (not a rung of its own).
LADDER = ("prior", "blind", "oracle", "baseline", "longvmnet", "random", "uniform")
METHODS = (*LADDER, "longvmnet-cached")
NO_MODEL = ("prior",)  # methods that need no checkpoint
NO_CACHE = ("prior", "blind", "longvmnet")  # methods that need no feature cache
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
        pred = {round(a.times[i] * object_fps): a.boxes[i].tolist() for i in a.present()}
        return {"object": float(viou(pred, true_boxes(ans, object_fps)) > 0.3)}
    return {"time": float(tiou((a.start, a.end), (ans["start"], ans["end"])) > 0.3)}


def diagnose(q: dict, a: Answer, object_fps: float) -> dict[str, float]:
    """Per-query values of DIAGNOSTIC_KEYS (none for activity queries)."""
    ans = q["answer"]
    if q["type"] == "object":
        true = true_boxes(ans, object_fps)
        every = {round(t * object_fps): i for i, t in enumerate(a.times.tolist())}  # frame -> row of a.boxes
        present = {round(a.times[i] * object_fps) for i in a.present()}
        both = sorted(set(true) & set(every))
        box = (paired_iou(torch.from_numpy(a.boxes[[every[f] for f in both]]).double(),
                          torch.tensor([true[f] for f in both], dtype=torch.float64))[0].mean().item()
               if both else 0.0)  # fmt: skip
        frames = len(present & set(true)) / max(1, len(present | set(true)))
        return {"object_box_iou": box, "object_frames_iou": frames}
    if q["type"] == "time":
        return {"time_tiou": tiou((a.start, a.end), (ans["start"], ans["end"]))}
    return {}


def evaluate(
    model,
    data: ReSTData,
    split: str = "test",
    *,
    method: str = "longvmnet",
    cache: FeatureCache | None = None,
    memory_frames: int | None = None,
    prior_data: ReSTData | None = None,
    progress: bool = True,
) -> dict:
    """-> {"table": {activity|object|time|activity_r3: {short|medium|long: R%}}, "counts", "stage1_s", ...}

    method: one of METHODS (see `ladder.py`); "longvmnet" decodes the videos (real stage 1), the other model
    methods read cached backbone tokens; "prior" needs no model (`model` may be None) and learns from the
    training split of `prior_data` (default: `data`'s own). "per_class" holds R@1x
    of activity queries per true class and time tIoU>.3 per queried class, with their counts; "memory" holds
    the memory methods' MEMORY_KEYS.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    if method in NO_MODEL:
        return _evaluate(None, data, split, method, cache, progress, prior_data)
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


def evaluate_ladder(model, data: ReSTData, split: str = "test", *, methods=LADDER, cache=None,
                    progress: bool = True) -> dict:  # fmt: skip
    """Several methods on the same queries. -> {"split", "methods": {name: evaluate's result}}"""
    results = {}
    for method in methods:
        results[method] = evaluate(model, data, split, method=method, cache=cache, progress=progress)
    return {"split": split, "methods": results}


def _memory_for(model, method: str, cache: FeatureCache | None, video):
    if method == "longvmnet":
        return build_memory(model, video.path)
    if method == "oracle":
        return oracle_memory(model, cache, video)
    if method == "blind":
        return blind_memory(model, video)
    if method == "random":  # random scores, the same draw in every run: seeded by the video's id
        with torch.random.fork_rng():
            torch.manual_seed(zlib.crc32(video.id.encode()))
            return memory_from_cache(model, cache, video)
    return memory_from_cache(model, cache, video)


def _evaluate(
    model, data: ReSTData, split: str, method: str, cache: FeatureCache | None, progress: bool,
    prior_data: ReSTData | None = None,
) -> dict:  # fmt: skip
    object_fps = model.config.object_fps if model is not None else ModelConfig.object_fps
    prior = Prior(prior_data or data, object_fps) if method == "prior" else None
    if model is not None:
        model.eval()
    sums, counts = defaultdict(float), defaultdict(int)
    class_sums, class_counts = defaultdict(float), defaultdict(int)  # keyed (query type, activity class)
    held = defaultdict(list)  # MEMORY_KEYS -> one value per video
    stage1 = stage2 = 0.0
    videos = [v for v in data.split(split) if v.queries]
    for video in tqdm(videos, desc=f"evaluating {method}", disable=not progress):
        queries = [to_query(q, data) for q in video.queries] if prior is None else []
        t0 = time.perf_counter()
        if prior is not None:
            answers = [prior.answer(video, q) for q in video.queries]
            stage2 += time.perf_counter() - t0
        elif method == "baseline":
            answers = baseline_answers(model, cache, video, queries)
            stage2 += time.perf_counter() - t0
        else:
            memory = _memory_for(model, method, cache, video)
            t1 = time.perf_counter()
            answers = answer(model, memory, queries)
            stage1 += t1 - t0
            stage2 += time.perf_counter() - t1
            if method != "blind":
                c = model.config
                for key, v in memory_stats(memory, video, c.grid, c.memory_fps).items():
                    held[key].append(v)
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
            "per_class": per_class, "memory": {k: round(float(np.mean(v)), 3) for k, v in held.items()},
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
    if result.get("memory"):
        rows.append("memory: " + "   ".join(f"{k} {v:.3f}" for k, v in result["memory"].items()))
    per_class = result.get("per_class", {})
    if any(per_class.values()):
        rows.append(f"{'per class':<18}{'R@1x':>9}{'n':>6}{'tIoU>.3':>9}{'n':>6}")
        for a in dict.fromkeys([*per_class.get("activity", {}), *per_class.get("time", {})]):
            cells = [per_class[k].get(a, {"recall": float("nan"), "count": 0}) for k in PER_CLASS_KEYS]
            rows.append(f"{a:<18}" + "".join(f"{c['recall']:>9.1f}{c['count']:>6}" for c in cells))
    rows.append(f"stage 1: {result['stage1_s']:.1f} s   stage 2: {result['stage2_s']:.1f} s   "
                f"({result['videos']} videos, {result['method']})")  # fmt: skip
    return "\n".join(rows)


def format_ladder(ladder: dict) -> str:
    """One row per method: the table's cells by type x window, then the memory's enrichment and top-cell
    share; below, activity R@1x / time tIoU>.3 per activity class and method (all windows)."""
    results = ladder["methods"]
    short = {"activity": "activity R@1x", "object": "object vIoU>.3", "time": "time tIoU>.3"}
    head = f"{'':<17}" + "".join(f"{short[k]:>21}" for k in short) + f"{'enrich':>8}{'top cell':>9}"
    rows = [f"ladder ({ladder['split']} split; short / medium / long)", head]
    for name, r in results.items():
        cells = ["/".join(f"{r['table'][k].get(w, float('nan')):.1f}" for w in WINDOWS) for k in short]
        mem = r.get("memory", {})
        rows.append(f"{name:<17}" + "".join(f"{c:>21}" for c in cells)
                    + f"{mem.get('enrichment', float('nan')):>8.2f}{mem.get('top_cell_share', float('nan')):>9.3f}")  # fmt: skip
    classes = dict.fromkeys(
        a for r in results.values() for k in PER_CLASS_KEYS for a in r["per_class"].get(k, {})
    )
    if classes:
        rows.append(
            f"{'per class':<17}" + "".join(f"{name[:12]:>13}" for name in results) + "   (R@1x / tIoU>.3)"
        )
        for a in classes:
            cells = ["/".join(f"{r['per_class'][k][a]['recall']:.0f}" if a in r["per_class"].get(k, {}) else "-"
                              for k in PER_CLASS_KEYS) for r in results.values()]  # fmt: skip
            rows.append(f"{a:<17}" + "".join(f"{c:>13}" for c in cells))
    return "\n".join(rows)


def _json_result(result: dict) -> dict:
    out = {k: result["table"][k] for k in TABLE_KEYS}
    out.update({"stage1_s": result["stage1_s"], "stage2_s": result["stage2_s"], "method": result["method"],
                "counts": result["counts"], "diagnostics": result.get("diagnostics", {}),
                "per_class": result.get("per_class", {}), "memory": result.get("memory", {})})  # fmt: skip
    return out


def save_json(result: dict, path: str | Path) -> None:
    """One method's result (evaluate) or a ladder (evaluate_ladder: {"split", "methods": {name: result}})."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if "methods" in result:
        out = {
            "split": result["split"],
            "methods": {k: _json_result(r) for k, r in result["methods"].items()},
        }
    else:
        out = _json_result(result)
    Path(path).write_text(json.dumps(out, indent=2))
