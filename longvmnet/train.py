"""Training: one memory per video written by the sampler as training walks that video's queries.

The paper's recipe (NOTES §1): frozen backbone; batches never hold two queries of one video; memory reset
every epoch; the online continual loss over the last p queries of the video; Gumbel temperature annealed
1.5 -> 1.0; separate learning rates for the sampler and the rest; dropout. Backbone tokens come from the
feature cache, so the memory is kept as provenance (frame index, token position) and re-projected each step.
Frame-level augmentations cannot apply to cached tokens; token dropout stands in for them. Ours, beside the
paper's end-to-end gradient: an auxiliary target on the sampler's scores (`sampler_aux`), the tokens whose
frame lies in an activity segment and whose patch shows its object or the hand (`rest.token_relevance`).
The decoder phase (`method="decoder"`, ours) follows: the sampler frozen, every query is answered from a
memory built by a full scan of its video, as at inference, rather than right after its clip was written.
The learning rate warms up linearly, then decays on a cosine; with `val_every` the val split is scored every
so many steps (memories built on cached tokens, as stage 1 builds them) and the best model is the one saved;
`loss_curves.png` plots the loss terms and the validation score.

Letters: b batch (videos), m memory, k clip tokens, p tokens per frame, c backbone channels.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from longvmnet.data.features import FeatureCache, VideoFeatures
from longvmnet.data.rest import (
    ReSTData,
    VideoItem,
    frames_in,
    gt_span,
    query_grid,
    query_token_targets,
    targets,
    token_relevance,
    video_batches,
)
from longvmnet.ladder import memory_from_cache
from longvmnet.losses import Criterion
from longvmnet.model import LongVMNet


@dataclass
class TrainConfig:
    epochs: int = 4
    batch_size: int = 6  # videos per step; never two queries of one video
    lr_sampler: float = 1e-3  # the neural sampler
    lr: float = 5e-4  # everything else that trains (the backbone is frozen)
    weight_decay: float = 1e-4
    continual: int = 2  # p: past queries of the video re-answered from the new memory (0 = off)
    temp_start: float = 1.5  # Gumbel top-k temperature, annealed linearly
    temp_end: float = 1.0
    clip_focus: float = 0.75  # probability that a query's training clip overlaps its answer
    # decoder time queries per object or time query in training: its window's grid, evenly subsampled to at most
    # this many with a random phase (one decoder chunk), so that long windows cost no more than short ones
    train_queries: int = 256
    token_dropout: float = 0.1  # drop backbone token channels (stands in for frame augmentations)
    sampler_aux: float = 1.0  # weight of the sampler's target: keep tokens showing activities (0 = off)
    scan_every: int = 100  # decoder phase: steps between rescans of the videos (the projection trains)
    # "longvmnet": end to end (the paper); "decoder": the sampler frozen, every query answered from its video's
    # full-scan memory as at inference (rescanned every `scan_every` steps), `batch_size` queries of any videos
    # per step (ours); "baseline": no memory, the query's own clip only
    method: str = "longvmnet"
    max_steps: int = 0  # stop early after this many steps in total (0: all epochs)
    warmup: int = 50  # steps of linear learning-rate warm-up, then a cosine decay to `lr_floor` x the rate
    lr_floor: float = 0.1
    val_every: int = 0  # steps between validations on the val split (0: none); the best model is kept
    save_every: int = 50  # steps between resumable states
    seed: int = 0


def _rng_clip(rng: random.Random, q: dict, video: VideoItem, times: np.ndarray, t_len: int, focus: float):
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


class Trainer:
    def __init__(self, model: LongVMNet, data: ReSTData, cache: FeatureCache, cfg: TrainConfig, out: Path):
        self.model, self.data, self.cache, self.cfg, self.out = model, data, cache, cfg, Path(out)
        self.videos = [v for v in data.split("train") if v.queries]
        if not self.videos:
            raise ValueError("The benchmark has no training queries.")
        self.crit = Criterion()
        sampler_params = list(model.sampler.parameters())
        ids = {id(p) for p in sampler_params}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": rest, "lr": cfg.lr}]
        if cfg.method != "decoder":  # the decoder phase keeps the sampler as it is
            groups.insert(0, {"params": sampler_params, "lr": cfg.lr_sampler})
        self.opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.log: list[dict] = []
        self.val_log: list[dict] = []  # {"step", "score", "table"} per validation
        self.best: tuple[float, dict] | None = None  # (validation score, model state) of the best so far
        self.feats: dict[str, VideoFeatures] = {}
        self.crops: dict[str, torch.Tensor] = {}
        self.relevance: dict[str, np.ndarray] = {}  # video -> (frames, p) tokens that show an activity
        self.scans: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # video -> full-scan memory (frames, pos)
        self.scanned_at = -1  # step of the last rescan

    # ------------------------------------------------------------------ data
    def prepare(self, progress: bool = True) -> None:
        for v in tqdm(self.videos, desc="caching features", disable=not progress):
            self.feats[v.id] = self.cache.video(v.path)
            self.relevance[v.id] = token_relevance(
                v.annotations, np.asarray(self.feats[v.id].times), self.model.config.grid
            )
            for q in v.queries:
                if "crop" in q and q["crop"] not in self.crops:
                    self.crops[q["crop"]] = torch.from_numpy(
                        self.cache.crop(self.data.path(q["crop"])).astype(np.float32)
                    )

    def rescan(self, progress: bool = False) -> None:
        """Stage 1 over every training video with the current model (as at inference): memory provenance."""
        was_training = self.model.training
        g = self.model.config.grid
        self.model.eval()
        for v in tqdm(self.videos, desc="scanning memories", disable=not progress, leave=False):
            mem = memory_from_cache(self.model, self.cache, v)
            times = self.feats[v.id].times
            frames = np.clip(np.searchsorted(times, mem.times.numpy() - 1e-3), 0, len(times) - 1)
            self.scans[v.id] = (frames, (mem.rows * g + mem.cols).numpy())
        self.scanned_at = self.step
        self.model._fingerprint = None  # hashed by the scan; the weights change with the next step
        self.model.train(was_training)

    def batches(self, rng: random.Random) -> list[list[tuple[VideoItem, dict]]]:
        """One epoch: at most one query per video in a batch (end to end), or shuffled queries of any videos
        (the decoder phase, whose memories stay fixed between rescans)."""
        if self.cfg.method != "decoder":
            return list(video_batches(self.videos, self.cfg.batch_size, rng))
        pairs = rng.sample(
            [(v, q) for v in self.videos for q in v.queries], sum(len(v.queries) for v in self.videos)
        )
        return [pairs[i : i + self.cfg.batch_size] for i in range(0, len(pairs), self.cfg.batch_size)]

    def steps_per_epoch(self) -> int:
        return len(self.batches(random.Random(0)))

    def _raw(self, vid: str, frame_idx: np.ndarray, pos: np.ndarray):
        f = self.feats[vid]
        raw = torch.from_numpy(np.asarray(f.tokens[frame_idx, pos], dtype=np.float32))
        return raw, torch.from_numpy(f.times[frame_idx]).float()

    def _tokens(self, raw: torch.Tensor) -> torch.Tensor:
        if self.model.training and self.cfg.token_dropout > 0:
            raw = torch.nn.functional.dropout(raw, self.cfg.token_dropout)
        return self.model.project(raw)

    # ------------------------------------------------------------------ one step
    def train_step(
        self, batch: list[tuple[VideoItem, dict]], bank: dict, history: dict, rng: random.Random
    ) -> dict:
        """Write (or fetch) each row's memory, answer the row's query (and, end to end, the video's last
        `continual` queries) from it, and take one optimiser step on the summed losses."""
        cfg, model = self.cfg, self.model
        if cfg.method == "decoder":
            memory, spans, aux = self._scanned_memory(batch), None, None
            prov = [self.scans[video.id] for video, _ in batch]
        else:
            clip, clip_f = self._clips(batch, rng)
            if cfg.method == "baseline":
                memory, spans, aux = clip, [(float(t[0]), float(t[-1]) + 1.0 / model.config.memory_fps)
                                            for t in clip["times"]], None  # fmt: skip
                prov = [(clip_f[i], (clip["rows"][i] * model.config.grid + clip["cols"][i]).numpy())
                        for i in range(len(batch))]  # fmt: skip
            else:
                memory, aux = self._sampled_memory(batch, bank, clip, clip_f, rng)
                spans = None
                prov = [bank[video.id] for video, _ in batch]  # (frames, patches) of each row's memory tokens
        # the current query and the last p queries of each video, all answered from the new memory
        items = []
        for i, (video, q) in enumerate(batch):
            items.append((i, q, True))
            if cfg.method == "longvmnet":
                items += (
                    [(i, old, False) for old in history[video.id][-cfg.continual :]] if cfg.continual else []
                )
        losses, terms_log, n = [], defaultdict(float), 0
        for kind in ("activity", "object", "time"):
            group = [(i, q) for i, q, _ in items if q["type"] == kind]
            if not group:
                continue
            inputs = self._inputs(kind, group, batch, spans, prov)
            if inputs is None:
                continue
            rows, times, mask, obj, act, tgt = inputs
            mem_k = {key: memory[key][rows] for key in ("tokens", "times", "rows", "cols")}
            out = model(mem_k, kind, times, mask, object_tokens=obj, activity=act)
            loss, terms = self.crit(kind, out, tgt)
            losses.append(loss * len(rows))
            n += len(rows)
            for key, v in terms.items():
                terms_log[key] += float(v.detach()) * len(rows)
        if aux is not None:
            terms_log["sampler_aux"] = float(aux.detach()) * max(n, 1)
        if losses or aux is not None:  # the baseline may have no target (its clip misses every answer)
            total = (sum(losses) / n if losses else 0.0) + (cfg.sampler_aux * aux if aux is not None else 0.0)
            self.opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            self.opt.step()
        else:
            total = torch.zeros(())
        for video, q in batch:
            history[video.id].append(q)
            del history[video.id][: -max(cfg.continual, 1)]
        return {
            "loss": float(total.detach()),
            "answered": n,
            **{k: v / max(n, 1) for k, v in terms_log.items()},
        }

    def _clips(self, batch, rng: random.Random) -> tuple[dict, list[np.ndarray]]:
        """Each row's training clip (T frames near its query's answer, `clip_focus`): tokens with provenance,
        and the clip tokens' frame indices."""
        c = self.model.config
        p, t_len, g = c.tokens_per_frame, c.clip_len, c.grid
        raws, ts, positions, frames = [], [], [], []
        for video, q in batch:
            times = self.feats[video.id].times
            f0 = _rng_clip(rng, q, video, times, t_len, self.cfg.clip_focus)
            cf = np.minimum(np.arange(f0, f0 + t_len), len(times) - 1).repeat(p)
            cpos = torch.from_numpy(np.tile(np.arange(p), t_len))
            raw, t = self._raw(video.id, cf, cpos.numpy())
            raws.append(raw), ts.append(t), positions.append(cpos), frames.append(cf)
        pos = torch.stack(positions)
        return {"tokens": self._tokens(torch.stack(raws)), "times": torch.stack(ts), "rows": pos // g,
                "cols": pos % g}, frames  # fmt: skip

    def _sampled_memory(self, batch, bank: dict, clip: dict, clip_f: list, rng: random.Random):
        """End to end: the sampler writes each row's clip into its video's memory bank (initialised with random
        tokens of the video). -> memory (with the relaxed top-k's gradient), the sampler's auxiliary loss"""
        model, c = self.model, self.model.config
        p, m, g = c.tokens_per_frame, c.memory_size, c.grid
        raws, ts, positions, frames = [], [], [], []
        for video, _ in batch:
            times = self.feats[video.id].times
            if video.id not in bank:  # memory initialised with randomly sampled video tokens
                bank[video.id] = (np.array([rng.randrange(len(times)) for _ in range(m)]),
                                  np.array([rng.randrange(p) for _ in range(m)]))  # fmt: skip
            f, pos = bank[video.id]
            raw, t = self._raw(video.id, f, pos)
            raws.append(raw), ts.append(t), positions.append(torch.from_numpy(pos)), frames.append(f)
        pos = torch.stack(positions)
        mem = {"tokens": self._tokens(torch.stack(raws)), "times": torch.stack(ts), "rows": pos // g,
               "cols": pos % g}  # fmt: skip
        memory = model.write_memory(mem, clip)
        idx = memory["idx"].numpy()
        relevant = []
        for i, (video, _) in enumerate(batch):
            cand_f = np.concatenate([frames[i], clip_f[i]])
            cand_p = np.concatenate([bank[video.id][1], (clip["rows"][i] * g + clip["cols"][i]).numpy()])
            relevant.append(torch.from_numpy(self.relevance[video.id][cand_f, cand_p]))
            bank[video.id] = (cand_f[idx[i]], cand_p[idx[i]])
        aux = None
        if self.cfg.sampler_aux > 0 and c.selection == "neural":  # the sampler scores activity tokens higher
            aux = torch.nn.functional.binary_cross_entropy_with_logits(
                memory["scores"], torch.stack(relevant).float()
            )
        return memory, aux

    def _scanned_memory(self, batch) -> dict:
        """The decoder phase: each row's video's full-scan memory (`rescan`), re-projected."""
        g, rows = self.model.config.grid, []
        for video, _ in batch:
            f, pos = self.scans[video.id]
            raw, t = self._raw(video.id, f, pos)
            rows.append((self._tokens(raw), t, torch.from_numpy(pos // g), torch.from_numpy(pos % g)))
        return {
            key: torch.stack([r[k] for r in rows])
            for k, key in enumerate(("tokens", "times", "rows", "cols"))
        }

    def _inputs(self, kind: str, group, batch, spans, prov):
        """Batched decoder times, masks, query inputs and targets for the queries of one kind.
        `prov` holds each batch row's memory token provenance (frames, patches), for the pointer's target."""
        c, acts = self.model.config, self.data.activities
        fps = c.object_fps if kind == "object" else c.query_fps
        rows, grids, tgts, crops, act, tokens = [], [], [], [], [], []
        for i, q in group:
            lo, hi = (
                (q["start"], q["end"])
                if spans is None
                else (max(q["start"], spans[i][0]), min(q["end"], spans[i][1]))
            )
            grid = query_grid(q, c, start=lo, end=max(hi, lo + 1.0 / fps))
            if kind != "activity" and spans is None and len(grid) > self.cfg.train_queries:
                step = len(grid) / self.cfg.train_queries
                grid = grid[(random.uniform(0, step) + step * torch.arange(self.cfg.train_queries)).long()]
            tgt = (
                self._clip_targets(q, grid, fps, batch[i][0])
                if spans is not None
                else targets(q, grid, acts, fps)
            )
            if tgt is None:
                continue
            rows.append(i), grids.append(grid), tgts.append(tgt)
            if kind in ("activity", "time"):
                crops.append(self.crops[q["crop"]])
            if kind in ("object", "time"):
                act.append(acts.index(q["activity"]))
            if c.pointer and kind != "activity":
                video, (f, pos) = batch[i][0], prov[i]
                hits = query_token_targets(video.annotations, q, self.feats[video.id].times[f], pos, c.grid)
                tokens.append(torch.from_numpy(hits))
        if not rows:
            return None
        length = max(len(g) for g in grids)
        times = torch.stack(
            [torch.nn.functional.pad(g, (0, length - len(g)), value=float(g[-1])) for g in grids]
        )
        mask = torch.stack([torch.arange(length) < len(g) for g in grids])
        tgt = {}
        for key in tgts[0]:
            vals = [t[key] for t in tgts]
            if vals[0].ndim >= 1 and key != "activity":
                vals = [
                    torch.nn.functional.pad(v, (0, 0) * (v.ndim - 1) + (0, length - v.shape[0])) for v in vals
                ]
            tgt[key] = torch.stack(vals)
        tgt["mask"] = mask
        if tokens:
            tgt["tokens"] = torch.stack(tokens)
        obj = self.model.project(torch.stack(crops)) if crops else None
        return torch.tensor(rows), times, mask, obj, (torch.tensor(act) if act else None), tgt

    def _clip_targets(self, q: dict, grid: torch.Tensor, fps: float, video: VideoItem):
        """The per-query baseline sees one clip: targets restricted to the clip's time span."""
        lo, hi = float(grid[0]), float(grid[-1]) + 1.0 / fps
        if q["type"] == "activity":
            labels = {s["activity"] for s in video.annotations["segments"]
                      if s["object"] == q["object"] and s["end"] > max(lo, q["start"]) and s["start"] < min(hi, q["end"])}  # fmt: skip
            y = torch.zeros(len(self.data.activities))
            for a in labels:
                y[self.data.activities.index(a)] = 1.0
            return {"activity": y}
        if q["type"] == "object":
            return targets(q, grid, self.data.activities, fps)
        a, b = gt_span(q)
        if not (lo <= a and b <= hi + 1e-6):
            return None  # start or end outside this clip: no cross-entropy target
        return targets(q, grid, self.data.activities, fps)

    # ------------------------------------------------------------------ schedule and validation
    def set_lr(self, total: int) -> None:
        """Linear warm-up over `warmup` steps, then cosine decay to `lr_floor` of each group's rate."""
        cfg, step = self.cfg, self.step
        if step < cfg.warmup:
            factor = (step + 1) / cfg.warmup
        else:
            done = (step - cfg.warmup) / max(total - cfg.warmup, 1)
            factor = cfg.lr_floor + (1 - cfg.lr_floor) * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        for group, base in zip(self.opt.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def validate(self) -> None:
        """Score the val split from memories built on cached tokens (as stage 1 does); keep the best model.
        The score is the mean of the table's cells (activity R@1x, object and time, every window)."""
        from longvmnet.evaluate import evaluate

        was_training = self.model.training
        result = evaluate(
            self.model, self.data, "val", method="longvmnet-cached", cache=self.cache, progress=False
        )
        self.model.train(was_training)
        self.model._fingerprint = None  # hashed by the evaluation; the weights change with the next step
        cells = [v for k in ("activity", "object", "time") for v in result["table"].get(k, {}).values()]
        score = float(np.mean(cells)) if cells else 0.0
        self.val_log.append({"step": self.step, "score": score, "table": result["table"]})
        if self.best is None or score > self.best[0]:
            self.best = (score, {k: v.detach().clone() for k, v in self.model.state_dict().items()})

    def has_val(self) -> bool:
        """Validation scores answers from memories; the per-query baseline has none and keeps its last step."""
        return (self.cfg.val_every > 0 and self.cfg.method != "baseline"
                and any(v.queries for v in self.data.split("val")))  # fmt: skip

    # ------------------------------------------------------------------ loop, saving, resuming
    def total_steps(self) -> int:
        per_epoch = self.steps_per_epoch()
        total = per_epoch * self.cfg.epochs
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def save_state(self, bank: dict, history: dict) -> None:
        state_dir = self.out / "train_state"
        self.model.save_pretrained(state_dir)
        torch.save(
            {"optimizer": self.opt.state_dict(), "step": self.step, "epoch": self.epoch,
             "batch_in_epoch": self.batch_in_epoch,
             "bank": {k: (torch.from_numpy(f), torch.from_numpy(p)) for k, (f, p) in bank.items()},
             "history": {k: [q["id"] for q in v] for k, v in history.items()},
             "scans": {k: (torch.from_numpy(f), torch.from_numpy(p)) for k, (f, p) in self.scans.items()},
             "scanned_at": self.scanned_at,
             "log": json.dumps(self.log), "config": json.dumps(asdict(self.cfg)),
             "val_log": json.dumps(self.val_log), "best": self.best},
            state_dir / "trainer.pt.tmp",
        )  # fmt: skip
        (state_dir / "trainer.pt.tmp").replace(state_dir / "trainer.pt")

    def load_state(self) -> tuple[dict, dict] | None:
        path = self.out / "train_state" / "trainer.pt"
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        self.model.load_state_dict(
            load_file(str(self.out / "train_state" / "model.safetensors")), strict=True
        )
        st = torch.load(path, weights_only=True)
        self.opt.load_state_dict(st["optimizer"])
        self.step, self.epoch, self.batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
        self.log = json.loads(st["log"])
        self.val_log = json.loads(st.get("val_log", "[]"))
        self.best = st.get("best")
        by_id = {q["id"]: q for v in self.videos for q in v.queries}
        bank = {k: (f.numpy(), p.numpy()) for k, (f, p) in st["bank"].items()}
        self.scans = {k: (f.numpy(), p.numpy()) for k, (f, p) in st.get("scans", {}).items()}
        self.scanned_at = st.get("scanned_at", -1)
        history = defaultdict(list, {k: [by_id[i] for i in ids] for k, ids in st["history"].items()})
        return bank, history

    def run(self, *, progress: bool = True, resume: bool = True) -> list[dict]:
        self.prepare(progress)
        total = self.total_steps()
        restored = self.load_state() if resume else None
        bank, history = restored if restored else ({}, defaultdict(list))
        self.model.train()
        bar = tqdm(total=total, initial=self.step, desc=f"training {self.cfg.method}", disable=not progress)
        start = time.perf_counter()
        while self.step < total and self.epoch < self.cfg.epochs:
            rng = random.Random(self.cfg.seed * 1000 + self.epoch)
            batches = self.batches(rng)
            if self.batch_in_epoch == 0:
                bank, history = {}, defaultdict(list)  # memory reset every epoch
            for b in range(self.batch_in_epoch, len(batches)):
                if self.step >= total:
                    break
                torch.manual_seed(self.cfg.seed * 1000 + self.step)
                frac = self.step / max(total - 1, 1)
                self.model.temperature = (
                    self.cfg.temp_start + (self.cfg.temp_end - self.cfg.temp_start) * frac
                )
                if self.cfg.method == "decoder" and (
                    not self.scans or self.step - self.scanned_at >= self.cfg.scan_every
                ):
                    self.rescan()
                self.set_lr(total)
                step_rng = random.Random(self.cfg.seed * 7919 + self.step)
                random.seed(self.cfg.seed * 104729 + self.step)
                logs = self.train_step(batches[b], bank, history, step_rng)
                self.step += 1
                self.batch_in_epoch = b + 1
                self.log.append({"step": self.step, "epoch": self.epoch, **logs})
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss']:.3f}")
                if self.has_val() and self.step % self.cfg.val_every == 0:
                    self.validate()
                if self.step % self.cfg.save_every == 0:
                    self.save_state(bank, history)
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
        bar.close()
        self.save_state(bank, history)
        if self.has_val() and (not self.val_log or self.val_log[-1]["step"] != self.step):
            self.validate()
        if self.best is not None:  # ship the best validated model, not merely the last
            self.model.load_state_dict(self.best[1])
        self.model.eval()
        self.model.save_pretrained(self.out)
        best_step = max(self.val_log, key=lambda v: v["score"])["step"] if self.val_log else self.step
        (self.out / "train_log.json").write_text(json.dumps({"config": asdict(self.cfg), "log": self.log,
                                                              "validation": self.val_log, "best_step": best_step,
                                                              "seconds": time.perf_counter() - start}))  # fmt: skip
        plot_curves(self.log, self.val_log, self.out / "loss_curves.png")
        return self.log


def plot_curves(log: list[dict], val_log: list[dict], path: Path) -> None:
    """Training loss and its terms (moving mean over 20 steps) and the validation score, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not log:
        return
    fig, (ax, av) = plt.subplots(1, 2, figsize=(11, 4))
    steps = np.array([r["step"] for r in log])
    keys = ["loss"] + sorted({k for r in log for k in r} - {"step", "epoch", "loss", "answered"})
    for key in keys:
        y = np.array([r.get(key, np.nan) for r in log], dtype=float)
        ok = np.isfinite(y)
        if ok.sum() >= 2:
            kernel = np.ones(min(20, int(ok.sum()))) / min(20, int(ok.sum()))
            ax.plot(steps[ok][len(kernel) - 1 :], np.convolve(y[ok], kernel, "valid"), label=key,
                    lw=2 if key == "loss" else 1)  # fmt: skip
    ax.set(xlabel="step", ylabel="loss (moving mean of 20 steps)", yscale="log", title="training")
    ax.legend(fontsize=7)
    if val_log:
        av.plot([v["step"] for v in val_log], [v["score"] for v in val_log], "o-")
    av.set(xlabel="step", ylabel="mean of the table's cells (%)", title="validation (val split)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
