"""Two-stage inference: stage 1 scans a video once into a memory; stage 2 answers queries from it alone."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from longvmnet.memory import Memory, MemoryMeta
from longvmnet.model import KINDS, MemoryTensors
from longvmnet.model.reader import span_features
from longvmnet.model.runs import best_runs
from longvmnet.queries import (
    ActivityAnswer,
    ActivityQuery,
    Answer,
    ObjectAnswer,
    ObjectQuery,
    Query,
    QueryError,
    TimeAnswer,
    TimeQuery,
    collate,
    decode,
    time_grid,
    validate,
)
from longvmnet.video import DecodeReport, FrameReader, NoFramesError, VideoLimits, iter_clips, probe

Progress = Callable[[int, int], None]  # (frames scanned, frames in total)
MAX_CROP_PIXELS = 4096 * 4096
# decoder time queries per second, where fewer than the answer's, and at most READ_MAX of them per query,
# evenly spaced (read_grid; activity queries: the config's activity_max_queries). Time answers gained from
# reading long windows densely: 512 reads (two of the decoder's 256-query chunks, no padding) answered three
# sets of unseen videos as well as 600 or better; object answers lost a few past 120 (README, Speed)
READ_FPS = {"object": 0.5, "time": 0.5}
READ_MAX = {"object": 120, "time": 512}
# Object and time answers with the segment reader (`rerank`): the best RERANK_RUNS disjoint runs, at least
# RERANK_GAP_S apart, weighed by RERANK_WEIGHT x the reader's logit of the query's activity. Of 3 or 5 runs
# and weights 0.2, 0.5 and 1, these read unseen videos' object and time queries best together (README).
RERANK_RUNS, RERANK_GAP_S, RERANK_WEIGHT = 3, 5.0, 0.2


# ---------------------------------------------------------------------- stage 1
def clip_tensors(model, tokens: torch.Tensor, times: torch.Tensor) -> MemoryTensors:
    """Projected tokens (t, p, d) of frames at times (t,) -> clip tokens with provenance, batch of 1."""
    t, p, d = tokens.shape
    rows, cols = model.grid_positions(t)
    return {
        "tokens": tokens.reshape(1, t * p, d),
        "times": times.float().to(model.device).repeat_interleave(p)[None],
        "rows": rows[None],
        "cols": cols[None],
    }


def empty_memory(model, batch: int = 1) -> MemoryTensors:
    d, dev = model.config.d_model, model.device
    return {
        "tokens": torch.zeros(batch, 0, d, device=dev),
        "times": torch.zeros(batch, 0, device=dev),
        "rows": torch.zeros(batch, 0, dtype=torch.long, device=dev),
        "cols": torch.zeros(batch, 0, dtype=torch.long, device=dev),
    }


def write_clip(model, memory: MemoryTensors, clip: MemoryTensors) -> MemoryTensors:
    """One sampler step of stage 1: keep the best m of the memory + clip tokens, or all of them while there
    are fewer (a video shorter than m tokens' worth gets a smaller memory, each token once)."""
    m = min(model.config.memory_size, memory["tokens"].shape[1] + clip["tokens"].shape[1])
    out = model.write_memory(memory, clip, noise=False, size=m)
    return {k: out[k] for k in ("tokens", "times", "rows", "cols")}


def scan(model, clips: Iterable[tuple[torch.Tensor, torch.Tensor]], duration_s: float,
         progress: Progress | None = None) -> tuple[MemoryTensors, int]:  # fmt: skip
    """The memory-writing loop over (times (t,), projected tokens (t, p, d)) clips. -> memory, frames seen.

    selection "neural"/"random": the sampler (or random scores) keeps m tokens after every clip.
    selection "uniform": the same budget spent on whole frames evenly spaced over the video.
    """
    c = model.config
    total = max(1, int(np.ceil(duration_s * c.memory_fps)))
    memory, seen = empty_memory(model), 0
    targets = (np.arange(c.memory_frames) + 0.5) * max(duration_s, 1e-3) / c.memory_frames
    kept: dict[int, tuple[float, float, torch.Tensor]] = {}  # uniform: target -> (distance, time, tokens)
    for times, tokens in clips:
        if c.selection == "uniform":
            for t, tok in zip(times.tolist(), tokens):
                j = int(np.abs(targets - t).argmin())
                if j not in kept or abs(targets[j] - t) < kept[j][0]:
                    kept[j] = (abs(targets[j] - t), t, tok)
        else:
            memory = write_clip(model, memory, clip_tensors(model, tokens, times))
        seen += len(times)
        if progress is not None:
            progress(min(seen, total), max(total, seen))
    if c.selection == "uniform" and kept:
        frames = [kept[j] for j in sorted(kept)]  # fewer than memory_frames in a short video, each once
        memory = clip_tensors(
            model, torch.stack([f[2] for f in frames]), torch.tensor([f[1] for f in frames])
        )
    return memory, seen


def to_memory(memory: MemoryTensors, meta: MemoryMeta) -> Memory:
    return Memory(
        memory["tokens"][0].float().cpu(),
        memory["times"][0].float().cpu(),
        memory["rows"][0].long().cpu(),
        memory["cols"][0].long().cpu(),
        meta,
    )


@torch.inference_mode()
def build_memory(
    model,
    video: str | os.PathLike,
    *,
    limits: VideoLimits = VideoLimits(),
    progress: Progress | None = None,
    isolate: bool = True,
) -> Memory:
    """Stage 1: one pass over the video in non-overlapping clips of T frames; the sampler writes the memory.

    With `isolate` the video is decoded in a child process (a crashing decoder cannot take the caller down,
    and decoding overlaps the model's work).
    """
    model.eval()
    c = model.config
    size = (c.image_size, c.image_size)
    start = time.perf_counter()
    report = DecodeReport()
    if isolate:
        reader = FrameReader(video, c.memory_fps, c.clip_len, size, limits=limits)
        info, clips = reader.info, reader
    else:
        reader, info = None, probe(video, limits)
        clips = iter_clips(video, c.memory_fps, c.clip_len, size, limits=limits, report=report)
    try:
        stream = ((torch.from_numpy(k.times), model.embed_frames(torch.from_numpy(k.frames))) for k in clips)
        memory, seen = scan(model, stream, info.duration_s, progress)
    finally:
        if reader is not None:
            reader.close()
            report = reader.report
    if seen == 0:
        raise NoFramesError(f"No frame of {Path(video).name} could be decoded; the file may be damaged.")
    meta = MemoryMeta(
        video=Path(video).name,
        fingerprint=info.fingerprint,
        fps=c.memory_fps,
        duration_s=float(info.duration_s),
        frames_seen=seen,
        checkpoint=model.fingerprint(),
        build_s=time.perf_counter() - start,
        skipped_packets=report.skipped_packets,
    )
    return to_memory(memory, meta)


# ---------------------------------------------------------------------- stage 2
def load_crop(path: str | os.PathLike, *, max_pixels: int = MAX_CROP_PIXELS) -> np.ndarray:
    """An object crop image from disk, opened with explicit formats and a pixel limit. -> (h, w, 3) uint8"""
    name = Path(path).name
    if not Path(path).is_file():
        raise QueryError(f"The crop image {name} does not exist.")
    try:
        with Image.open(path, formats=["PNG", "JPEG", "WEBP", "BMP"]) as im:
            if im.width * im.height > max_pixels:
                raise QueryError(
                    f"The crop image {name} is {im.width}x{im.height} pixels, over the limit; use a smaller crop."
                )
            return np.asarray(im.convert("RGB"))
    except QueryError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise QueryError(
            f"{name} is not a readable PNG, JPEG, WebP or BMP image; upload an image of the object."
        ) from e


def crop_images(model, crops: Sequence[np.ndarray]) -> torch.Tensor:
    """Object crops of any size -> (b, s, s, 3) uint8, resized to the backbone's input side s."""
    s = model.config.image_size
    return torch.from_numpy(
        np.stack([np.array(Image.fromarray(c).resize((s, s), Image.BILINEAR)) for c in crops])
    )


def _crop_key(crop: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(crop).tobytes() + repr(crop.shape).encode()).hexdigest()


def crop_tokens(model, crops: Sequence[np.ndarray]) -> torch.Tensor:
    """Object crops of any size -> (b, p, d) tokens from the same frozen backbone. A crop that appears
    several times in the batch (one object asked about in many queries) goes through the backbone once."""
    keys = [_crop_key(c) for c in crops]
    first: dict[str, int] = {}  # each distinct crop's first place, in the order of the batch
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    unique = list(first)
    tokens = model.embed_frames(crop_images(model, [crops[first[k]] for k in unique]))
    if len(unique) == len(keys):
        return tokens
    row = {k: j for j, k in enumerate(unique)}
    return tokens[torch.tensor([row[k] for k in keys])]


class CropTokens:
    """`crop_tokens` that remembers the last `size` crops, keyed by their pixels. An app asks about one crop
    again and again (other ranges, other activities), and its backbone pass is most of an activity or time
    query's time. Thread-safe. `cache(crops)` -> (b, p, d)"""

    def __init__(self, model, size: int = 32) -> None:
        self.model, self.size = model, size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    @torch.inference_mode()
    def __call__(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        out = []
        for crop in crops:
            key = _crop_key(crop)
            with self._lock:
                tokens = self._cache.get(key)
                if tokens is not None:
                    self._cache.move_to_end(key)
            if tokens is None:
                tokens = crop_tokens(self.model, [crop])[0]
                with self._lock:
                    self._cache[key] = tokens
                    while len(self._cache) > self.size:
                        self._cache.popitem(last=False)
            out.append(tokens)
        return torch.stack(out)


def _batches(todo: list[tuple[int, int]], batch_size: int, max_time_queries: int) -> list[list[int]]:
    """(grid length, query index) pairs sorted by length -> index batches of similar lengths, at most
    `batch_size` queries and `max_time_queries` padded time queries (batch x longest grid) each."""
    batches: list[list[int]] = []
    for n, i in todo:
        if not batches or len(batches[-1]) == batch_size or (len(batches[-1]) + 1) * n > max_time_queries:
            batches.append([])
        batches[-1].append(i)
    return batches


def read_grid(model, kind: str) -> tuple[float, float, int]:
    """(answer fps, decoder fps, most decoder time queries) of a query kind. Object answers give a box per
    frame at `object_fps` and time answers a score per second (`query_fps`), but the decoder reads the memory
    at `READ_FPS[kind]`, at most `READ_MAX[kind]` times over a long window, and the values in between are
    interpolated: the memory holds a few frames' worth of tokens, and reading it more often cost more for
    the same answers (README, Speed)."""
    c = model.config
    fps = c.object_fps if kind == "object" else c.query_fps
    most = c.activity_max_queries if kind == "activity" else READ_MAX.get(kind, 0)
    return fps, min(fps, READ_FPS.get(kind, fps)), most


PER_TIME = ("boxes", "presence_logits", "start_logits", "end_logits", "inside_logits")


def _interpolate(out: dict[str, torch.Tensor], coarse: dict, fine: dict) -> dict[str, torch.Tensor]:
    """Per-time outputs (b, l) or (b, l, k) on the coarse grid -> on the fine one, linear in time (held at
    the ends)."""
    b, length = fine["times"].shape
    new = dict(out)
    for key in (k for k in PER_TIME if k in out):
        y = out[key].double().cpu().numpy()
        z = np.zeros((b, length, *y.shape[2:]))
        for i in range(b):
            n = int(coarse["mask"][i].sum())
            x, at = coarse["times"][i, :n].double().numpy(), fine["times"][i].double().numpy()
            for j in np.ndindex(*y.shape[2:]):
                z[(i, slice(None), *j)] = np.interp(at, x, y[(i, slice(None, n), *j)])
        new[key] = torch.from_numpy(z).float()
    return new


def _encoder_key(query: Query) -> tuple[str, str]:
    """What a query's encoder input depends on: its crop's pixels and its activity (not its range)."""
    crop = getattr(query, "crop", None)
    return (_crop_key(crop) if crop is not None else "", getattr(query, "activity", ""))


class Encoded(NamedTuple):
    """Encoder outputs shared by queries: outputs (u, n, d), each query's row (q,), and each row's crop as its
    tokens' mean (u, d) (activity and time queries; None otherwise)."""

    outputs: torch.Tensor
    rows: torch.Tensor
    crops: torch.Tensor | None


def encode_queries(model, memory: MemoryTensors, kind: str, queries: Sequence[Query],
                   crops: Callable | None = None, batch_size: int = 8) -> Encoded:  # fmt: skip
    """The encoder outputs of queries of one kind over a memory batched once (b = 1), each distinct input
    (crop and activity) encoded once, `batch_size` at a time."""
    c = model.config
    keys = [_encoder_key(q) for q in queries]
    rows = {k: j for j, k in enumerate(dict.fromkeys(keys))}
    distinct = [queries[keys.index(k)] for k in rows]
    parts, means = [], []
    for at in range(0, len(distinct), batch_size):
        part = distinct[at : at + batch_size]
        obj = act = None
        if kind in ("activity", "time"):
            obj = (crops or (lambda images: crop_tokens(model, images)))([q.crop for q in part])
            means.append(obj.mean(1))
        if kind in ("object", "time"):
            act = torch.tensor([c.activities.index(q.activity) for q in part])
        mem = {k: v.expand(len(part), *v.shape[1:]) for k, v in memory.items()}
        parts.append(model.encode(mem, object_tokens=obj, activity=act))
    return Encoded(
        torch.cat(parts), torch.tensor([rows[k] for k in keys]), torch.cat(means) if means else None
    )


def answer_batch(model, memory: MemoryTensors, kind: str, batch: Sequence[Query], crops: Callable | None = None,
                 encoded: Encoded | None = None) -> tuple[list[Answer], dict[str, torch.Tensor]]:  # fmt: skip
    """Stage 2 for a batch of queries of one kind from a memory batched once (b = 1). -> answers, and the
    model's outputs (`token_logits` among them when the model has a pointer). `crops` maps crop images to
    their tokens (default `crop_tokens`; an `inference.CropTokens` cache). `encoded`: the batch's encoder
    outputs from `encode_queries` (else they are computed here)."""
    c = model.config
    if kind not in KINDS:
        raise ValueError(f"Unknown query kind {kind!r}; use one of {', '.join(KINDS)}.")
    enc, rows, crop = encoded if encoded is not None else encode_queries(model, memory, kind, batch, crops)
    fps, read_fps, max_len = read_grid(model, kind)
    grid = collate(list(batch), read_fps, max_len)
    mem = {k: v.expand(len(batch), *v.shape[1:]) for k, v in memory.items()}
    out = model.read(
        enc[rows], mem, kind, grid["times"], grid["mask"], crop=None if crop is None else crop[rows]
    )
    if read_fps != fps:
        fine = collate(list(batch), fps)
        out, grid = _interpolate(out, grid, fine), fine
    runs = rerank(model, memory, kind, batch, out, grid, fps)
    return decode(kind, out, grid["times"], grid["mask"], c.activities, fps, runs), out


def rerank(model, memory: MemoryTensors, kind: str, batch: Sequence[Query], out: dict[str, torch.Tensor],
           grid: dict[str, torch.Tensor], fps: float) -> list[tuple[int, int] | None] | None:  # fmt: skip
    """The run of time queries each object or time answer gives, when the model has the segment reader
    (`config.window_reader`; else None: the best run). The best `RERANK_RUNS` disjoint runs of the per-time
    logits (presence, inside) are the candidates; each scores its sum of logits over the first run's, plus
    `RERANK_WEIGHT` x the segment reader's logit of the query's activity over the run's memory frames. An
    unfit reader reads zeros, so the best run wins."""
    if kind not in ("object", "time") or not model.config.window_reader:
        return None
    logits = out["presence_logits" if kind == "object" else "inside_logits"].float().cpu()
    tokens, times = memory["tokens"][0], memory["times"][0]
    candidates, spans = [], []
    for i in range(len(batch)):
        n = int(grid["mask"][i].sum())
        runs = best_runs(logits[i, :n], RERANK_RUNS, max(1, round(RERANK_GAP_S * fps)))
        candidates.append(runs)
        spans += [(float(grid["times"][i, a]), float(grid["times"][i, b])) for a, b, _ in runs]
    read = model.segment_reader(span_features(tokens, times, spans).to(model.device)).float().cpu()
    chosen, at = [], 0
    for runs, q in zip(candidates, batch):
        if not runs:
            chosen.append(None)
            continue
        act = read[at : at + len(runs), model.config.activities.index(q.activity)]
        first = max(abs(runs[0][2]), 1e-6)
        score = torch.tensor([total / first for *_, total in runs]) + RERANK_WEIGHT * act
        a, b, _ = runs[int(score.argmax())]
        chosen.append((a, b))
        at += len(runs)
    return chosen


@torch.inference_mode()
def answer(
    model,
    memory: Memory,
    queries: Sequence[Query],
    *,
    batch_size: int = 32,
    max_time_queries: int = 1024,
    max_encoded: int = 64,
) -> list[Answer]:
    """Stage 2: answer queries of any kinds from the memory alone, batched by kind. Order is kept.

    Queries with the same inputs (crop, activity) and other ranges share one encoder pass (`encode_queries`),
    `max_encoded` distinct inputs held at a time. Batches group similar window lengths and hold at most
    `max_time_queries` padded decoder time queries: on a CPU, larger batches of long windows ran slower than
    single queries (activations leave the cache). 1024 (8 activity or object queries of 120 reads, 2 time
    queries of 512) answered 11% more queries per second than 4096 on two fresh videos (README, Speed).
    """
    if model.training:  # eval() walks every module: a few ms per call, a tenth of a short query
        model.eval()
    for q in queries:
        validate(q, duration_s=memory.meta.duration_s, activities=model.config.activities)
    mem1 = {k: v.to(model.device) for k, v in memory.batched().items()}
    results: list[Answer | None] = [None] * len(queries)
    for kind in KINDS:
        _, read_fps, max_len = read_grid(model, kind)
        of_kind = [i for i, q in enumerate(queries) if q.kind == kind]
        key = {i: _encoder_key(queries[i]) for i in of_kind}
        distinct = list(dict.fromkeys(key.values()))
        for at in range(0, len(distinct), max_encoded):
            group = set(distinct[at : at + max_encoded])
            members = [i for i in of_kind if key[i] in group]
            shared = encode_queries(model, mem1, kind, [queries[i] for i in members])
            row = dict(zip(members, shared.rows.tolist()))
            todo = sorted(
                (len(time_grid(queries[i].start, queries[i].end, read_fps, max_len)), i) for i in members
            )
            for idx in _batches(todo, batch_size, max_time_queries):
                batch = [queries[i] for i in idx]
                encoded = shared._replace(rows=torch.tensor([row[i] for i in idx]))
                for i, a in zip(idx, answer_batch(model, mem1, kind, batch, encoded=encoded)[0]):
                    results[i] = a
    return results  # type: ignore[return-value]


def ask_activity(model, memory: Memory, crop: np.ndarray, start: float, end: float) -> ActivityAnswer:
    return answer(model, memory, [ActivityQuery(crop, start, end)])[0]


def ask_object(model, memory: Memory, activity: str, start: float, end: float) -> ObjectAnswer:
    return answer(model, memory, [ObjectQuery(activity, start, end)])[0]


def ask_time(model, memory: Memory, activity: str, crop: np.ndarray, start: float, end: float) -> TimeAnswer:
    return answer(model, memory, [TimeQuery(activity, crop, start, end)])[0]
