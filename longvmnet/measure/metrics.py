"""ReST metrics as defined in NOTES §3: Recall@kx, tIoU, vIoU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from longvmnet.model.box_ops import paired_iou


def recall_at_kx(scores: Sequence[float], true_labels: Sequence[int], k: int = 1) -> float:
    """Share of the true labels found among the top k*x predictions, x = number of true labels."""
    if not true_labels:
        raise ValueError("Recall@kx needs at least one true label.")
    x = len(set(true_labels))
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: k * x]
    return len(set(order) & set(true_labels)) / x


def tiou(pred: tuple[float, float], true: tuple[float, float]) -> float:
    """Temporal IoU of [start, end) intervals; 0 when disjoint or empty."""
    inter = max(0.0, min(pred[1], true[1]) - max(pred[0], true[0]))
    union = max(pred[1], true[1]) - min(pred[0], true[0])
    return inter / union if union > 0 and inter > 0 else 0.0


def viou(pred: Mapping[int, Sequence[float]], true: Mapping[int, Sequence[float]]) -> float:
    """vIoU = (1/|S_u|) sum over frames in S_i of IoU(pred box, true box).

    pred, true: frame index -> xyxy box. S_u / S_i are the union / intersection of the two frame sets.
    """
    union = set(pred) | set(true)
    if not union:
        return 0.0
    both = sorted(set(pred) & set(true))
    if not both:
        return 0.0
    a = torch.tensor([list(pred[f]) for f in both], dtype=torch.float64)
    b = torch.tensor([list(true[f]) for f in both], dtype=torch.float64)
    return float(paired_iou(a, b)[0].sum()) / len(union)
