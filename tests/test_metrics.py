import pytest
import torch

from longvmnet.measure.metrics import recall_at_kx, tiou, viou
from longvmnet.model.box_ops import cxcywh_to_xyxy, paired_giou, paired_iou, xyxy_to_cxcywh


def test_recall_at_kx_hand_computed():
    scores = [0.9, 0.1, 0.8, 0.3]  # ranking: 0, 2, 3, 1
    assert recall_at_kx(scores, [0]) == 1.0
    assert recall_at_kx(scores, [2]) == 0.0  # top-1 is class 0
    assert recall_at_kx(scores, [0, 3]) == 0.5  # top-2 = {0, 2}
    assert recall_at_kx(scores, [3], k=3) == 1.0  # top-3 = {0, 2, 3}
    with pytest.raises(ValueError):
        recall_at_kx(scores, [])


def test_tiou_hand_computed():
    assert tiou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert tiou((0, 10), (0, 10)) == 1.0
    assert tiou((0, 5), (5, 10)) == 0.0
    assert tiou((2, 4), (0, 10)) == pytest.approx(0.2)


def test_viou_hand_computed():
    box = [0.0, 0.0, 0.5, 0.5]
    half = [0.0, 0.0, 0.5, 0.25]  # IoU with box = 0.5
    # union of frame sets = {0,1,2,3}, intersection = {1,2}: (1 + 0.5) / 4
    assert viou({0: box, 1: box, 2: half}, {1: box, 2: box, 3: box}) == pytest.approx(1.5 / 4)
    assert viou({0: box}, {1: box}) == 0.0
    assert viou({}, {}) == 0.0


def test_box_round_trip_and_giou():
    b = torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    assert torch.allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)
    iou, _ = paired_iou(b, b)
    assert torch.allclose(iou, torch.ones(2))
    far = torch.tensor([[0.0, 0.0, 0.1, 0.1]]), torch.tensor([[0.9, 0.9, 1.0, 1.0]])
    g = paired_giou(*far)
    assert g.item() < 0 and g.item() >= -1
