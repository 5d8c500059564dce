"""What one training step computes before the optimiser: each row's memory (the sampler writing the row's clip
into its video's bank, the video's full-scan memory, or for the per-query baseline the clip itself), then the
loss of the row's queries answered from it (`Trainer.train_step` takes the optimiser step and syncs the ranks).

Letters: b rows, m memory, l time queries.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from longvmnet.distributed import World
from longvmnet.model import LongVMNet
from longvmnet.model.losses import Criterion
from longvmnet.train.inputs import Row, RowRandom, TrainInputs


class StepForward:
    """A step's memories and its loss, rows as `World.shard` gives this rank (`cfg` is the TrainConfig:
    method and continual are read here)."""

    def __init__(self, model: LongVMNet, inputs: TrainInputs, cfg, world: World):
        self.model, self.inputs, self.cfg, self.world = model, inputs, cfg, world
        self.crit = Criterion()

    def memories(self, rows: list[Row], bank: dict, scans: dict, rand: RowRandom):
        """-> each row's memory (b, m, ...), the baseline's clip spans (else None), each row's memory token
        provenance (frames, patches), the sampler's auxiliary loss (or None)."""
        cfg, c = self.cfg, self.model.config
        if not rows:
            return None, None, [], None
        if cfg.method == "decoder":
            prov = [scans[video.id] for video, _ in rows]
            return self.inputs.scanned_memory(rows, scans, rand), None, prov, None
        clip, clip_f = self.inputs.clips(rows, rand)
        if cfg.method == "baseline":  # no memory: the clip itself
            spans = [(float(t[0]), float(t[-1]) + 1.0 / c.memory_fps) for t in clip["times"]]
            patches = clip["rows"] * c.grid + clip["cols"]
            prov = [(clip_f[i], patches[i].numpy()) for i in range(len(rows))]
            return clip, spans, prov, None
        memory, aux = self.inputs.sampled_memory(rows, bank, clip, clip_f, rand)
        return memory, None, [bank[video.id] for video, _ in rows], aux

    def answer(self, rows: list[Row], history: dict, memory, spans, prov, rand: RowRandom):
        """Each row's query (and, end to end, its video's last `continual` queries) answered from the row's
        memory, one forward per query kind. Each kind's outputs and targets are gathered over the ranks, so
        every rank computes the global batch's loss (the box and balanced terms pool over rows) and
        back-propagates into its own rows only. -> loss (the same on every rank), answered queries, terms"""
        cfg, world = self.cfg, self.world
        items = []  # (row, query): the current query and the last p queries of the row's video
        for i, (video, q) in enumerate(rows):
            items.append((i, q))
            if cfg.method == "longvmnet" and cfg.continual:
                items += [(i, old) for old in history[video.id][-cfg.continual :]]
        losses, terms_log, n = [], defaultdict(float), 0
        for kind in ("activity", "object", "time"):
            group = [(i, q) for i, q in items if q["type"] == kind]
            queries = self.inputs.query_rows(kind, group, rows, spans, prov, rand)
            length = world.max_int(max((len(x["grid"]) for x in queries), default=0))
            if length == 0:  # no rank has a query of this kind
                continue
            out = tgt = None
            if queries:
                idx, times, mask, obj, act, tgt = self.inputs.collate(queries, length)
                mem_k = {key: memory[key][idx] for key in ("tokens", "times", "rows", "cols")}
                out = self.model(mem_k, kind, times, mask, object_tokens=obj, activity=act)
            out, tgt = world.gather_rows(out), world.gather_rows(tgt)
            loss, terms = self.crit(kind, out, tgt)
            answered = len(tgt["mask"])
            losses.append(loss * answered)
            n += answered
            for key, v in terms.items():
                terms_log[key] += float(v.detach()) * answered
        total = sum(losses) / n if losses else torch.zeros(())
        return total, n, {"answered": n, **{k: v / max(n, 1) for k, v in terms_log.items()}}
