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

Several processes (`torchrun --nproc_per_node N -m longvmnet.train ...`, `distributed.World`): data parallel
by hand rather than DistributedDataParallel, since a step calls the model several times. Every rank draws the
same global batches and computes a contiguous share of each batch's rows (no video on two ranks in one step);
the loss is the global batch's, the gradients are summed over the ranks, and the banks written in a step are
exchanged, so N ranks follow the trajectory of 1 process over the same batches (up to float rounding, with
the model's own dropout at 0). Rank 0 validates and writes checkpoints and logs.

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

from longvmnet import distributed
from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData, video_batches
from longvmnet.distributed import World
from longvmnet.measure.ladder import memory_from_cache
from longvmnet.model import LongVMNet
from longvmnet.train.forward import StepForward
from longvmnet.train.inputs import Row, RowRandom, TrainInputs
from longvmnet.train.state import load_state, save_state


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
    # the pointer's target on activity queries too: the crop's object and the hand during its segments in the window
    # (models with the pointer; the activity head does not read it). A fine-tune A/B on two seeds: object and
    # time answers gain, activity's equal; the recipe's decoder phase sets it
    activity_pointer: bool = False
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


class Trainer:
    """The loop: batches, the step, the learning-rate schedule, validation, saving and resuming.

    Under torchrun (`world` of size N) every rank walks the same batches; each step's rows are split
    contiguously over the ranks (`World.shard`), so no video is on two ranks in one step. See `train_step`.
    """

    def __init__(self, model: LongVMNet, data: ReSTData, cache: FeatureCache, cfg: TrainConfig, out: Path,
                 world: World | None = None):  # fmt: skip
        self.model, self.data, self.cache, self.cfg, self.out = model, data, cache, cfg, Path(out)
        self.world = world or distributed.current()
        self.videos = [v for v in data.split("train") if v.queries]
        if not self.videos:
            raise ValueError("The benchmark has no training queries.")
        self.world.broadcast_module(model)  # every rank starts from rank 0's weights
        self.inputs = TrainInputs(model, data, cache, cfg)
        self.forward = StepForward(model, self.inputs, cfg, self.world)
        sampler_params = list(model.sampler.parameters())
        ids = {id(p) for p in sampler_params}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": rest, "lr": cfg.lr}]
        if cfg.method != "decoder":  # the decoder phase keeps the sampler as it is
            groups.insert(0, {"params": sampler_params, "lr": cfg.lr_sampler})
        self.opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        self.trained = [p for g in self.opt.param_groups for p in g["params"]]
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.log: list[dict] = []
        self.val_log: list[dict] = []  # {"step", "score", "table"} per validation
        self.best: tuple[float, dict] | None = None  # (validation score, model state) of the best so far
        self.scans: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # video -> full-scan memory (frames, pos)
        self.scanned_at = -1  # step of the last rescan
        self.held: list[str] = []  # videos of this rank's rows in the last step

    # ------------------------------------------------------------------ data
    def prepare(self, progress: bool = True) -> None:
        """Cache the backbone tokens (each rank fills the cache for its share of the videos first), then load
        them. With validation the val videos and crops are cached too, before the model leaves the CPU."""
        videos = self.videos + (self.data.split("val") if self.has_val() else [])
        for v in videos[self.world.shard(len(videos))]:
            self.cache.video(v.path)
        self.world.barrier()
        self.inputs.prepare(self.videos, progress)
        for v in videos[len(self.videos) :]:
            self.inputs.prepare([v], progress=False)

    def rescan(self, progress: bool = False) -> None:
        """Stage 1 over every training video with the current model (as at inference): memory provenance.
        Each rank scans its share of the videos; the scans are gathered on every rank."""
        was_training = self.model.training
        g = self.model.config.grid
        self.model.eval()
        mine = self.videos[self.world.shard(len(self.videos))]
        scans = {}
        for v in tqdm(mine, desc="scanning memories", disable=not progress, leave=False):
            mem = memory_from_cache(self.model, self.cache, v)
            times = self.inputs.feats[v.id].times
            frames = np.clip(np.searchsorted(times, mem.times.numpy() - 1e-3), 0, len(times) - 1)
            scans[v.id] = (frames, (mem.rows * g + mem.cols).numpy())
        for part in self.world.gather(scans):
            self.scans.update(part)
        self.scanned_at = self.step
        self.model._fingerprint = None  # hashed by the scan; the weights change with the next step
        self.model.train(was_training)

    def batches(self, rng: random.Random) -> list[list[Row]]:
        """One epoch of global batches: at most one query per video in a batch (end to end), or shuffled
        queries of any videos (the decoder phase, whose memories stay fixed between rescans)."""
        if self.cfg.method != "decoder":
            return list(video_batches(self.videos, self.cfg.batch_size, rng))
        pairs = rng.sample(
            [(v, q) for v in self.videos for q in v.queries], sum(len(v.queries) for v in self.videos)
        )
        return [pairs[i : i + self.cfg.batch_size] for i in range(0, len(pairs), self.cfg.batch_size)]

    def steps_per_epoch(self) -> int:
        return len(self.batches(random.Random(0)))

    # ------------------------------------------------------------------ one step
    def train_step(self, batch: list[Row], bank: dict, history: dict) -> dict:
        """Write (or fetch) each row's memory, answer the row's query (and, end to end, the video's last
        `continual` queries) from it, and take one optimiser step on the summed losses.

        `batch` is the global batch; this rank computes its share of the rows (`World.shard`). The loss is
        the global batch's (`StepForward.answer`); the summed gradients make the step of one process over the
        whole batch. Afterwards the banks the ranks wrote are exchanged and the history takes the whole
        batch, so every rank holds the memories one process would.
        """
        cfg, world = self.cfg, self.world
        rand = RowRandom(cfg.seed, self.step)
        rows = batch[world.shard(len(batch))]
        self.held = [video.id for video, _ in rows]
        memory, spans, prov, aux = self.forward.memories(rows, bank, self.scans, rand)
        total, n, logs = self.forward.answer(rows, history, memory, spans, prov, rand)
        neural = self.model.config.selection == "neural"
        has_aux = cfg.method == "longvmnet" and cfg.sampler_aux > 0 and neural  # on every rank alike
        share = len(rows) / max(len(batch), 1)  # this rank's part of the batch-mean auxiliary loss
        if has_aux:
            mine = float(aux.detach()) * share if aux is not None else 0.0
            logs["sampler_aux"] = world.sum_floats([mine])[0]
        if n or has_aux:  # the baseline may have no target (its clip misses every answer)
            self.opt.zero_grad(set_to_none=True)
            local = total + (cfg.sampler_aux * aux * share if aux is not None else 0.0)
            if local.requires_grad:  # a rank without rows has no graph; it adds zeros to the gradient sum
                local.backward()
            world.reduce_grads(self.trained)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
        if world.size > 1 and cfg.method == "longvmnet":  # memory sync: every rank's bank = one process's
            for part in world.gather({video.id: bank[video.id] for video, _ in rows}):
                bank.update(part)
        for video, q in batch:
            history[video.id].append(q)
            del history[video.id][: -max(cfg.continual, 1)]
        loss = float(total.detach()) + (cfg.sampler_aux * logs["sampler_aux"] if has_aux else 0.0)
        return {"loss": loss, **logs}

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
        from longvmnet.measure.evaluate import evaluate

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
        """Rank 0 writes the resumable state (`train_state`); the others wait."""
        if self.world.main:
            save_state(self.out / "train_state", self.model, self.opt, bank=bank, history=history,
                       scans=self.scans, step=self.step, epoch=self.epoch, batch_in_epoch=self.batch_in_epoch,
                       scanned_at=self.scanned_at, log=self.log, val_log=self.val_log, best=self.best,
                       config=asdict(self.cfg))  # fmt: skip
        self.world.barrier()

    def load_state(self) -> tuple[dict, dict] | None:
        """Rank 0's saved state on every rank -> (bank, history), or None without one."""
        queries = {q["id"]: q for v in self.videos for q in v.queries}
        st = load_state(self.out / "train_state", queries, self.world)
        if st is None:
            return None
        self.model.load_state_dict(st["model"], strict=True)
        self.opt.load_state_dict(st["optimizer"])
        self.step, self.epoch, self.batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
        self.log, self.val_log, self.best = st["log"], st["val_log"], st["best"]
        self.scans, self.scanned_at = st["scans"], st["scanned_at"]
        return st["bank"], st["history"]

    def run(self, *, progress: bool = True, resume: bool = True) -> list[dict]:
        """Train to `max_steps` or `epochs`; save the (best validated) model, train_log.json and the curves.
        Under torchrun only rank 0 shows progress, validates and writes; the others wait at barriers."""
        world = self.world
        progress = progress and world.main
        self.model.cpu()  # the feature cache runs the frozen backbone on the CPU
        self.prepare(progress)
        self.model.to(world.device)
        total = self.total_steps()
        restored = self.load_state() if resume else None
        bank, history = restored if restored else ({}, defaultdict(list))
        self.model.train()
        bar = tqdm(total=total, initial=self.step, desc=f"training {self.cfg.method}", disable=not progress)
        start = time.perf_counter()
        while self.step < total and self.epoch < self.cfg.epochs:
            batches = self.batches(random.Random(self.cfg.seed * 1000 + self.epoch))  # the same on every rank
            if self.batch_in_epoch == 0:
                bank, history = {}, defaultdict(list)  # memory reset every epoch
            for b in range(self.batch_in_epoch, len(batches)):
                if self.step >= total:
                    break
                torch.manual_seed(self.cfg.seed * 1000 + self.step)
                random.seed(self.cfg.seed * 104729 + self.step)
                frac = self.step / max(total - 1, 1)
                self.model.temperature = (
                    self.cfg.temp_start + (self.cfg.temp_end - self.cfg.temp_start) * frac
                )
                if self.cfg.method == "decoder" and (
                    not self.scans or self.step - self.scanned_at >= self.cfg.scan_every
                ):
                    self.rescan()
                self.set_lr(total)
                logs = self.train_step(batches[b], bank, history)
                self.step += 1
                self.batch_in_epoch = b + 1
                self.log.append({"step": self.step, "epoch": self.epoch, **logs})
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss']:.3f}")
                if self.has_val() and self.step % self.cfg.val_every == 0:
                    if world.main:
                        self.validate()
                    world.barrier()
                if self.step % self.cfg.save_every == 0:
                    self.save_state(bank, history)
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
        bar.close()
        self.save_state(bank, history)
        if world.main:
            self._finish(time.perf_counter() - start)
        world.barrier()
        return self.log

    def _finish(self, seconds: float) -> None:
        """Rank 0: a last validation, then the best validated (else the last) model, the log and the curves."""
        if self.has_val() and (not self.val_log or self.val_log[-1]["step"] != self.step):
            self.validate()
        if self.best is not None:  # ship the best validated model, not merely the last
            self.model.load_state_dict(self.best[1])
        self.model.eval()
        self.model.save_pretrained(self.out)
        best_step = max(self.val_log, key=lambda v: v["score"])["step"] if self.val_log else self.step
        (self.out / "train_log.json").write_text(json.dumps({"config": asdict(self.cfg), "log": self.log,
                                                              "validation": self.val_log, "best_step": best_step,
                                                              "world_size": self.world.size,
                                                              "seconds": seconds}))  # fmt: skip
        plot_curves(self.log, self.val_log, self.out / "loss_curves.png")


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
