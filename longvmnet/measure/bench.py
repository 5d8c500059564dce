"""`longvmnet bench`: the speed benchmark, in one process and one run (ratios, since machines are noisy).

1. ReST-shaped workload: Long-VMNet's stage 1 and stage 2 against the per-query baseline, which decodes each
   query's window, runs the backbone on it and the encoder-decoder per T-frame clip (ladder.baseline_answer).
   Speedup as in the paper's Table 1: baseline time of all queries of a type/window over Long-VMNet's time
   for them, stage 1 of a video split evenly over all its queries (also reported without stage 1), and the
   workload's limit (seconds of video the baseline reads / seconds stage 1 reads for the same queries).
2. Memory-building efficiency: stage 1 frames/s over the backbone's own frames/s on the same decoded frames.
3. Constant memory: peak RSS and time of stage 1 on ever longer synthetic streams (never stored), each in a
   fresh subprocess.
4. Query latency from a built memory (single queries, p50/p95) and batched throughput.
5. Training: one sampler step (forward + backward of NeuralSampler + top-k) at the paper's size.

GPU fast path: with CUDA the model runs under bf16 autocast and the baseline's backbone takes 8 clips per
batch; on a CPU everything runs in fp32 exactly as inference does.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from longvmnet.data.rest import ReSTData
from longvmnet.hub import load_model
from longvmnet.inference import answer, build_memory, scan, to_memory
from longvmnet.measure.evaluate import WINDOWS, to_query
from longvmnet.measure.ladder import baseline_answer
from longvmnet.measure.resources import (
    Every,
    amp,
    descendants,
    length_label,
    machine,
    machine_load,
    prefetch,
    timed,
)
from longvmnet.memory import MemoryMeta
from longvmnet.video import iter_clips, iter_frames

TYPES = ("activity", "object", "time")
COLUMNS = (*WINDOWS, "all")
GOALS = {"speedup_vs_limit": (">=", 0.8), "stage2_speedup_activity_short": (">=", 100.0),
         "stage1_backbone_ratio": (">=", 0.9), "stage1_s_30min": ("<=", 60.0), "stage1_s_1h": ("<=", 120.0),
         "peak_rss_growth": ("<=", 1.1), "query_p50_ms": ("<=", 50.0), "query_p95_ms": ("<=", 100.0),
         "batched_qps": (">=", 100.0)}  # fmt: skip


@dataclass(frozen=True)
class Settings:
    videos: int  # ReST-shaped videos (synth.generate, cached in --work)
    minutes: float  # length of each
    queries_per_minute: float  # synth.generate's query density (5 -> 153 queries per 30-min video)
    baseline_per_cell: int  # baseline queries measured per type x window; the others are scaled from them
    latency_per_kind: int  # single queries timed per type for p50/p95 (0: all of the first video's)
    lengths: tuple[float, ...]  # constant-memory video lengths in seconds (a synthetic stream at memory fps)
    sampler_tokens: int  # m = k of the sampler step
    sampler_methods: tuple[str, ...]  # top-k variants of the sampler step ("hard": no relaxation)
    sampler_steps: int  # timed steps per variant
    sampler_attention_dropout: bool  # also one "chunked" step with the preset's attention dropout (~17 GB)


SETTINGS = {
    "full": Settings(2, 30.0, 5.0, 4, 0, (600.0, 3600.0, 36000.0), 5880, ("chunked", "softmax", "hard", "exact"), 2,
                     True),
    "quick": Settings(2, 30.0, 5.0, 1, 24, (600.0, 3600.0), 5880, ("chunked", "softmax", "hard"), 1, False),
    "smallest": Settings(2, 0.5, 30.0, 1, 3, (20.0, 60.0, 180.0), 49, ("chunked", "softmax", "hard"), 1, True),
}  # fmt: skip


def _spread(items: list, n: int) -> list:
    """n items evenly spaced over the list (a cell lists the first video's queries, then the second's)."""
    return (
        list(items) if n >= len(items) else [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]
    )


# ------------------------------------------------------------------------------------------ the baseline
def window_clips(model, path, start: float, end: float, *, clips_per_batch: int = 1):
    """The baseline's input at its true cost: the window decoded at the memory fps (a thread prefetches),
    the backbone per T-frame clip (several clips per batch on a GPU). Yields (times (t,), tokens (t, p, d))."""
    c = model.config
    size = (c.image_size, c.image_size)
    frames = prefetch(iter_frames(path, c.memory_fps, size, start_s=start, end_s=end), 2 * c.clip_len)
    while batch := list(itertools.islice(frames, c.clip_len * clips_per_batch)):
        times = torch.tensor([t for t, _ in batch], dtype=torch.float32)
        tokens = model.embed_frames(torch.from_numpy(np.stack([f for _, f in batch])))
        for s in range(0, len(batch), c.clip_len):
            yield times[s : s + c.clip_len], tokens[s : s + c.clip_len]


@torch.inference_mode()
def baseline_query(model, path, query):
    per = 8 if model.device.type == "cuda" else 1
    return baseline_answer(
        model, query, window_clips(model, path, query.start, query.end, clips_per_batch=per)
    )


# ------------------------------------------------------------------------------------------------ parts
def workload(work: Path, s: Settings, progress: bool) -> ReSTData:
    """The ReST-shaped videos and queries, generated once into `work` and reused."""
    from longvmnet.data.synth import generate

    root = work / f"rest_{s.videos}x{s.minutes:g}min_q{s.queries_per_minute:g}"
    if not (root / "benchmark.json").is_file():
        generate(root, videos=s.videos, minutes=s.minutes, seed=0, progress=progress,
                 queries_per_minute=s.queries_per_minute)  # fmt: skip
    return ReSTData(root)


@torch.inference_mode()
def _warm_up(model, queries: list) -> None:
    """One clip through stage 1 and one query of each kind, so one-time setup is not timed."""
    c = model.config
    frames = torch.randint(0, 255, (c.clip_len, c.image_size, c.image_size, 3), dtype=torch.uint8)
    memory, _ = scan(model, [(torch.arange(c.clip_len) / c.memory_fps, model.embed_frames(frames))], 1e4)
    one = {q.kind: q for q in queries}
    answer(model, to_memory(memory, MemoryMeta(duration_s=1e4)), list(one.values()))


def _cells(fn, keys) -> dict:
    """{type: {window: fn([(type, window)]), "all": fn(all windows of the type)}} over the keys present."""
    out = {t: {w: fn([(t, w)]) for w in WINDOWS if (t, w) in keys} for t in TYPES}
    for t in TYPES:
        out[t]["all"] = fn([(t, w) for w in WINDOWS if (t, w) in keys])
    return out


def speed_vs_baseline(model, data: ReSTData, s: Settings, progress: bool) -> dict:
    """Part 1 (keys starting with "_" carry the memories and videos on to parts 2 and 4). Each video's stage 1
    is timed just before and just after its baseline queries, and the two averaged: the machine's speed
    drifts over minutes, and the speedup is a ratio of those times."""
    videos = [v for v in data.split("all") if v.queries][: s.videos]
    cells: dict[tuple[str, str], list] = defaultdict(list)  # (type, window) -> [(video, query)]
    for v in videos:
        for q in v.queries:
            cells[(q["type"], q["window"])].append((v, to_query(q, data)))
    picks = [
        (key, v, q) for key, items in sorted(cells.items()) for v, q in _spread(items, s.baseline_per_cell)
    ]
    stage1, stage1_runs, frames, memories, costs = {}, {}, {}, {}, defaultdict(list)

    def stage1_of(v, when: str):
        bar = tqdm(total=int(v.duration), unit="frame", desc=f"stage 1 {v.id} ({when} its baseline)",
                   disable=not progress)  # fmt: skip
        with bar:
            return timed(build_memory, model, v.path, progress=lambda n, _: bar.update(n - bar.n))

    for v in videos:
        memory, before = stage1_of(v, "before")
        frames[v.id], memories[v.id] = memory.meta.frames_seen, memory
        for key, _, q in tqdm([p for p in picks if p[1] is v], desc=f"baseline {v.id} (per query, decoded video)",
                              disable=not progress):  # fmt: skip
            costs[key].append(timed(baseline_query, model, v.path, q)[1])
        stage1_runs[v.id] = [round(before, 3), round(stage1_of(v, "after")[1], 3)]
        stage1[v.id] = float(np.mean(stage1_runs[v.id]))
    stage2, share, base = defaultdict(float), defaultdict(float), {}
    window_s, share_s = defaultdict(float), defaultdict(float)  # the workload's limit: seconds read by each
    for key, items in tqdm(sorted(cells.items()), desc="stage 2 per type x window", disable=not progress):
        for v in videos:
            if qs := [q for vv, q in items if vv is v]:
                runs = [timed(answer, model, memories[v.id], qs)[1] for _ in range(3)]
                stage2[key] += float(np.median(runs))  # the median of 3 runs, as for single queries
                share[key] += stage1[v.id] * len(qs) / len(v.queries)
                window_s[key] += sum(q.end - q.start for q in qs)
                share_s[key] += v.duration * len(qs) / len(v.queries)
    for key, items in cells.items():
        base[key] = float(np.mean(costs[key])) * len(items)
    total = lambda d: lambda keys: sum(d[k] for k in keys)
    r4 = lambda f: lambda keys: round(f(keys), 4)
    speedup = lambda k: total(base)(k) / (total(stage2)(k) + total(share)(k))
    limit = lambda k: total(window_s)(k) / total(share_s)(k)  # seconds the baseline reads / stage 1 reads
    return {
        "stage1_s": {"per_video": {k: round(x, 3) for k, x in stage1.items()}, "total": round(sum(stage1.values()), 3),
                     "frames": sum(frames.values()), "fps": round(sum(frames.values()) / sum(stage1.values()), 1),
                     "runs": stage1_runs},
        "stage2_s": _cells(r4(total(stage2)), cells),
        "stage1_share_s": _cells(r4(total(share)), cells),
        "baseline_s": _cells(r4(total(base)), cells),
        "speedup": _cells(r4(speedup), cells),
        "stage2_speedup": _cells(r4(lambda k: total(base)(k) / total(stage2)(k)), cells),
        "speedup_limit": _cells(r4(limit), cells),
        "speedup_vs_limit": _cells(r4(lambda k: speedup(k) / limit(k)), cells),
        "queries": _cells(lambda keys: sum(len(cells[k]) for k in keys), cells),
        "baseline_measured": _cells(lambda keys: sum(len(costs[k]) for k in keys), cells),
        "_memories": memories, "_videos": videos,
    }  # fmt: skip


@torch.inference_mode()
def stage1_efficiency(model, video) -> dict:
    """Part 2: stage 1 fps over the backbone's fps on the same frames, decoded beforehand, same batch (T);
    stage 1 is timed just before and just after the backbone alone (the machine's speed drifts over minutes);
    plus the sampler (projected tokens -> memory) and decoding alone, which explain the ratio."""
    c = model.config
    clips, decode_s = timed(
        lambda: list(iter_clips(video.path, c.memory_fps, c.clip_len, (c.image_size,) * 2))
    )
    memory, before = timed(build_memory, model, video.path)
    backbone_s, tokens = 0.0, []
    for clip in clips:
        feats, dt = timed(model.backbone, torch.from_numpy(clip.frames))
        backbone_s += dt
        tokens.append(model.proj(feats))
    stage1_s, frames_seen = (before + timed(build_memory, model, video.path)[1]) / 2, memory.meta.frames_seen
    sampler_s = timed(scan, model, zip((torch.from_numpy(k.times) for k in clips), tokens), video.duration)[1]
    n = sum(len(k.times) for k in clips)
    by_micro_batch = micro_batch_fps(model.backbone, clips[:8])
    return {"stage1_backbone_ratio": round(backbone_s / n * frames_seen / stage1_s, 3),
            "stage1_fps": round(frames_seen / stage1_s, 1), "backbone_fps": round(n / backbone_s, 1),
            "sampler_fps": round(n / sampler_s, 1), "decode_fps": round(n / decode_s, 1),
            "ratio_bound_with_decoding_hidden": round(backbone_s / (backbone_s + sampler_s), 3),
            "backbone_fps_by_micro_batch": by_micro_batch}  # fmt: skip


def micro_batch_fps(backbone, clips: list, sizes=(1, 2, 4, 8, 16), rounds: int = 3) -> dict:
    """The backbone's frames/s on the same clips when it sees 1, 2, 4... frames per call, in interleaved
    rounds (the median of each): what `Backbone.micro_batch` is chosen by."""
    keep, fps = backbone.micro_batch, defaultdict(list)
    n = sum(len(k.times) for k in clips)
    try:
        for _ in range(rounds):
            for size in sizes:
                backbone.micro_batch = size
                fps[size].append(n / sum(timed(backbone, torch.from_numpy(k.frames))[1] for k in clips))
    finally:
        backbone.micro_batch = keep
    return {str(size): round(float(np.median(x)), 1) for size, x in fps.items()}


def query_latency(model, memory, queries: list, per_kind: int, progress: bool) -> dict:
    """Part 4: single-query p50/p95 per type (each query timed 3 times, its median kept; and the median per
    window), throughput of batched queries."""
    p50, p95, by_window, qps = {}, {}, {}, {}
    windows = {id(q): q.end - q.start for q in queries}
    for kind in TYPES:
        qs = [q for q in queries if q.kind == kind]
        picked = _spread(qs, per_kind) if per_kind else qs
        ms = [  # each query's own time: the median of 3 runs (one run can catch the machine busy)
            1e3 * float(np.median([timed(answer, model, memory, [q])[1] for _ in range(3)]))
            for q in tqdm(picked, desc=f"latency {kind}", disable=not progress)
        ]
        p50[kind], p95[kind] = round(float(np.percentile(ms, 50)), 1), round(float(np.percentile(ms, 95)), 1)
        per_window = defaultdict(list)
        for q, x in sorted(zip(picked, ms), key=lambda a: windows[id(a[0])]):
            per_window[f"{windows[id(q)]:g}s"].append(x)
        by_window[kind] = {w: round(float(np.median(xs)), 1) for w, xs in per_window.items()}
        qps[kind] = (len(qs), timed(answer, model, memory, qs)[1])
    qps["all"] = (
        sum(n for n, _ in qps.values()),
        sum(t for _, t in qps.values()),
    )  # answer() batches by kind
    return {"query_p50_ms": p50, "query_p95_ms": p95, "query_ms_by_window": by_window,
            "batched_qps": {k: round(n / t, 1) for k, (n, t) in qps.items()}}  # fmt: skip


def _child(*args: str) -> dict:
    """Run a part in a fresh interpreter. `-c`, not `-m`: the decoder's spawned child then re-imports no main
    module and stays torch-free, as in normal use."""
    code = f"from longvmnet.measure.bench_child import main; main({list(args)!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=6 * 3600)
    if out.returncode != 0:
        raise RuntimeError(f"bench subprocess {args[0]} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def constant_memory(source: str, s: Settings, progress: bool) -> dict:
    """Part 3: stage 1 on synthetic streams of growing length (frames made as they are read, at the memory
    fps, never stored), each in a fresh subprocess."""
    runs = {}
    for seconds in tqdm(s.lengths, desc="constant memory (stage 1 per length)", disable=not progress):
        runs[length_label(seconds)] = _child("stream", source, str(seconds)) | {"video_s": seconds}
    first, last = runs[length_label(s.lengths[0])], runs[length_label(s.lengths[-1])]
    return {"peak_rss_mb": {k: r["peak_mb"] for k, r in runs.items()},
            "stage1_seconds": {k: r["seconds"] for k, r in runs.items()},
            "stage1_s_per_video_hour": {k: round(r["seconds"] * 3600 / r["video_s"], 1) for k, r in runs.items()},
            "peak_rss_growth": round(last["peak_mb"] / first["peak_mb"], 3), "constant_memory_runs": runs}  # fmt: skip


# ------------------------------------------------------------------------------------------------- run
def run_bench(checkpoint=None, *, quick: bool = False, smallest: bool = False, work="runs/bench",
              progress: bool = True) -> dict:  # fmt: skip
    """All five parts. -> JSON-ready dict with the keys speedup, speedup_limit, speedup_vs_limit,
    stage2_speedup, stage1_s, stage1_seconds, stage2_s, baseline_s,
    stage1_backbone_ratio, peak_rss_mb, query_p50_ms, query_p95_ms, batched_qps, sampler_step, goals, notes,
    machine, load_at_start/end and the details behind them."""
    mode = "smallest" if smallest else "quick" if quick else "full"
    s, work = SETTINGS[mode], Path(work)
    work.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(checkpoint, device=device)
    r: dict = {"mode": mode, "machine": machine(), "checkpoint": model.name, "settings": asdict(s),
               "load_at_start": machine_load()}  # fmt: skip
    data = workload(work, s, progress)
    if missing := set(data.activities) - set(model.config.activities):
        raise ValueError(f"The checkpoint does not know the benchmark's activities {sorted(missing)}.")
    busy: dict[str, int] = {}  # other processes at >= 10% CPU (ps every 20 s) -> samples

    def watch():
        mine = {str(p) for p in descendants(os.getpid())}
        for line in machine_load()["busy"]:
            if line.split()[0] not in mine:
                cmd = " ".join(line.split()[3:])[:90]
                busy[cmd] = busy.get(cmd, 0) + 1

    start, monitor = time.perf_counter(), Every(20, watch)
    with amp(device):
        v0 = [v for v in data.split("all") if v.queries][0]
        queries = [to_query(q, data) for q in v0.queries]
        _warm_up(model, queries)
        part1 = speed_vs_baseline(model, data, s, progress)
        r.update({k: v for k, v in part1.items() if not k.startswith("_")})
        r.update(stage1_efficiency(model, v0))
        r.update(query_latency(model, part1["_memories"][v0.id], queries, s.latency_per_kind, progress))
    r.update(constant_memory(str(checkpoint or ""), s, progress))
    with tqdm(total=1, desc=f"sampler step m=k={s.sampler_tokens}", disable=not progress) as bar:
        args = (
            s.sampler_tokens,
            ",".join(s.sampler_methods),
            s.sampler_steps,
            int(s.sampler_attention_dropout),
        )
        r["sampler_step"] = _child("sampler", *map(str, args))  # fmt: skip
        bar.update(1)
    monitor.stop()
    r.update(wall_s=round(time.perf_counter() - start, 1), busy_during=busy, load_at_end=machine_load())
    r["goals"] = goals(r)
    r["notes"] = [
        "speedup = baseline time of all queries of a type/window / (Long-VMNet stage 2 time of those queries + "
        "their share of stage 1); stage 1 of a video is split evenly over all its queries.",
        f"baseline: measured on {s.baseline_per_cell} query(ies) per type x window (baseline_measured), spread over "
        "the videos, and scaled by the number of queries; it decodes each window at the memory fps (prefetched "
        "in a thread), runs the backbone per T-frame clip and the encoder-decoder per clip.",
        "stage 2: answer() on each video's queries of a type/window (batched by kind, 32 at most; the median of "
        "3 runs); stage 1: build_memory, decoding in a child process 4 clips ahead, timed just before and just "
        "after the video's baseline queries and averaged (stage1_s.runs): the machine's speed drifts over "
        "minutes. stage1_backbone_ratio likewise times stage 1 just before and after the backbone alone.",
        "speedup_limit = seconds of video the baseline reads for the queries of a type/window (their windows) / "
        "seconds stage 1 reads for them (their share of the videos): the speedup if stage 2 were free and both "
        "read a second of video at the same cost; speedup_vs_limit = speedup / speedup_limit.",
        "peak_rss_mb, stage1_seconds: stage 1 (backbone, projection, sampler) in a fresh subprocess on a synthetic "
        "stream of each length made frame by frame at the memory fps (never stored); peak = its VmHWM.",
        "goals: stage1_s_30min from part 1's videos (decoding included); stage1_s_1h the larger of those scaled "
        "to an hour and the 1 h stream (or the longest one).",
        "query latency: answer() on one query (crop backbone included) over the first video's queries; "
        "batched_qps: answer() on all of that video's queries of a type ('all': every type, batched by kind).",
        "sampler_step: one forward+backward at the paper's sizes, batch 1, on the CPU, attention dropout off "
        "(flash attention); 'hard' = top-k without relaxation (no gradient reaches the scores); "
        "with_attention_dropout: the preset's dropout 0.2 in the attention too (PyTorch then materialises the "
        "attention matrix).",
        "busy_during: other processes seen at >= 10% CPU (ps, every 20 s) while the benchmark ran -> samples.",
    ]  # fmt: skip
    return r


def goals(r: dict) -> dict:
    cells = [(t, w) for t in TYPES for w in WINDOWS if w in r["speedup_vs_limit"][t]]
    s1 = r["stage1_s"]["per_video"]
    values = {"speedup_vs_limit": min(r["speedup_vs_limit"][t][w] for t, w in cells),
              "stage2_speedup_activity_short": r["stage2_speedup"]["activity"].get("short", 0.0),
              "stage1_backbone_ratio": r["stage1_backbone_ratio"],
              "stage1_s_30min": max(s1.values()) * 1800 / (r["settings"]["minutes"] * 60),
              "stage1_s_1h": max(max(s1.values()) * 3600 / (r["settings"]["minutes"] * 60),
                                 list(r["stage1_s_per_video_hour"].values())[-1]),
              "peak_rss_growth": r["peak_rss_growth"], "query_p50_ms": max(r["query_p50_ms"].values()),
              "query_p95_ms": max(r["query_p95_ms"].values()), "batched_qps": r["batched_qps"]["all"]}  # fmt: skip
    met = lambda v, op, g: v >= g if op == ">=" else v <= g
    return {k: {"value": round(v, 3), "goal": f"{GOALS[k][0]} {GOALS[k][1]:g}", "met": bool(met(v, *GOALS[k]))}
            for k, v in values.items()}  # fmt: skip


def format_bench(r: dict) -> str:
    m, s1, ss = r["machine"], r["stage1_s"], r["sampler_step"]
    gpu = f", {m['gpu']}" if m["gpu"] else ""
    out = [f"longvmnet bench ({r['mode']}): {m['cpu']}, {m['cores']} cores, torch {m['torch']}{gpu}; {r['checkpoint']}",
           f"1. stage 1: {s1['total']:.1f} s for {len(s1['per_video'])} videos ({s1['frames']} frames, {s1['fps']:.0f}/s)"]  # fmt: skip
    for name, key, fmt in (("queries", "queries", "d"), ("baseline measured", "baseline_measured", "d"),
                           ("speedup with stage 1", "speedup", ".1f"), ("speedup, stage 2 only", "stage2_speedup", ".0f"),
                           ("workload limit", "speedup_limit", ".1f"), ("speedup / limit", "speedup_vs_limit", ".2f"),
                           ("baseline s (scaled)", "baseline_s", ".1f"), ("stage 2 s", "stage2_s", ".2f")):  # fmt: skip
        out.append(f"   {name:<23}" + "".join(f"{w:>9}" for w in COLUMNS))
        out += [f"     {t:<21}" + "".join(format(r[key][t][w], fmt).rjust(9) for w in COLUMNS) for t in TYPES]
    out.append(f"2. stage 1 / backbone frames per s: {r['stage1_backbone_ratio']:.2f} ({r['stage1_fps']:.0f} vs "
               f"{r['backbone_fps']:.0f}; sampler alone {r['sampler_fps']:.0f}, decoding alone {r['decode_fps']:.0f}; "
               f"bound with decoding hidden {r['ratio_bound_with_decoding_hidden']:.2f}); backbone frames/s by frames "
               "per call: " + ", ".join(f"{k} {v:.0f}" for k, v in r.get("backbone_fps_by_micro_batch", {}).items()))  # fmt: skip
    out.append("3. stage 1 peak RSS, s per video hour: " + ", ".join(
        f"{k} {r['peak_rss_mb'][k]:.0f} MB, {r['stage1_s_per_video_hour'][k]:.0f} s" for k in r["peak_rss_mb"])
        + f" (peak growth {r['peak_rss_growth']:.3f}x)")  # fmt: skip
    out.append("4. query latency p50/p95 ms: " + ", ".join(f"{k} {r['query_p50_ms'][k]:.0f}/{r['query_p95_ms'][k]:.0f}" for k in TYPES)
               + "; batched q/s: " + ", ".join(f"{k} {v:.1f}" for k, v in r["batched_qps"].items()))  # fmt: skip
    steps = {k: v for k, v in ss.items() if isinstance(v, dict) and "step_s" in v}
    drop = ss.get("with_attention_dropout", {})
    out.append(f"5. sampler step m=k={ss['tokens_m_k']} (d={ss['d_model']}, attention dropout off): " + ", ".join(
        f"{k} {v['step_s']:.2f} s, {v['peak_mb']:.0f} MB (top-k alone {v['topk_only_ms']:.0f} ms)" for k, v in steps.items())
        + "".join(f"; with attention dropout: {k} {v['step_s']:.1f} s, {v['peak_mb']:.0f} MB" for k, v in drop.items()
                  if isinstance(v, dict)))  # fmt: skip
    out.append("goals: " + "; ".join(f"{k} {g['value']:g} ({g['goal']}) {'met' if g['met'] else 'MISSED'}"
                                     for k, g in r["goals"].items()))  # fmt: skip
    busy = "; ".join(f"{cmd} ({n} samples)" for cmd, n in r.get("busy_during", {}).items())
    out.append(f"other processes >= 10% CPU during the run: {busy or 'none'}; wall {r['wall_s']:.0f} s")
    return "\n".join(out)


def card_section(r: dict) -> str:
    """The model card's Speed section from a bench result: how it was run, the goals met and missed, the
    speedup against the workload's limit and the query latencies."""
    m = r["machine"]
    out = [f"`longvmnet bench{' --quick' if r['mode'] == 'quick' else '' if r['mode'] == 'full' else ' --' + r['mode']}`: "
           f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}{', ' + m['gpu'] if m['gpu'] else ''}; wall {r['wall_s']:.0f} s. "
           "The speedup counts each video's stage 1 shared over its queries; the limit is what the workload allows "
           "(seconds of video the per-query baseline reads / seconds stage 1 reads for the same queries).", "",
           "| goal | measured | |", "|---|---|---|"]  # fmt: skip
    out += [
        f"| {k} {g['goal']} | {g['value']:g} | {'met' if g['met'] else 'missed'} |"
        for k, g in r["goals"].items()
    ]
    out += [
        "",
        "| speedup (both stages) / limit | " + " | ".join(WINDOWS) + " |",
        "|---" * (len(WINDOWS) + 1) + "|",
    ]
    out += [f"| {t} | " + " | ".join(f"{r['speedup'][t][w]:.1f} / {r['speedup_limit'][t][w]:.1f}" for w in WINDOWS
                                     if w in r["speedup"][t]) + " |" for t in TYPES]  # fmt: skip
    out += ["", "| query | p50 ms | p95 ms | batched q/s |", "|---|---|---|---|"]
    out += [
        f"| {t} | {r['query_p50_ms'][t]:.0f} | {r['query_p95_ms'][t]:.0f} | {r['batched_qps'][t]:.1f} |"
        for t in TYPES
    ]
    s1 = r["stage1_s"]
    out += ["", f"Stage 1: {s1['fps']:.0f} frames/s ({r['stage1_backbone_ratio']:.2f}x the backbone alone); peak RSS "
            + ", ".join(f"{k} {v:.0f} MB" for k, v in r["peak_rss_mb"].items()) + "."]  # fmt: skip
    return "\n".join(out)
