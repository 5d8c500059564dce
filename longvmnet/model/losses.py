"""Training losses as named terms combined by a weight dict (DETR's criterion pattern).

Targets per kind (b batch, l time queries, c classes):
  activity: activity (b, c) multi-hot float
  object:   boxes (b, l, 4) normalised xyxy, box_mask (b, l) True where the object is annotated, mask (b, l)
  time:     start_idx (b,), end_idx (b,) indices into the time queries, inside (b, l) 1 inside the answer
  object and time, with the pointer: tokens (b, m) 1 for memory tokens that show the answer
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longvmnet.model.box_ops import cxcywh_to_xyxy, paired_giou

DEFAULT_WEIGHTS = {"focal": 1.0, "l1": 5.0, "giou": 2.0, "presence": 1.0, "start": 1.0, "end": 1.0,
                   "pointer": 1.0, "inside": 1.0}  # fmt: skip


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """Multi-label focal loss (Lin et al.), summed over classes, averaged over the batch. (b, c) -> ()"""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum(-1).mean()


def balanced_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with positives and negatives weighted equally (positives are rare). (n,) -> ()"""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    pos = targets > 0.5
    terms = [loss[part].mean() for part in (pos, ~pos) if part.any()]
    return sum(terms) / len(terms)


class Criterion:
    def __init__(self, weight_dict: dict[str, float] | None = None, focal_alpha: float = 0.25):
        self.weight_dict = dict(DEFAULT_WEIGHTS if weight_dict is None else weight_dict)
        self.focal_alpha = focal_alpha

    def loss_activity(self, out: dict, tgt: dict) -> dict[str, torch.Tensor]:
        return {
            "focal": sigmoid_focal_loss(out["activity_logits"], tgt["activity"].float(), self.focal_alpha),
            **self.loss_pointer(out, tgt),
        }

    def loss_object(self, out: dict, tgt: dict) -> dict[str, torch.Tensor]:
        box_mask = tgt["box_mask"].to(out["boxes"].device)
        mask = tgt["mask"].to(box_mask.device)
        pred = cxcywh_to_xyxy(out["boxes"][box_mask])
        true = tgt["boxes"].to(pred.device)[box_mask]
        n = max(int(box_mask.sum()), 1)
        presence = balanced_bce(out["presence_logits"][mask], box_mask[mask].float())
        return {
            "l1": F.l1_loss(pred, true, reduction="sum") / n,
            "giou": (1 - paired_giou(pred, true)).sum() / n,
            "presence": presence,
            **self.loss_pointer(out, tgt),
        }

    def loss_pointer(self, out: dict, tgt: dict) -> dict[str, torch.Tensor]:
        if "token_logits" not in out or "tokens" not in tgt:
            return {}
        logits = out["token_logits"]
        return {"pointer": balanced_bce(logits.flatten(), tgt["tokens"].to(logits.device).float().flatten())}

    def loss_time(self, out: dict, tgt: dict) -> dict[str, torch.Tensor]:
        dev = out["start_logits"].device
        terms = {
            "start": F.cross_entropy(out["start_logits"], tgt["start_idx"].to(dev)),
            "end": F.cross_entropy(out["end_logits"], tgt["end_idx"].to(dev)),
            **self.loss_pointer(out, tgt),
        }
        if "inside_logits" in out and "inside" in tgt:
            mask = tgt["mask"].to(dev)
            terms["inside"] = balanced_bce(out["inside_logits"][mask], tgt["inside"].to(dev)[mask].float())
        return terms

    def __call__(self, kind: str, out: dict, tgt: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-> (weighted total, the unweighted terms)"""
        terms = getattr(self, f"loss_{kind}")(out, tgt)
        total = sum(self.weight_dict.get(k, 0.0) * v for k, v in terms.items())
        return total, terms
