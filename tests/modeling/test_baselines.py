import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from oxnet.methods import TEACHER_LOSSES, method_components, second_view
from oxnet.modeling import baselines as B
from oxnet.testing import random_input, tiny_cfg


def _logits(*probs):
    return torch.logit(torch.tensor(probs)).requires_grad_()


def test_pi_consistency_is_zero_for_equal_views_and_pulls_both_views_together():
    a = _logits(0.2, 0.7)
    assert B.pi_consistency(a, a.detach().clone()).abs().max() < 1e-12
    b = _logits(0.6, 0.3)
    B.pi_consistency(a, b).sum().backward()
    # a gradient step raises view a where b is higher and lowers it where b is lower; b mirrors it
    assert a.grad[0] < 0 and a.grad[1] > 0
    assert b.grad[0] > 0 and b.grad[1] < 0


def test_mean_teacher_consistency_is_zero_at_the_teacher_and_pushes_only_the_student():
    teacher = torch.tensor([0.1, 0.8], requires_grad=True)
    student = _logits(0.1, 0.8)
    assert B.mean_teacher_consistency(student, teacher).abs().max() < 1e-12
    student = torch.zeros(2, requires_grad=True)  # p = 0.5
    B.mean_teacher_consistency(student, teacher).sum().backward()
    assert student.grad[0] > 0 and student.grad[1] < 0
    assert teacher.grad is None


def test_sharpen_pushes_probabilities_away_from_one_half_and_keeps_the_order():
    p = torch.tensor([0.05, 0.3, 0.5, 0.7, 0.99])
    s = B.sharpen(p, 0.5)
    assert torch.allclose(s[2], torch.tensor(0.5))
    assert s[0] < p[0] and s[1] < p[1] and s[3] > p[3] and s[4] > p[4]
    assert torch.all(s[1:] > s[:-1])
    # the closed form p^(1/T) / (p^(1/T) + (1 - p)^(1/T))
    assert s[1].item() == pytest.approx(0.09 / (0.09 + 0.49), rel=1e-5)
    assert torch.equal(B.sharpen(p, 1.0), p)
    with pytest.raises(ValueError):
        B.sharpen(p, 0.0)


def test_psm_selects_the_most_perturbation_sensitive_entries_per_image():
    std = torch.tensor(
        [[[0.0, 0.3], [0.1, 0.0]], [[0.2, 0.0], [0.0, 0.05]]]
    )  # 2 images, 2 anchors, 2 classes
    mask = B.psm_select(std, fraction=0.25)  # one entry of four per image
    assert mask.tolist() == [[[False, True], [False, False]], [[True, False], [False, False]]]
    teacher = torch.full((2, 2, 2), 0.9)
    student = torch.zeros(2, 2, 2, requires_grad=True)
    loss = B.mmt_psm_consistency(student, teacher, std, fraction=0.25)
    assert (loss > 0).tolist() == mask.tolist()  # unselected entries contribute nothing
    loss.sum().backward()
    assert torch.all(student.grad[mask] < 0) and torch.all(student.grad[~mask] == 0)


def test_soft_target_focal_loss_is_focal_loss_for_hard_targets_zero_at_the_target_and_pushes_towards_it():
    from fvcore.nn import sigmoid_focal_loss

    logits = torch.tensor([-1.0, 0.5, 2.0])
    hard = torch.tensor([0.0, 1.0, 1.0])
    assert torch.allclose(
        B.soft_target_focal_loss(logits, hard, 0.25, 2.0),
        sigmoid_focal_loss(logits, hard, alpha=0.25, gamma=2.0),
        atol=1e-6,
    )
    soft = torch.tensor([0.3, 0.6, 0.9])
    assert B.soft_target_focal_loss(torch.logit(soft), soft).abs().max() < 1e-7
    student = torch.zeros(3, requires_grad=True)
    B.soft_target_focal_loss(student, soft).sum().backward()
    assert student.grad[0] > 0 and student.grad[1] < 0 and student.grad[2] < 0


def test_mixup_mixes_images_and_targets_with_the_same_weight():
    images = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    targets = torch.tensor([[[0.0]], [[1.0]]])
    mixed, mixed_t = B.mixup(images, targets, 0.7, torch.tensor([1, 0]))
    assert torch.allclose(mixed[0], torch.full((1, 2, 2), 0.3))
    assert torch.allclose(mixed[1], torch.full((1, 2, 2), 0.7))
    assert torch.allclose(mixed_t.flatten(), torch.tensor([0.3, 0.7]))


def test_method_table_and_views():
    for m in ("pi_model", "mean_teacher", "mmt_psm", "focalmix"):
        assert method_components(m)["global_head"] == ""
        assert method_components(m + "_mt")["global_head"] == "gap"
        assert method_components(m)["unsup"] == method_components(m + "_mt")["unsup"]
    assert second_view("pi_model") == "strong" and second_view("mean_teacher") == "weak"
    assert second_view("retinanet") == "" and second_view("daa") == ""
    assert "pi" not in TEACHER_LOSSES


def _model(method):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(method))
    model.train()
    return model


def _soft_batch(model, same_views):
    full = random_input("full", boxes=[[8, 8, 40, 40]], classes=[1], labels=[0, 1, 0])
    unl = [random_input("unlabeled", seed=s) for s in (1, 2)]
    for x in unl:
        x["image_weak"] = x["image"].clone() if same_views else (x["image"] * 0.5).clone()
    return full, unl


@pytest.mark.parametrize(
    "method,key",
    [
        ("pi_model", "loss_pi"),
        ("mean_teacher", "loss_mt"),
        ("mmt_psm", "loss_mmt"),
        ("focalmix_mt", "loss_focalmix"),
    ],
)
def test_model_losses_of_the_baselines(method, key):
    model = _model(method)
    full, unl = _soft_batch(model, same_views=method == "pi_model")
    if method != "pi_model":
        with pytest.raises(ValueError, match="teacher_probs"), EventStorage(0):
            model([full] + unl)
        model.eval()
        probs = model.dense_probs(unl)  # the teacher's targets computed on the student's own view
        model.train()
        for x, p in zip(unl, probs):
            x["teacher_probs"], x["teacher_std"] = p, torch.rand_like(p)
    with EventStorage(0):
        losses = model([full] + unl)
    assert key in losses and torch.isfinite(losses[key])
    if method in ("pi_model", "mean_teacher", "mmt_psm"):
        # identical views / a teacher equal to the student on the same view: nothing to learn
        assert losses[key].abs() < 1e-9
    else:
        assert losses[key] > 0  # FocalMix: mixed images against sharpened targets
        assert "loss_global" in losses
    # targets away from the student's predictions give a loss whose gradient reaches the head
    if method == "pi_model":
        for x in unl:
            x["image_weak"] = torch.flip(x["image"], dims=[2])
    else:
        for x in unl:
            x["teacher_probs"] = torch.full_like(x["teacher_probs"], 0.5)
    model.zero_grad()
    with EventStorage(0):
        losses = model([full] + unl)
    assert losses[key] > 0
    losses[key].backward()
    assert model.head.cls_score.weight.grad.abs().sum() > 0


def test_rampup_scales_the_consistency_loss():
    cfg = tiny_cfg("mean_teacher")
    cfg.OXNET.RAMPUP.ITERS = 10
    torch.manual_seed(0)
    model = build_model(cfg).train()
    _, unl = _soft_batch(model, same_views=False)  # no full image: the loss normalizer stays put
    for x in unl:
        x["teacher_probs"] = torch.full((model.dense_probs([x]).shape[1], 3), 0.5)
    values = []
    for it in (0, 5, 10, 20):
        with EventStorage(it):
            values.append(model(unl)["loss_mt"].item())
    assert values[0] < values[1] < values[2] and values[2] == pytest.approx(values[3], rel=1e-6)
