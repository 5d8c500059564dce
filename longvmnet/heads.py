"""Query-specific one-layer heads over the decoder's per-time outputs.

Letters: b batch, l time queries, d model width, c activity classes.
"""

from __future__ import annotations

import torch
from torch import nn

NEG = -1e4  # logit given to padded time queries (finite, so cross-entropy stays finite)


class ActivityHead(nn.Module):
    """Mean-pool over the valid time queries -> multi-label logits. (b, l, d), (b, l) -> (b, c)"""

    def __init__(self, d_model: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(d_model, num_classes)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        w = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)
        return {"activity_logits": self.fc(pooled)}


class ObjectHead(nn.Module):
    """A normalised (cx, cy, w, h) box and a presence logit per time query. (b, l, d) -> (b, l, 4), (b, l)"""

    def __init__(self, d_model: int):
        super().__init__()
        self.fc = nn.Linear(d_model, 5)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.fc(h)
        return {
            "boxes": out[..., :4].sigmoid(),
            "presence_logits": out[..., 4].masked_fill(~mask, NEG),
        }


class TimeHead(nn.Module):
    """Start and end scores over the time queries of the range. (b, l, d) -> (b, l), (b, l)"""

    def __init__(self, d_model: int):
        super().__init__()
        self.start = nn.Linear(d_model, 1)
        self.end = nn.Linear(d_model, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "start_logits": self.start(h).squeeze(-1).masked_fill(~mask, NEG),
            "end_logits": self.end(h).squeeze(-1).masked_fill(~mask, NEG),
        }
