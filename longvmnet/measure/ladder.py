"""The accuracy ladder's rungs: what each evaluation method answers from (`evaluate` scores them all alike).

  prior      the training split's answers alone: class frequencies per object category, the mean box, the
             median span (`Prior`); no model, no video
  blind      the trained model with its memory tokens zeroed: the query and the memory's layout, no video
  oracle     the trained model on a memory filled with the tokens that show the video's activities (the
             acting objects and the hand, from the annotations): the encoder-decoder's ceiling
  baseline   per query, the model reads the query's own window clip by clip (TubeDETR-style, no memory)
  longvmnet  the neural sampler's memory (`longvmnet-cached`: the same, stage 1 on cached backbone tokens)
  random, uniform   memories of random tokens / of evenly spaced whole frames

Read it top down: longvmnet far below oracle, the sampler loses the answer; oracle far below baseline, the
decoder does. `memory_stats` measures what a memory holds: its enrichment in activity tokens over their share
of the video, the largest share one grid cell takes, and repeated tokens.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np
import torch

from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData, VideoItem, token_relevance
from longvmnet.inference import crop_tokens, scan, to_memory
from longvmnet.memory import Memory, MemoryMeta
from longvmnet.queries import ActivityAnswer, Answer, ObjectAnswer, TimeAnswer, collate, decode


class Prior:
    """The `prior` rung: answers from the query alone, with what the training split's answers teach (the videos with queries
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
    aggregated over the clips (activity: max; object: each clip answers its own frames; time: per-time
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


def _memory(model, video: VideoItem, tokens: torch.Tensor, times: np.ndarray, pos: np.ndarray) -> Memory:
    """A memory of given projected tokens (m, d) at frame times (m,) and patch indices (m,), in time order."""
    g, order = model.config.grid, np.lexsort((pos, times))
    pos = torch.from_numpy(np.asarray(pos)[order]).long()
    meta = MemoryMeta(video=video.path.name, duration_s=video.duration, checkpoint=model.fingerprint())
    return Memory(tokens[torch.from_numpy(order)].float(), torch.from_numpy(np.asarray(times, np.float32)[order]),
                  pos // g, pos % g, meta)  # fmt: skip


@torch.inference_mode()
def oracle_memory(model, cache: FeatureCache, video: VideoItem, seed: int = 0) -> Memory:
    """The `oracle` rung's memory: m tokens that show an activity (`token_relevance`: the acting object or the
    hand during a segment), evenly spaced through the video's list of them; when there are fewer than m, all
    of them and random others."""
    feats, c = cache.video(video.path), model.config
    relevant = token_relevance(video.annotations, np.asarray(feats.times), c.grid).ravel()
    hits, rest = np.flatnonzero(relevant), np.flatnonzero(~relevant)
    m = c.memory_size
    if len(hits) >= m:
        chosen = hits[np.linspace(0, len(hits) - 1, m).round().astype(int)]
    else:
        rng = np.random.default_rng(seed)
        chosen = np.concatenate([hits, rng.choice(rest, m - len(hits), replace=False)])
    frames, pos = np.divmod(chosen, c.tokens_per_frame)
    tokens = model.project(torch.from_numpy(np.asarray(feats.tokens[frames, pos], dtype=np.float32)))
    return _memory(model, video, tokens, np.asarray(feats.times)[frames], pos)


def blind_memory(model, video: VideoItem) -> Memory:
    """The `blind` rung's memory: the layout of a uniform memory (whole frames evenly spaced over the video),
    every token zero, so the model answers from the query and that layout alone."""
    c = model.config
    times = np.repeat(
        (np.arange(c.memory_frames) + 0.5) * video.duration / c.memory_frames, c.tokens_per_frame
    )
    pos = np.tile(np.arange(c.tokens_per_frame), c.memory_frames)
    return _memory(model, video, torch.zeros(c.memory_size, c.d_model), times, pos)


def memory_stats(memory: Memory, video: VideoItem, grid: int, fps: float) -> dict[str, float]:
    """What a memory holds, against the video it was written from:
    enrichment        share of its tokens that show an activity / that share over all the video's tokens
    top_cell_share    the largest share of its tokens at one grid cell (1/grid^2 when spread evenly)
    duplicate_share   share of its tokens that repeat another (same frame and patch)"""
    ann, m = video.annotations, memory.size
    times = memory.times.numpy().astype(np.float64)
    pos = (memory.rows * grid + memory.cols).numpy()
    uniq, inverse = np.unique(times.round(3), return_inverse=True)
    held = token_relevance(ann, uniq, grid)[inverse, pos].mean()
    every = token_relevance(ann, np.arange(math.ceil(video.duration * fps)) / fps, grid).mean()
    keys = np.unique(inverse * grid * grid + pos)
    return {"enrichment": float(held / every) if every > 0 else float("nan"),
            "top_cell_share": float(np.bincount(pos, minlength=grid * grid).max() / m),
            "duplicate_share": float(1 - len(keys) / m)}  # fmt: skip
