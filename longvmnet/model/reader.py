"""The window reader (ours): activity logits read straight from the memory tokens inside an activity query's
window, beside the decoder's.

`longvmnet probe --readers` measured that the memory names an unseen video's activities better than the
decoder does: every token of the window alike, averaged per memory frame and summarised over the window's
frames, names them in 39% of short queries against the decoder's 31%; the tokens of the frames where the
crop's object is acted on name them in about 60%. This head reads both summaries: every frame of the window,
and the window's frames the time head marks likeliest to show the crop's object acted on (`select_frames`:
the top 15% by its inside scores, read from the activity query's own encoder output in one more decoder
pass). It is fit after the decoder phase on the training videos' activity queries (`train/reader.py`); its
logits add to the activity head's.

The same kind of head, fit on the training videos' annotated segments, is the **segment reader**: from the
memory frames of a span of time (`span_features`) it names the activity done then, or none. Object and time
answers pick one run of time queries; with the segment reader they weigh the best few runs by how well it
reads the query's activity in each (`inference.rerank`). Activity answers add its reading of the window's
best runs of acting frames (`acting_spans`; per activity the largest over the runs).

Letters: b batch, m memory tokens, d width, c activity classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm import tqdm

from longvmnet.model.runs import best_runs

if TYPE_CHECKING:
    from longvmnet.model.network import MemoryTensors


def time_summary(s: torch.Tensor) -> torch.Tensor:
    """A sequence (n >= 2, k) as one vector: its mean, last minus first, mean absolute step, std, and first
    half's mean minus second half's. -> (5 k,)"""
    half = len(s) // 2
    steps = (s[1:] - s[:-1]).abs().mean(0)
    return torch.cat([s.mean(0), s[-1] - s[0], steps, s.std(0), s[:half].mean(0) - s[half:].mean(0)])


def window_summary(tokens: torch.Tensor, times: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Memory tokens (m, k) at times (m,) with weights (m,), 0 outside the window. Per memory frame (distinct
    time) with weight, the weighted mean token, in time order, summarised (`time_summary`; one frame counts as
    a still pair), then the number of such frames. -> (5 k + 1,)"""
    on = weights > 0
    frames, frame_of = torch.unique(times[on], return_inverse=True)
    if len(frames) == 0:
        return tokens.new_zeros(5 * tokens.shape[1] + 1)
    w = weights[on].to(tokens.dtype)
    sums = tokens.new_zeros(len(frames), tokens.shape[1]).index_add_(0, frame_of, w[:, None] * tokens[on])
    per_frame = sums / tokens.new_zeros(len(frames)).index_add_(0, frame_of, w)[:, None]
    if len(per_frame) == 1:
        per_frame = per_frame.repeat(2, 1)
    return torch.cat([time_summary(per_frame), tokens.new_tensor([float(len(frames))])])


def window_feature(tokens: torch.Tensor, times: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`window_summary`, then the weights' sum. (5 k + 2,)"""
    return torch.cat([window_summary(tokens, times, weights), weights.sum().reshape(1).to(tokens.dtype)])


# The share of a window's memory frames the reader's second summary reads (at least 2 frames): of 8%, 15%, 30%
# and 50%, 15% read two sets of unseen videos best (README, Training and results).
SELECT_SHARE = 0.15


def frame_scores(times: torch.Tensor, inside: torch.Tensor, scores: torch.Tensor):
    """A window's memory frames (distinct times where `inside`) and each one's best token score.
    times, inside, scores (m,) -> the inside tokens' indices, the frames' times in order, each inside token's
    frame, the frames' scores"""
    on = torch.nonzero(inside).flatten()
    frames, frame_of = torch.unique(times[on], return_inverse=True)
    best = scores.new_full((len(frames),), float("-inf")).scatter_reduce(0, frame_of, scores[on], "amax")
    return on, frames, frame_of, best


def select_frames(times: torch.Tensor, inside: torch.Tensor, scores: torch.Tensor,
                  share: float = SELECT_SHARE) -> torch.Tensor:  # fmt: skip
    """The memory frames (distinct times) inside a window with the highest scores: `share` of them, at least
    2 (all when fewer). times, inside (bool), scores (m,) per token -> (m,) 1.0 on the chosen frames' tokens."""
    out = torch.zeros_like(times, dtype=torch.float32)
    on, frames, frame_of, best = frame_scores(times, inside, scores)
    if len(on) == 0:
        return out
    k = min(len(frames), max(2, round(share * len(frames))))
    keep = torch.zeros(len(frames), dtype=torch.bool, device=times.device)
    keep[best.topk(k).indices] = True
    out[on] = keep[frame_of].float()
    return out


def span_features(
    tokens: torch.Tensor, times: torch.Tensor, spans: list[tuple[float, float]]
) -> torch.Tensor:
    """Memory tokens (m, d) at times (m,): per span (start, end) seconds the `window_summary` of every memory
    frame in it, as the segment reader reads it. -> (k, 5 d + 1)"""
    times = times.to(tokens.device, torch.float32)
    return torch.stack(
        [window_summary(tokens.float(), times, ((times >= a) & (times <= b)).float()) for a, b in spans]
    )


def acting_spans(times: torch.Tensor, inside: torch.Tensor, scores: torch.Tensor, k: int = 3,
                 gap: int = 2) -> list[tuple[float, float]]:  # fmt: skip
    """The k best disjoint runs of a window's memory frames (distinct times where `inside`) by their tokens'
    best score (`runs.best_runs`, `gap` frames apart), as (start, end) seconds. times, inside, scores (m,)"""
    _, frames, _, best = frame_scores(times, inside, scores)
    return [(float(frames[a]), float(frames[b])) for a, b, _ in best_runs(best.float().cpu(), k, gap)]


def frame_grid(
    mem_times: torch.Tensor, times: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the time head reads an activity query's acting frames: each window's distinct memory-frame times,
    padded with the last, so that every memory frame gets its own score. A window (from its first to its last
    decoder time query, times / mask (b, l)) without memory frames keeps its time queries.
    mem_times (b, m) -> times (b, n), mask (b, n)"""
    times, mask = times.float(), mask.to(times.device)
    mem_times = mem_times.to(times.device, torch.float32)
    start, end = window_bounds(times, mask)
    rows = []
    for i in range(len(times)):
        frames = torch.unique(mem_times[i][(mem_times[i] >= start[i]) & (mem_times[i] <= end[i])])
        rows.append(frames if len(frames) else times[i][mask[i]])
    n = max(len(r) for r in rows)
    lengths = torch.tensor([len(r) for r in rows], device=times.device)
    out = torch.stack([torch.cat([r, r[-1:].expand(n - len(r))]) for r in rows])
    return out, torch.arange(n, device=times.device) < lengths[:, None]


def window_bounds(times: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window's first and last decoder time query: times / mask (b, l) -> start (b,), end (b,)"""
    return times.masked_fill(~mask, float("inf")).amin(1), times.masked_fill(~mask, float("-inf")).amax(1)


class WindowReader(nn.Module):
    """Features (`features`: (b, width)) -> activity logits through standardisation (the training features'
    mean and spread, set by `fit`) and one hidden layer. The output layer starts at zero: an unfit reader adds
    nothing to the activity head. `width` defaults to `features`' for d-wide tokens, 11 d + 3."""

    def __init__(self, d_model: int, num_classes: int, hidden: int = 128, dropout: float = 0.2,
                 width: int | None = None):  # fmt: skip
        super().__init__()
        width = width or 11 * d_model + 3
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    @staticmethod
    def features(tokens: torch.Tensor, times: torch.Tensor, window: torch.Tensor, crop: torch.Tensor,
                 acted: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """tokens (b, m, d) and times (b, m) of the memory, window (b, 2) start and end seconds, crop (b, d) the
        query crop's mean projected token, acted (b, m) how likely each token's time shows the crop's object
        acted on -> (b, 11 d + 3): the window's summary, the crop, and the summary of the selected frames
        (`select_frames`) with their token count."""
        times = times.to(tokens.device, torch.float32)
        window = window.to(tokens.device, torch.float32)
        inside = (times >= window[:, :1]) & (times <= window[:, 1:])
        rows = []
        for t, s, i, a in zip(tokens.float(), times, inside, acted.float()):
            rows.append(torch.cat([window_summary(t, s, i.float()),
                                   window_feature(t, s, select_frames(s, i, a))]))  # fmt: skip
        x = torch.stack(rows)
        k = 5 * tokens.shape[-1] + 1
        return torch.cat([x[:, :k], crop.float(), x[:, k:]], 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp((features - self.mean) / self.std)

    def fit(self, x: torch.Tensor, y: torch.Tensor, offset: torch.Tensor | None = None, *, steps: int = 1500,
            batch: int = 128, lr: float = 1e-3, weight_decay: float = 1e-2, seed: int = 0,
            progress: bool = False) -> list[float]:  # fmt: skip
        """Fit to features x (n, width) and multi-hot answers y (n, c): the standardisation from x, then the
        layers by binary cross-entropy of offset (n, c; logits of another model, fixed) + the reader's
        logits; AdamW, batches drawn with replacement. Leaves it in eval mode.
        -> the loss every 100 steps"""
        x, y = x.to(self.mean.device), y.to(self.mean.device)
        offset = torch.zeros_like(y) if offset is None else offset.to(y.device)
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp(min=1e-6))
        gen = torch.Generator().manual_seed(seed)
        self.train()
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        losses = []
        for step in tqdm(range(steps), desc="reader: fit", disable=not progress):
            idx = torch.randint(len(y), (batch,), generator=gen).to(y.device)
            loss = nn.functional.binary_cross_entropy_with_logits(self(x[idx]) + offset[idx], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 100 == 0:
                losses.append(loss.item())
        self.eval()
        return losses


class ReaderInputs:
    """What the readers read, as methods of `LongVMNet` (a mixin: it uses the model's decoder, pointer, time head
    and segment reader): the window reader's features, the acting frames' scores, the segment reader's reading
    of an activity query's window."""

    def window_features(self, memory: MemoryTensors, times: torch.Tensor, mask: torch.Tensor, crop: torch.Tensor,
                        acted: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The window reader's input for activity queries whose decoder time queries are times / mask (b, l):
        the window runs from the first to the last time query; acted (b, m) per memory token (`acted_on`).
        -> (b, 11 d + 3)"""
        times, mask = times.to(self.device, torch.float32), mask.to(self.device)
        window = torch.stack(window_bounds(times, mask), 1)
        return WindowReader.features(
            memory["tokens"].to(self.device), memory["times"], window, crop.to(self.device), acted
        )

    def segment_logits(
        self, memory: MemoryTensors, times: torch.Tensor, mask: torch.Tensor, acted: torch.Tensor
    ) -> torch.Tensor:
        """What the segment reader reads in each activity query's window (times / mask (b, l)): per activity
        its largest logit over the window's best runs of acting frames (`reader.acting_spans` of `acted`
        (b, m)); zeros for a window without memory frames. -> (b, c)"""
        c = len(self.config.activities)
        times, mask = times.to(self.device, torch.float32), mask.to(self.device)
        start, end = window_bounds(times, mask)
        tokens, mem_times = memory["tokens"].to(self.device), memory["times"].to(self.device, torch.float32)
        rows = []
        for i in range(len(times)):
            inside = (mem_times[i] >= start[i]) & (mem_times[i] <= end[i])
            spans = acting_spans(mem_times[i], inside, acted[i].float())
            read = (
                self.segment_reader(span_features(tokens[i], mem_times[i], spans))[:, :c] if spans else None
            )
            rows.append(read.amax(0) if read is not None else tokens.new_zeros(c))
        return torch.stack(rows)

    def acted_on(self, enc: torch.Tensor, memory: MemoryTensors, times: torch.Tensor, mask: torch.Tensor,
                 key_times: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """How likely each memory token's time shows an activity query's crop acted on: the time head's inside
        logits at the window's memory frames (`frame_grid`), read from the activity query's own encoder output
        (no activity given); key_times (b, n) `key_times(enc, memory)`. One more decoder pass; it finds the
        crop's acting frames as well as a pass per activity does (README). -> (b, m)"""
        times, mask = frame_grid(memory["times"], times, mask)
        m = memory["times"].shape[1]
        h = self.decode(enc, times, mask, "time", key_times=key_times)
        ev = self.localise(enc[:, :m], enc[:, m:], memory, times) if self.config.pointer else None
        inside = self.heads["time"](h, mask.to(self.device), ev)["inside_logits"]
        mem_times = memory["times"].to(self.device, torch.float32)
        dt = (mem_times[:, :, None] - times.to(self.device, torch.float32)[:, None]).abs()
        nearest = dt.masked_fill(~mask.to(self.device)[:, None], float("inf")).argmin(-1)
        return inside.gather(1, nearest)
