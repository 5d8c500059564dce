"""What a training step reads, row by row, from cached backbone tokens: each row's training clip, its memory
(the sampler writing the clip into the video's memory bank, or the video's full-scan memory) and the decoder
inputs and targets of its queries.

Randomness is drawn per row: `RowRandom(seed, step)` gives every (video, query) its own generators, so a row
draws the same clip, bank initialisation, token dropout, Gumbel noise and query-window phase whatever rows
share its batch and whichever rank holds it (N ranks then reproduce 1 rank). Dropout inside the model's
layers still comes from torch's global generator (the `tiny` preset has none).

Letters: b rows, m memory, k clip tokens, p tokens per frame, c backbone channels, l time queries.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from tqdm import tqdm

from longvmnet.data.features import FeatureCache, VideoFeatures
from longvmnet.data.rest import (
    ReSTData,
    VideoItem,
    frames_in,
    gt_span,
    multi_hot,
    query_grid,
    query_token_targets,
    targets,
    token_relevance,
)
from longvmnet.model import LongVMNet, MemoryTensors

Row = tuple[VideoItem, dict]  # (video, query): at most one query per video in an end-to-end batch


class RowRandom:
    """Generators keyed by (seed, step, *key), the same in every process (no salted `hash`)."""

    def __init__(self, seed: int, step: int):
        self.prefix = f"{seed}/{step}"

    def py(self, *key) -> random.Random:
        return random.Random("/".join([self.prefix, *map(str, key)]))

    def seed(self, *key) -> int:
        return self.py(*key).getrandbits(63)

    def generator(self, *key) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed(*key))


def clip_start(
    rng: random.Random, q: dict, video: VideoItem, times: np.ndarray, t_len: int, focus: float
) -> int:
    """First frame index of the query's training clip (T frames at the memory fps)."""
    lo, hi = q["start"], q["end"]
    if rng.random() < focus:
        if q["type"] == "activity":
            segs = [s for s in video.annotations["segments"]
                    if s["object"] == q["object"] and s["end"] > lo and s["start"] < hi]  # fmt: skip
            s = rng.choice(segs) if segs else {"start": lo, "end": hi}
            a, b = max(lo, s["start"]), min(hi, s["end"])
        else:
            a, b = gt_span(q)
        centre = rng.uniform(a, b)
    else:
        centre = rng.uniform(lo, hi)
    f_lo, f_hi = frames_in(times, lo, hi)
    f0 = int(np.searchsorted(times, centre)) - t_len // 2
    return int(np.clip(f0, f_lo, max(f_lo, f_hi - t_len)))


class TrainInputs:
    """Cached tokens, crops and token relevance of the training videos, and the step's tensors built from them.

    `cfg` is the TrainConfig (clip_focus, token_dropout, train_queries, sampler_aux are read)."""

    def __init__(self, model: LongVMNet, data: ReSTData, cache: FeatureCache, cfg):
        self.model, self.data, self.cache, self.cfg = model, data, cache, cfg
        self.feats: dict[str, VideoFeatures] = {}
        self.crops: dict[str, torch.Tensor] = {}
        self.relevance: dict[str, np.ndarray] = {}  # video -> (frames, p) tokens that show an activity

    def prepare(self, videos: list[VideoItem], progress: bool = True) -> None:
        for v in tqdm(videos, desc="caching features", disable=not progress):
            self.feats[v.id] = self.cache.video(v.path)
            self.relevance[v.id] = token_relevance(
                v.annotations, np.asarray(self.feats[v.id].times), self.model.config.grid
            )
            for q in v.queries:
                if "crop" in q and q["crop"] not in self.crops:
                    self.crops[q["crop"]] = torch.from_numpy(
                        self.cache.crop(self.data.path(q["crop"])).astype(np.float32)
                    )

    # ------------------------------------------------------------------ tokens
    def raw(self, vid: str, frame_idx: np.ndarray, pos: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached backbone tokens (n, c) at (frame, patch) pairs, and their frames' times (n,)."""
        f = self.feats[vid]
        raw = torch.from_numpy(np.asarray(f.tokens[frame_idx, pos], dtype=np.float32))
        return raw, torch.from_numpy(f.times[frame_idx]).float()

    def tokens(self, raw: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Projected tokens; in training, token channels dropped with the row's generator (stands in for
        frame augmentations on cached tokens)."""
        p = self.cfg.token_dropout
        if self.model.training and p > 0:
            raw = raw * (torch.rand(raw.shape, generator=gen) >= p) / (1 - p)
        return self.model.project(raw)

    def _stack(self, rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> MemoryTensors:
        """(tokens, times, patch positions) per row -> tokens (b, n, d), times, rows, cols (b, n)."""
        g = self.model.config.grid
        pos = torch.stack([r[2] for r in rows])
        return {"tokens": torch.stack([r[0] for r in rows]), "times": torch.stack([r[1] for r in rows]),
                "rows": pos // g, "cols": pos % g}  # fmt: skip

    # ------------------------------------------------------------------ memories
    def clips(self, rows: list[Row], rand: RowRandom) -> tuple[MemoryTensors, list[np.ndarray]]:
        """Each row's training clip (T frames near its query's answer, `clip_focus`): tokens with provenance,
        and the clip tokens' frame indices."""
        c = self.model.config
        p, t_len = c.tokens_per_frame, c.clip_len
        parts, frames = [], []
        for video, q in rows:
            times = self.feats[video.id].times
            f0 = clip_start(rand.py(video.id, q["id"], "clip"), q, video, times, t_len, self.cfg.clip_focus)
            cf = np.minimum(np.arange(f0, f0 + t_len), len(times) - 1).repeat(p)
            cpos = np.tile(np.arange(p), t_len)
            raw, t = self.raw(video.id, cf, cpos)
            parts.append(
                (self.tokens(raw, rand.generator(video.id, q["id"], "clip")), t, torch.from_numpy(cpos))
            )
            frames.append(cf)
        return self._stack(parts), frames

    def sampled_memory(self, rows: list[Row], bank: dict, clip: MemoryTensors, clip_f: list[np.ndarray],
                       rand: RowRandom) -> tuple[MemoryTensors, torch.Tensor | None]:  # fmt: skip
        """End to end: the sampler writes each row's clip into its video's memory bank (initialised with random
        tokens of the video), one row at a time under the row's seed (its Gumbel noise). Updates `bank`.
        -> memory (with the relaxed top-k's gradient, plus "scores" (b, m + k)), the sampler's auxiliary loss"""
        model, c = self.model, self.model.config
        p, m, g = c.tokens_per_frame, c.memory_size, c.grid
        outs, relevant = [], []
        cuda = [model.device.index or 0] if model.device.type == "cuda" else []
        for i, (video, q) in enumerate(rows):
            if video.id not in bank:  # memory initialised with randomly sampled video tokens
                rng, n = rand.py(video.id, "bank"), len(self.feats[video.id].times)
                bank[video.id] = (np.array([rng.randrange(n) for _ in range(m)]),
                                  np.array([rng.randrange(p) for _ in range(m)]))  # fmt: skip
            f, pos = bank[video.id]
            raw, t = self.raw(video.id, f, pos)
            mem = self._stack([(self.tokens(raw, rand.generator(video.id, q["id"], "memory")), t,
                                torch.from_numpy(pos))])  # fmt: skip
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(rand.seed(video.id, q["id"], "write"))
                out = model.write_memory(mem, {k: v[i : i + 1] for k, v in clip.items()})
            idx = out["idx"][0].cpu().numpy()
            cand_f = np.concatenate([f, clip_f[i]])
            cand_p = np.concatenate([pos, (clip["rows"][i] * g + clip["cols"][i]).numpy()])
            relevant.append(torch.from_numpy(self.relevance[video.id][cand_f, cand_p]))
            bank[video.id] = (cand_f[idx], cand_p[idx])
            outs.append(out)
        memory = {k: torch.cat([o[k] for o in outs]) for k in ("tokens", "times", "rows", "cols", "scores")}
        aux = None
        if self.cfg.sampler_aux > 0 and c.selection == "neural":  # the sampler scores activity tokens higher
            aux = torch.nn.functional.binary_cross_entropy_with_logits(
                memory["scores"], torch.stack(relevant).float().to(memory["scores"].device)
            )
        return memory, aux

    def scanned_memory(self, rows: list[Row], scans: dict, rand: RowRandom) -> MemoryTensors:
        """The decoder phase: each row's video's full-scan memory (`Trainer.rescan`), re-projected."""
        parts = []
        for video, q in rows:
            f, pos = scans[video.id]
            raw, t = self.raw(video.id, f, pos)
            parts.append(
                (self.tokens(raw, rand.generator(video.id, q["id"], "memory")), t, torch.from_numpy(pos))
            )
        return self._stack(parts)

    # ------------------------------------------------------------------ queries
    def query_rows(self, kind: str, group: list[tuple[int, dict]], rows: list[Row], spans, prov,
                   rand: RowRandom) -> list[dict]:  # fmt: skip
        """The decoder inputs and targets of each (row, query) of one kind, unpadded: "row", "grid" (l,),
        "tgt", and "crop", "activity", "tokens" as the kind and config need them. Queries without a target
        (the baseline's clip misses the answer) are left out. `prov` holds each row's memory token provenance
        (frames, patches), for the pointer's target; `spans` the baseline's clip spans (None: whole windows)."""
        c, acts = self.model.config, self.data.activities
        fps = c.object_fps if kind == "object" else c.query_fps
        out = []
        for i, q in group:
            video = rows[i][0]
            lo, hi = (
                (q["start"], q["end"])
                if spans is None
                else (max(q["start"], spans[i][0]), min(q["end"], spans[i][1]))
            )
            grid = query_grid(q, c, start=lo, end=max(hi, lo + 1.0 / fps))
            if kind != "activity" and spans is None and len(grid) > self.cfg.train_queries:
                step, n = len(grid) / self.cfg.train_queries, self.cfg.train_queries
                phase = rand.py(video.id, q["id"], "grid").uniform(0, step)  # float sums can reach len(grid)
                grid = grid[(phase + step * torch.arange(n)).long().clamp(max=len(grid) - 1)]
            tgt = self.clip_targets(q, grid, fps, video) if spans is not None else targets(q, grid, acts, fps)
            if tgt is None:
                continue
            item = {"row": i, "grid": grid, "tgt": tgt}
            if kind in ("activity", "time"):
                item["crop"] = self.crops[q["crop"]]
            if kind in ("object", "time"):
                item["activity"] = acts.index(q["activity"])
            if c.pointer and (kind != "activity" or self.cfg.activity_pointer):
                f, pos = prov[i]
                item["tokens"] = torch.from_numpy(
                    query_token_targets(video.annotations, q, self.feats[video.id].times[f], pos, c.grid)
                )
            out.append(item)
        return out

    def collate(self, items: list[dict], length: int):
        """`query_rows` items -> batch rows (b,), decoder times (b, l), mask (b, l), object tokens (b, p, d)
        or None, activities (b,) or None, targets (padded to l, on the model's device). `length` >= the
        longest grid: every rank pads to the global batch's longest, as one process would."""
        grids = [x["grid"] for x in items]
        times = torch.stack(
            [torch.nn.functional.pad(g, (0, length - len(g)), value=float(g[-1])) for g in grids]
        )
        mask = torch.stack([torch.arange(length) < len(g) for g in grids])
        tgt = {}
        for key in items[0]["tgt"]:
            vals = [x["tgt"][key] for x in items]
            if vals[0].ndim >= 1 and key != "activity":
                vals = [
                    torch.nn.functional.pad(v, (0, 0) * (v.ndim - 1) + (0, length - v.shape[0])) for v in vals
                ]
            tgt[key] = torch.stack(vals)
        tgt["mask"] = mask
        if "tokens" in items[0]:
            tgt["tokens"] = torch.stack([x["tokens"] for x in items])
        obj = self.model.project(torch.stack([x["crop"] for x in items])) if "crop" in items[0] else None
        act = torch.tensor([x["activity"] for x in items]) if "activity" in items[0] else None
        tgt = {k: v.to(self.model.device) for k, v in tgt.items()}
        return torch.tensor([x["row"] for x in items]), times, mask, obj, act, tgt

    def clip_targets(self, q: dict, grid: torch.Tensor, fps: float, video: VideoItem):
        """The per-query baseline sees one clip: targets restricted to the clip's time span."""
        lo, hi = float(grid[0]), float(grid[-1]) + 1.0 / fps
        if q["type"] == "activity":
            labels = {s["activity"] for s in video.annotations["segments"]
                      if s["object"] == q["object"] and s["end"] > max(lo, q["start"]) and s["start"] < min(hi, q["end"])}  # fmt: skip
            return {"activity": multi_hot(labels, self.data.activities)}
        if q["type"] == "object":
            return targets(q, grid, self.data.activities, fps)
        a, b = gt_span(q)
        if not (lo <= a and b <= hi + 1e-6):
            return None  # start or end outside this clip: no cross-entropy target
        return targets(q, grid, self.data.activities, fps)
