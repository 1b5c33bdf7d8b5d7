"""The losses on images without boxes: the registry, and SFL as the authors' code applies it."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.utils.events import EventStorage

from oxnet.methods import method_components, method_names
from oxnet.modeling.global_head import GlobalHead
from oxnet.modeling.losses import soft_focal_loss
from oxnet.modeling.unsup import UNSUP_LOSS_REGISTRY, build_unsup_loss
from oxnet.modeling.unsup.sfl import filter_teacher_boxes, filtered_sfl_image
from oxnet.testing import random_input, tiny_cfg


def test_every_method_loss_is_registered_in_its_own_module():
    names = {cls.name: cls.__module__ for _, cls in UNSUP_LOSS_REGISTRY}
    used = {method_components(m)["unsup"] for m in method_names()} - {""}
    assert used <= set(names)
    assert len(set(names.values())) == len(names)  # one module each
    with pytest.raises(ValueError, match="registered"):
        build_unsup_loss("vat", tiny_cfg())
    assert build_unsup_loss("", tiny_cfg()) is None


def test_teacher_boxes_are_kept_only_for_classes_labelled_present():
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 3, 3]])
    classes = torch.tensor([0, 2, 1])
    kept, kept_classes = filter_teacher_boxes(boxes, classes, torch.tensor([1.0, -1.0, 0.0]))
    assert kept_classes.tolist() == [0] and kept.tolist() == [[0.0, 0, 10, 10]]
    kept, _ = filter_teacher_boxes(boxes, classes, torch.tensor([0.0, 0.0, 0.0]))
    assert len(kept) == 0
    kept, _ = filter_teacher_boxes(boxes[:0], classes[:0], torch.tensor([1.0, 1.0, 1.0]))
    assert len(kept) == 0


def test_filtered_sfl_on_hand_made_anchors():
    # Four anchors against one teacher box [0, 0, 10, 10]: IoU 1 (positive), 0.64 (positive),
    # ~0.45 (ignored band) and 0 (soft negative).
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 8, 8], [0, 0, 10, 4.5], [50, 50, 60, 60]])
    box = torch.tensor([[0.0, 0, 10, 10]])
    student = torch.tensor([[0.2, -1.0], [0.0, 0.5], [1.0, 1.0], [-2.0, 0.3]], requires_grad=True)
    teacher = torch.tensor([[0.9, 0.1], [0.6, 0.2], [0.5, 0.5], [0.05, 0.3]])
    deltas = torch.zeros(4, 4, requires_grad=True)
    coder = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    cls, reg, num_pos = filtered_sfl_image(student, deltas, teacher, box, anchors, coder, smooth_l1_beta=0.1)
    assert num_pos == 2
    per_entry = soft_focal_loss(student, teacher)
    assert cls.item() == pytest.approx((per_entry[[0, 1, 3]].sum() / 2).item(), rel=1e-6)
    # The first anchor is the box (zero target deltas, zero prediction: no loss); the second needs
    # dx = dy = 0.125, dw = dh = log(1.25): smooth L1 with beta 0.1 is |d| - 0.05 each.
    d = torch.tensor([0.125, 0.125, 1.25, 1.25])
    d[2:] = torch.log(d[2:])
    assert reg.item() == pytest.approx(((d.abs() - 0.05).sum() / 2).item(), rel=1e-5)
    (cls + reg).backward()
    assert (student.grad[2] == 0).all()  # the band 0.4 <= IoU < 0.5 is ignored
    assert (deltas.grad[[2, 3]] == 0).all() and (deltas.grad[1] != 0).all()


def _filtered_model():
    cfg = tiny_cfg("oxnet_plus")
    cfg.OXNET.SFL.MODE, cfg.OXNET.GLOBAL_HEAD.INIT = "filtered", "zero"  # configs/table1/oxnet_plus.yaml
    torch.manual_seed(0)
    return build_model(cfg).train()


def test_filtered_sfl_in_the_model_needs_and_uses_teacher_boxes():
    model = _filtered_model()
    weak = random_input("weak", labels=[1, 0, -1])
    model.eval()
    probs, dets = model.teacher_outputs([weak], "image")
    model.train()
    weak["teacher_probs"] = probs[0] * 0.5  # differs from the student: Eq. 8 is not 0
    with pytest.raises(ValueError, match="teacher_boxes"), EventStorage(0):
        model([weak])
    # A box of the labelled class 0 where the image is: SFL and its box term are on.
    weak["teacher_boxes"] = torch.tensor([[0.0, 0.0, 32.0, 32.0], [0.0, 0.0, 20.0, 20.0]])
    weak["teacher_classes"] = torch.tensor([0, 1])
    with EventStorage(0):
        losses = model([weak])
    assert losses["loss_sfl"] > 0 and losses["loss_sfl_box"] > 0
    # Only boxes of classes labelled absent or unknown: no loss for the image.
    weak["image_labels"] = torch.tensor([0.0, 0.0, 1.0])
    with EventStorage(0):
        losses = model([weak])
    assert losses["loss_sfl"].item() == 0.0 and losses["loss_sfl_box"].item() == 0.0


def test_filtered_sfl_unlabeled_images_dense_or_skipped():
    for option, positive in (("dense", True), ("skip", False)):
        cfg = tiny_cfg("oxnet")
        cfg.OXNET.SFL.MODE, cfg.OXNET.SFL.UNLABELED = "filtered", option
        torch.manual_seed(0)
        model = build_model(cfg).train()
        unl = random_input("unlabeled")
        unl["teacher_probs"] = torch.full_like(model.dense_logits([unl], "image")[0], 0.3)
        with EventStorage(0):
            losses = model([unl])
        assert (losses["loss_sfl"].item() > 0) == positive, option


def test_teacher_hook_attaches_detections_for_filtered_sfl():
    from oxnet.engine.hooks import MeanTeacherHook

    model = _filtered_model()
    hook = MeanTeacherHook(model)
    hook.teacher.test_score_thresh = 0.0  # an untrained teacher's scores are low: keep its boxes
    batch = [random_input("weak", labels=[1, 0, 0]), random_input("full", boxes=[[1, 1, 9, 9]], classes=[0])]
    batch[0]["image_weak"] = batch[0]["image"]
    hook.attach_soft_targets(batch)
    assert batch[0]["teacher_boxes"].shape[1] == 4 and len(batch[0]["teacher_boxes"]) > 0
    assert len(batch[0]["teacher_classes"]) == len(batch[0]["teacher_boxes"])
    assert "teacher_boxes" not in batch[1]


def test_zero_initialized_global_head_sends_no_daa_gradient_to_the_detector():
    head = GlobalHead(8, 3, init="zero")
    assert head.conv.bias is None and (head.conv.weight == 0).all()
    cfg = tiny_cfg("daa")
    cfg.OXNET.GLOBAL_HEAD.INIT = "zero"
    torch.manual_seed(0)
    model = build_model(cfg).train()
    with EventStorage(0):
        losses = model([random_input("weak", labels=[1, 0, -1])])
    losses["loss_global"].backward()
    assert model.head.cls_score.weight.grad is None or (model.head.cls_score.weight.grad == 0).all()
    assert model.global_head.conv.weight.grad.abs().sum() > 0  # the CAM learns first
    with pytest.raises(ValueError, match="INIT"):
        GlobalHead(8, 3, init="xavier")
