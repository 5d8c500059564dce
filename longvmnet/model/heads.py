"""Query-specific one-layer heads over the decoder's per-time outputs.

With the pointer (`ModelConfig.pointer`, ours) the object and time heads also read `LongVMNet.localise`'s
evidence: how strongly memory tokens near each time match the query, and where those tokens lie.

Letters: b batch, l time queries, d model width, c activity classes.
"""

from __future__ import annotations

import torch
from torch import nn

NEG = -1e4  # logit given to padded time queries (finite, so cross-entropy stays finite)


class ActivityHead(nn.Module):
    """Mean-pool over the valid time queries -> multi-label logits. (b, l, d), (b, l) -> (b, c)

    With `conv` k > 0 (ours): first a residual temporal convolution over the time queries (how the outputs
    change from one time to the next: an activity's motion), then logits from the mean and from the maximum
    over time. Both new parts start at zero, so a model trained without them answers the same at first."""

    def __init__(self, d_model: int, num_classes: int, conv: int = 0):
        super().__init__()
        self.fc = nn.Linear(d_model, num_classes)
        self.conv = self.peak = None
        if conv:
            self.conv = nn.Conv1d(d_model, d_model, conv, padding=conv // 2)
            self.peak = nn.Linear(d_model, num_classes)
            for p in (*self.conv.parameters(), *self.peak.parameters()):
                nn.init.zeros_(p)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, ev: dict | None = None) -> dict[str, torch.Tensor]:
        w = mask.unsqueeze(-1).to(h.dtype)
        x = h * w
        if self.conv is not None:
            x = (x + nn.functional.gelu(self.conv(x.transpose(1, 2)).transpose(1, 2))) * w
        logits = self.fc(x.sum(1) / w.sum(1).clamp(min=1.0))
        if self.peak is not None:
            logits = logits + self.peak(x.masked_fill(w == 0, float("-inf")).amax(1))
        return {"activity_logits": logits}


class ObjectHead(nn.Module):
    """A normalised (cx, cy, w, h) box and a presence logit per time query. (b, l, d) -> (b, l, 4), (b, l)

    With evidence, the box centre is the pointed-at tokens' patch centre moved by at most one patch, and
    the presence logit adds the evidence."""

    def __init__(self, d_model: int, grid: int = 7):
        super().__init__()
        self.fc = nn.Linear(d_model, 5)
        self.grid = grid

    def forward(self, h: torch.Tensor, mask: torch.Tensor, ev: dict | None = None) -> dict[str, torch.Tensor]:
        out = self.fc(h)
        presence = out[..., 4]
        if ev is None:
            boxes = out[..., :4].sigmoid()
        else:
            centre = (ev["centre"] + out[..., :2].tanh() / self.grid).clamp(0, 1)
            boxes = torch.cat([centre, out[..., 2:4].sigmoid()], -1)
            presence = presence + ev["evidence"]
        return {"boxes": boxes, "presence_logits": presence.masked_fill(~mask, NEG)}


class TimeHead(nn.Module):
    """Start and end scores over the time queries of the range, and an inside score per time query (trained
    to mark the answer; the answer is the best run of them, `queries.best_run`). (b, l, d) -> (b, l) x 3

    With evidence, each start/end score also weighs the evidence a few time queries before and after (an edge
    detector), and the inside score adds the evidence."""

    SHIFTS = (-3, -1, 0, 1, 3)  # in time queries

    def __init__(self, d_model: int, pointer: bool = False):
        super().__init__()
        self.start = nn.Linear(d_model, 1)
        self.end = nn.Linear(d_model, 1)
        self.inside = nn.Linear(d_model, 1)
        if pointer:
            self.start_ev = nn.Linear(len(self.SHIFTS), 1)
            self.end_ev = nn.Linear(len(self.SHIFTS), 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, ev: dict | None = None) -> dict[str, torch.Tensor]:
        start, end = self.start(h).squeeze(-1), self.end(h).squeeze(-1)
        inside = self.inside(h).squeeze(-1)
        if ev is not None:
            e = ev["evidence"]  # shifted within each row's real time queries (padding never leaks in)
            last = (mask.sum(1, keepdim=True) - 1).clamp(min=0)
            idx = torch.arange(e.shape[1], device=e.device)[None]
            shifted = torch.stack(
                [e.gather(1, torch.minimum((idx + k).clamp(min=0), last)) for k in self.SHIFTS], -1
            )
            start = start + self.start_ev(shifted).squeeze(-1)
            end = end + self.end_ev(shifted).squeeze(-1)
            inside = inside + e
        return {"start_logits": start.masked_fill(~mask, NEG), "end_logits": end.masked_fill(~mask, NEG),
                "inside_logits": inside.masked_fill(~mask, NEG)}  # fmt: skip
