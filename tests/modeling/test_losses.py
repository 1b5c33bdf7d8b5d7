import math

import pytest
import torch

from oxnet.modeling.losses import masked_bce_with_logits, soft_focal_loss


def test_soft_focal_loss_matches_hand_computed_values():
    # q = sigmoid(0) = 0.5. Teacher 0.8: (0.8*0.9 + 0.05) * |0.8 - 0.5|^2 * BCE, BCE = ln 2.
    logits = torch.zeros(2)
    teacher = torch.tensor([0.8, 0.0])
    loss = soft_focal_loss(logits, teacher, alpha=0.9, eps=0.05, gamma=2.0)
    expected = torch.tensor([0.77 * 0.09 * math.log(2), 0.05 * 0.25 * math.log(2)])
    assert torch.allclose(loss, expected, atol=1e-7)


def test_soft_focal_loss_is_zero_when_student_agrees_and_pushes_towards_teacher():
    teacher = torch.tensor([0.2, 0.9])
    agree = torch.logit(teacher).requires_grad_()
    assert soft_focal_loss(agree, teacher).abs().max() < 1e-7
    student = torch.zeros(2, requires_grad=True)  # q = 0.5
    soft_focal_loss(student, teacher).sum().backward()
    # a gradient step must move q towards the teacher: down for 0.2, up for 0.9
    assert student.grad[0] > 0 and student.grad[1] < 0


def test_soft_focal_loss_treats_teacher_as_constant():
    teacher = torch.tensor([0.3], requires_grad=True)
    soft_focal_loss(torch.zeros(1, requires_grad=True), teacher).sum().backward()
    assert teacher.grad is None


def test_masked_bce_ignores_uncertain_and_unknown_labels():
    logits = torch.zeros(2, 3, requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, -1.0], [-1.0, -1.0, -1.0]])
    # Eq. 1's sum over classes: two known entries, each ln 2, in the only image with a known label
    assert masked_bce_with_logits(logits, labels, "sum_classes").item() == pytest.approx(2 * math.log(2))
    loss = masked_bce_with_logits(logits, labels)
    assert loss.item() == pytest.approx(math.log(2))  # the authors' mean over the two known entries
    loss.backward()
    assert torch.all(logits.grad[0, 2] == 0) and torch.all(logits.grad[1] == 0)
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]


def test_masked_bce_is_zero_without_known_labels():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = masked_bce_with_logits(logits, -torch.ones(2, 3))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_masked_bce_mean_is_the_mean_over_known_entries_of_all_images():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, -0.7, 1.5]])
    labels = torch.tensor([[1.0, 0.0, -1.0], [0.0, -1.0, 1.0]])

    def bce(x, y):  # by hand
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    known = [(2.0, 1), (-1.0, 0), (0.3, 0), (1.5, 1)]
    expected = sum(bce(x, y) for x, y in known)
    assert masked_bce_with_logits(logits, labels).item() == pytest.approx(expected / 4, rel=1e-6)
    assert masked_bce_with_logits(logits, labels, "sum_classes").item() == pytest.approx(
        expected / 2, rel=1e-6
    )
    with pytest.raises(ValueError, match="sum_classes"):
        masked_bce_with_logits(logits, labels, "sum")
