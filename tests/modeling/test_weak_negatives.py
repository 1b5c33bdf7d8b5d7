"""Weak negatives: a class labelled 0 on a weak image trains the detector like a box-free image."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from fvcore.nn import sigmoid_focal_loss

from oxnet.engine.trainer import used_streams
from oxnet.methods import method_components, uses_weak_negatives
from oxnet.modeling.losses import weak_negative_focal_loss
from oxnet.testing import random_input, tiny_cfg


def test_loss_by_hand_and_only_on_absent_classes():
    logits = torch.tensor([[[0.5, -1.0, 2.0], [-0.3, 0.2, 1.0]]], requires_grad=True)  # (1, R=2, K=3)
    labels = torch.tensor([[0.0, 1.0, -1.0]])
    loss = weak_negative_focal_loss(logits, labels, alpha=0.25, gamma=2.0)

    def focal_negative(x):  # (1 - alpha) p^gamma (-log(1 - p)) with p = sigmoid(x)
        p = torch.sigmoid(torch.tensor(x))
        return 0.75 * p**2 * -torch.log(1 - p)

    assert loss.item() == pytest.approx(float(focal_negative(0.5) + focal_negative(-0.3)), rel=1e-6)
    loss.backward()
    assert (logits.grad[0, :, 0] > 0).all()  # the absent class is pushed down at every anchor
    assert (logits.grad[0, :, 1:] == 0).all()  # a present (1) or unknown (-1) class gets no gradient


def test_all_negative_weak_image_equals_a_box_free_full_image():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("retinanet_neg")).train()
    full = random_input("full", boxes=[], classes=[], labels=[0, 0, 0], seed=3)
    weak = random_input("weak", labels=[0, 0, 0], seed=3)
    with EventStorage(0):
        as_full = model([full])["loss_cls"]  # updates RetinaNet's loss normalizer once
        as_weak = model([weak])["loss_weak_negative"]  # a weak-only batch leaves it as it is
    assert as_full.item() > 0
    assert as_weak.item() == pytest.approx(as_full.item(), rel=1e-5)


def test_paper_rows_train_without_it_the_neg_rows_with_it():
    """Weak negatives are not in the paper: its rows (daa, oxnet, the +MT baselines) train without them,
    the *_neg rows with them; OXNET.WEAK.NEGATIVE_FOCAL True adds them to any method with image labels."""
    for method in ("retinanet_neg", "daa_neg", "oxnet_neg", "sfl_plus", "oxnet_plus"):
        assert uses_weak_negatives(tiny_cfg(method)), method
    for method in ("retinanet", "gap", "daa", "daa_gpa", "oxnet", "mean_teacher", "mean_teacher_mt", "sfl"):
        assert not uses_weak_negatives(tiny_cfg(method)), method
    cfg = tiny_cfg("oxnet")
    cfg.OXNET.WEAK.NEGATIVE_FOCAL = True
    assert uses_weak_negatives(cfg)
    cfg = tiny_cfg("mean_teacher")  # no image labels: the switch cannot add them
    cfg.OXNET.WEAK.NEGATIVE_FOCAL = True
    assert not uses_weak_negatives(cfg)
    assert method_components("retinanet_neg")["weak_negatives"]
    streams = used_streams(tiny_cfg("retinanet_neg"))
    assert streams["weak"] > 0 and streams["unlabeled"] == 0
    assert used_streams(tiny_cfg("retinanet"))["weak"] == 0


def test_positive_weak_image_gives_no_detector_gradient_through_it():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("retinanet_neg")).train()
    with EventStorage(0):
        losses = model([random_input("weak", labels=[1, -1, 1])])
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_weak_negative"}
    assert losses["loss_weak_negative"].item() == 0.0
    losses["loss_weak_negative"].backward()
    assert all(p.grad is None or (p.grad == 0).all() for p in model.parameters())


def test_focal_parameters_are_retinanets():
    cfg = tiny_cfg("retinanet_neg")
    cfg.MODEL.RETINANET.FOCAL_LOSS_ALPHA, cfg.MODEL.RETINANET.FOCAL_LOSS_GAMMA = 0.5, 1.0
    torch.manual_seed(0)
    model = build_model(cfg).train()
    weak = random_input("weak", labels=[0, 1, 1])
    with EventStorage(0):
        got = model([weak])["loss_weak_negative"]
        model.eval()
        logits = model.dense_logits([weak], "image")
    expected = sigmoid_focal_loss(logits[..., 0], torch.zeros_like(logits[..., 0]), 0.5, 1.0, "sum")
    assert got.item() == pytest.approx((expected / model.loss_normalizer).item(), rel=1e-5)
