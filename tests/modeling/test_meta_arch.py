import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from oxnet.modeling import OXNet
from oxnet.testing import random_input, tiny_cfg

NUM_CLASSES = 3


def _build(method):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(method))
    model.train()
    return model


def _grad_norm(module):
    return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)


def test_build_model_gives_oxnet_with_the_method_components():
    assert isinstance(_build("oxnet"), OXNet)
    m = _build("oxnet")
    assert m.global_mode == "daa" and m.prototypes is not None and m.unsup == "sfl"
    r = _build("retinanet")
    assert r.global_head is None and r.prototypes is None and not r.unsup
    assert _build("gap").global_mode == "gap"


def test_daa_global_loss_reaches_the_retinanet_classification_head():
    batch = [random_input("weak", labels=[1, 0, -1])]
    for method, reaches in (("daa", True), ("gap", False)):
        model = _build(method)
        with EventStorage(0):
            losses = model(batch)
        losses["loss_global"].backward()
        assert (_grad_norm(model.head.cls_score) > 0) == reaches, method
        assert _grad_norm(model.global_head) > 0


def test_attention_grad_positive_keeps_absent_classes_out_of_the_detector():
    batch = [random_input("weak", labels=[1, 0, -1])]
    grads = {}
    for mode in ("all", "positive"):
        cfg = tiny_cfg("daa")
        cfg.OXNET.GLOBAL_HEAD.ATTENTION_GRAD = mode
        torch.manual_seed(0)
        model = build_model(cfg)
        model.train()
        with EventStorage(0):
            losses = model(batch)
        losses["loss_global"].backward()
        # cls_score's output channels are anchor-major: channel = anchor * K + class.
        weight = model.head.cls_score.weight
        g = weight.grad.abs().view(-1, NUM_CLASSES, *weight.shape[1:])
        grads[mode] = (losses["loss_global"].item(), g.flatten(2).sum(dim=2).sum(dim=0))
    assert grads["all"][0] == grads["positive"][0]  # same loss value
    assert (grads["all"][1][:2] > 0).all()
    assert grads["positive"][1][0] > 0 and grads["positive"][1][1] == 0  # class 1 is absent
    assert grads["positive"][1][2] == 0  # class 2 is unknown (-1): no label, no gradient


def test_full_image_without_boxes_trains_as_background():
    model = _build("retinanet")
    with EventStorage(0):
        losses = model([random_input("full")])
    assert losses["loss_cls"] > 0
    assert losses["loss_box_reg"] == 0
    losses["loss_cls"].backward()
    # the classification bias is pushed down (towards background) for every class
    assert torch.all(model.head.cls_score.bias.grad > 0)


def test_losses_of_each_stream():
    model = _build("oxnet")
    full = random_input("full", boxes=[[8, 8, 40, 40]], classes=[1], labels=[0, 1, 0])
    weak = random_input("weak", labels=[0, 1, -1])
    unl = random_input("unlabeled")
    with pytest.raises(ValueError, match="teacher_probs"), EventStorage(0):
        model([full, weak, unl])
    model.eval()
    probs = model.dense_probs([weak, unl])
    model.train()
    assert probs.shape[0] == 2 and probs.shape[2] == NUM_CLASSES
    weak["teacher_probs"], unl["teacher_probs"] = probs[0] * 0.5, probs[1] * 0.5
    with EventStorage(0):
        losses = model([full, weak, unl])
    assert set(losses) == {
        "loss_cls",
        "loss_box_reg",
        "loss_global",
        "loss_gpa_intra",
        "loss_gpa_inter",
        "loss_sfl",
    }  # the paper's OXnet: no weak negatives (oxnet_neg has them)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"] > 0 and losses["loss_sfl"] > 0
    assert model.prototypes.initialized.tolist() == [False, True, False]  # only class 1 had positives
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_burn_in_then_rampup_scale_every_loss_but_retinanet_s():
    cfg = tiny_cfg("oxnet")
    cfg.OXNET.RAMPUP.BURN_IN_ITERS, cfg.OXNET.RAMPUP.ITERS = 4, 10
    torch.manual_seed(0)
    model = build_model(cfg).train()
    full = random_input("full", boxes=[[8, 8, 40, 40]], classes=[1], labels=[0, 1, 0])
    weak = random_input("weak", labels=[0, 1, -1])
    model.eval()
    weak["teacher_probs"] = model.dense_probs([weak])[0] * 0.5
    model.train()
    values = {}
    for it in (0, 3, 4, 9, 14, 30):
        model.positives_per_image.fill_(100.0)  # the same SFL normalizer in every call
        with torch.no_grad(), EventStorage(it):
            values[it] = {k: v.item() for k, v in model([full, weak]).items()}
    # burn-in: RetinaNet's losses only
    for it in (0, 3):
        assert values[it]["loss_cls"] > 0
        assert all(values[it][k] == 0 for k in ("loss_global", "loss_gpa_intra", "loss_sfl"))
    # ramp-up: exp(-5 (1 - t / 10)^2) from iteration 4 on, then full weight
    for k in ("loss_global", "loss_sfl"):
        assert 0 < values[4][k] < values[9][k] < values[14][k]
        assert values[4][k] / values[30][k] == pytest.approx(math.exp(-5.0), rel=1e-3)
        assert values[9][k] / values[30][k] == pytest.approx(math.exp(-5.0 * 0.25), rel=1e-3)
        assert values[14][k] == pytest.approx(values[30][k], rel=1e-5)


def test_inference_returns_instances_and_global_scores():
    model = _build("oxnet").eval()
    batch = [random_input("unlabeled")]
    batch[0]["height"], batch[0]["width"] = 128, 96  # original size: boxes are scaled back
    out = model(batch)[0]
    assert out["global_scores"].shape == (NUM_CLASSES,)
    assert torch.all((out["global_scores"] > 0) & (out["global_scores"] < 1))
    assert out["instances"].image_size == (128, 96)
    maps = model.attention_maps(batch)[0]
    assert set(maps) == {"cam", "local", "daa"}
    assert maps["cam"].shape == maps["local"].shape == maps["daa"].shape
    assert maps["local"].sum(axis=(1, 2)) == pytest.approx([1.0] * NUM_CLASSES, rel=1e-4)


def test_focal_loss_gradients_do_not_change_when_torchscript_optimizes(monkeypatch):
    """detectron2's focal loss is a TorchScript function: its profiling executor replaces the graph
    after the first calls in a process, and the optimized backward rounds differently. OXNet's
    gradients must not depend on how often that function ran before."""
    from detectron2.modeling.meta_arch import retinanet as d2_retinanet
    from fvcore.nn import sigmoid_focal_loss

    monkeypatch.setattr(d2_retinanet, "sigmoid_focal_loss_jit", torch.jit.script(sigmoid_focal_loss))
    batch = [random_input("full", boxes=[[8, 8, 40, 40], [30, 4, 60, 20]], classes=[1, 2])]

    def gradients():
        model = _build("retinanet")
        with EventStorage(0):
            model(batch)["loss_cls"].backward()
        return [p.grad.clone() for p in model.head.parameters() if p.grad is not None]

    first = gradients()
    for _ in range(3):  # the scripted loss, had it been called, would be optimized by now
        assert all(torch.equal(a, b) for a, b in zip(first, gradients()))


def test_align_corners_option_changes_daa_pooling():
    scores = {}
    for flag in (False, True):
        cfg = tiny_cfg("daa")
        cfg.OXNET.GLOBAL_HEAD.ALIGN_CORNERS = flag
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        scores[flag] = model([random_input("full", boxes=[[8, 8, 40, 40]], classes=[1])])[0]["global_scores"]
    assert not torch.allclose(scores[False], scores[True])


def test_retinanet_losses_equal_detectron2s_without_touching_its_module(monkeypatch):
    """OXNet.losses is detectron2's RetinaNet.losses with fvcore's eager focal loss, and it leaves
    detectron2's module global alone while it runs (another thread's model may be using it)."""
    from detectron2.modeling import RetinaNet
    from detectron2.modeling.meta_arch import retinanet as d2_retinanet
    from fvcore.nn import sigmoid_focal_loss

    import oxnet.modeling.meta_arch as ours

    sentinel = object()
    monkeypatch.setattr(d2_retinanet, "sigmoid_focal_loss_jit", sentinel)
    seen = []

    def watched(*args, **kwargs):
        seen.append(d2_retinanet.sigmoid_focal_loss_jit)
        return sigmoid_focal_loss(*args, **kwargs)

    monkeypatch.setattr(ours, "sigmoid_focal_loss", watched)
    model = _build("retinanet")
    batch = [random_input("full", boxes=[[8, 8, 40, 40], [30, 4, 60, 20]], classes=[1, 2])]
    images, features, logits, deltas = model._run_network(batch)
    pred_logits, pred_deltas = model._transpose_dense_predictions([logits, deltas], [model.num_classes, 4])
    anchors = model.anchor_generator(features)
    gt_labels, gt_boxes = model.label_anchors(anchors, [batch[0]["instances"]])
    normalizer = model.loss_normalizer.clone()
    with EventStorage(0):
        got = model.losses(anchors, pred_logits, gt_labels, pred_deltas, gt_boxes)
        assert seen == [sentinel]  # called once, the module global untouched while it ran
        model.loss_normalizer.copy_(normalizer)
        monkeypatch.setattr(d2_retinanet, "sigmoid_focal_loss_jit", sigmoid_focal_loss)
        expected = RetinaNet.losses(model, anchors, pred_logits, gt_labels, pred_deltas, gt_boxes)
    assert got.keys() == expected.keys()
    for k in got:
        assert torch.equal(got[k], expected[k]), k


def test_groupnorm_head_is_built_once(monkeypatch):
    """The GroupNorm head is built once, in detectron2's order: its weights are the draws a RetinaNet
    head without norm gets from the same seed."""
    from detectron2.modeling import RetinaNet
    from detectron2.modeling.meta_arch.retinanet import RetinaNetHead

    import oxnet.modeling.meta_arch as ours

    built = []
    init = RetinaNetHead.__init__

    def counting(self, *args, **kwargs):
        built.append(kwargs.get("norm"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(RetinaNetHead, "__init__", counting)
    cfg = tiny_cfg("retinanet")
    assert cfg.MODEL.RETINANET.NORM == "GN"
    torch.manual_seed(0)
    model = build_model(cfg)
    assert built == [ours._group_norm]
    plain = cfg.clone()
    plain.MODEL.RETINANET.NORM = ""
    torch.manual_seed(0)
    reference = RetinaNet(**RetinaNet.from_config(plain))
    assert torch.equal(model.head.cls_score.weight, reference.head.cls_score.weight)
    assert torch.equal(model.head.cls_subnet[0].weight, reference.head.cls_subnet[0].weight)
    assert isinstance(model.head.cls_subnet[1], torch.nn.GroupNorm)


def test_frozen_batch_norm_statistics_keep_running_stats_and_train_the_affine():
    """OXNET.BACKBONE.FREEZE_BN_STATS (the authors' freeze_bn): BatchNorm layers stay in eval mode in
    training, so one training step leaves their running statistics as they were while their affine
    weights get gradients; without it the statistics move."""
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage
    from torch import nn

    from oxnet.testing import random_input, tiny_cfg

    for frozen in (True, False):
        cfg = tiny_cfg("daa")
        cfg.MODEL.RESNETS.NORM = "BN"
        cfg.OXNET.BACKBONE.FREEZE_BN_STATS = frozen
        torch.manual_seed(0)
        model = build_model(cfg).train()
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert bns and all(m.training is not frozen for m in bns)
        before = [m.running_mean.clone() for m in bns]
        batch = [random_input("full", boxes=[[8, 8, 30, 30]], classes=[1], labels=[0, 1, 0], seed=1)]
        batch.append(random_input("full", boxes=[[20, 4, 50, 40]], classes=[0], labels=[1, 0, 0], seed=2))
        with EventStorage(0):
            sum(model(batch).values()).backward()
        moved = [not torch.equal(m.running_mean, b) for m, b in zip(bns, before)]
        assert (not any(moved)) if frozen else all(moved)
        assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in bns)
        assert model.training  # the model itself is in training mode
