import pytest
import torch

from cct_train.eval.metrics import ConfusionMatrix, confusion_matrix, scores_from_confusion


def test_confusion_ignores_void_and_counts() -> None:
    target = torch.tensor([[0, 0, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 0]])
    cm = confusion_matrix(pred, target, num_classes=2)
    assert cm.tolist() == [[1, 1], [0, 1]]


def test_scores_hand_computed() -> None:
    cm = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    scores = scores_from_confusion(cm)
    # IoU0 = 3 / (4 + 3 - 3) = 0.75; IoU1 = 2 / (2 + 3 - 2) = 2/3; class 2 absent -> not averaged.
    assert scores.iou[0] == pytest.approx(0.75)
    assert scores.iou[1] == pytest.approx(2 / 3)
    assert scores.present == [True, True, False]
    assert scores.miou == pytest.approx((0.75 + 2 / 3) / 2)
    assert scores.pixel_accuracy == pytest.approx(5 / 6)


def test_accumulation_equals_whole() -> None:
    gen = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 4, (6, 8, 8), generator=gen)
    target = torch.randint(0, 4, (6, 8, 8), generator=gen)
    target[0, :2] = 255
    acc = ConfusionMatrix(4)
    for i in range(0, 6, 2):
        acc.update(pred[i : i + 2], target[i : i + 2])
    assert acc.matrix is not None
    assert torch.equal(acc.matrix, confusion_matrix(pred, target, 4))


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3), 2)
