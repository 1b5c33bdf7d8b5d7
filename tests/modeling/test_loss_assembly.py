"""One training step's loss per Table 1 row, against its terms recomputed from the pure loss functions.

For every method of :mod:`oxnet.methods` (the rows of Table 1 and the extra rows), the tiny model, with
the row's own ``OXNET`` options from ``configs/table1/<method>.yaml``, takes one training forward on
fixed inputs: two full images with boxes, two weak images whose labels hold 1, 0 and -1, and two
unlabeled images, interleaved. The test records what the network produced (every ``_run_network``
pass and the backbone's last stage M) and, without the model's own assembly (``forward_omni``,
``_weak_losses``, the ``UnsupLoss`` modules), recomputes each term from those tensors with the
project's pure functions, its config weights, its running normalizers and the ramp-up scale. The
model's term names must be the row's, each term must equal its recomputed value, and the step's total
must equal their sum."""

import dataclasses
import math
import os

import numpy as np
import pytest
import torch
import yaml
from detectron2.config import CfgNode
from detectron2.layers import cat
from detectron2.modeling import build_anchor_generator, build_model
from detectron2.modeling.box_regression import Box2BoxTransform, _dense_box_regression_loss
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch.dense_detector import permute_to_N_HWA_K
from detectron2.structures import Boxes, pairwise_iou
from detectron2.utils.events import EventStorage
from fvcore.nn import sigmoid_focal_loss
from torch.nn import functional as F

from oxnet.engine.hooks import MeanTeacherHook
from oxnet.methods import get_method, method_components, method_names, second_view, uses_teacher
from oxnet.modeling import baselines
from oxnet.modeling.attention import daa_logits, local_attention, normalize_attention
from oxnet.modeling.gpa import PrototypeMemory, class_features, gpa_losses, gpa_losses_authors
from oxnet.modeling.losses import masked_bce_with_logits, soft_focal_loss, weak_negative_focal_loss
from oxnet.modeling.unsup.sfl import batch_alpha_term, filter_teacher_boxes, filtered_sfl_image
from oxnet.testing import REPO_ROOT, random_input, tiny_cfg

ITERATION = 0
TOLERANCE = dict(rtol=1e-5, atol=0.0)  # relative only: some terms are about 1e-5
#: Added to the mean teacher's classification bias (the student's prior is sigmoid(-4.6) = 0.01): its
#: targets then differ from the student's, and its detections pass the score threshold, so that the
#: filtered SFL rows keep teacher boxes and their box term is not vacuously zero.
TEACHER_BIAS_SHIFT = 4.0

DETECTOR = {"loss_cls", "loss_box_reg"}
GLOBAL = {"loss_global"}
NEG = {"loss_weak_negative"}  # weak negatives: the *_neg rows and the "plus" rows, not the paper's
GPA = {"loss_gpa_intra", "loss_gpa_inter"}
#: The loss terms of each row, written out (not derived from the method registry).
EXPECTED_TERMS = {
    "retinanet": DETECTOR,
    "retinanet_neg": DETECTOR | NEG,
    "pi_model": DETECTOR | {"loss_pi"},
    "mean_teacher": DETECTOR | {"loss_mt"},
    "mmt_psm": DETECTOR | {"loss_mmt"},
    "focalmix": DETECTOR | {"loss_focalmix"},
    "pi_model_mt": DETECTOR | GLOBAL | {"loss_pi"},
    "mean_teacher_mt": DETECTOR | GLOBAL | {"loss_mt"},
    "mmt_psm_mt": DETECTOR | GLOBAL | {"loss_mmt"},
    "focalmix_mt": DETECTOR | GLOBAL | {"loss_focalmix"},
    "gap": DETECTOR | GLOBAL,
    "sfl": DETECTOR | {"loss_sfl"},
    "daa": DETECTOR | GLOBAL,
    "daa_gpa": DETECTOR | GLOBAL | GPA,
    "oxnet": DETECTOR | GLOBAL | GPA | {"loss_sfl"},
    "daa_neg": DETECTOR | GLOBAL | NEG,
    "oxnet_neg": DETECTOR | GLOBAL | GPA | NEG | {"loss_sfl"},
    "oxnet_plus": DETECTOR | GLOBAL | GPA | NEG | {"loss_sfl", "loss_sfl_box"},
    "sfl_plus": DETECTOR | NEG | {"loss_sfl", "loss_sfl_box"},
    "retinanet_authors": DETECTOR,
    "oxnet_authors": DETECTOR | GLOBAL | GPA | {"loss_sfl", "loss_sfl_box"},
}


@dataclasses.dataclass
class NetworkPass:
    """One call of ``OXNet._run_network``: its input images and outputs (per-level maps)."""

    inputs: list
    image_key: str
    with_boxes: bool
    features: list
    logits: list
    deltas: list


@dataclasses.dataclass
class Step:
    cfg: CfgNode
    model: torch.nn.Module
    batch: list
    loss_dict: dict
    passes: list  # NetworkPass of the student, in call order
    last_stage: torch.Tensor  # M of the student's main pass (None without a global head)
    buffers: dict  # the student's buffers before the forward


# ---------------------------------------------------------------------------------------- the step
def row_cfg(method):
    """``tiny_cfg(method)`` plus the row's own ``OXNET`` options (``configs/table1/<method>.yaml`` without
    its ``_BASE_``): the "_plus" rows set filtered SFL and a zero-initialized global head."""
    cfg = tiny_cfg(method)
    path = os.path.join(REPO_ROOT, "configs", "table1", f"{method}.yaml")
    if get_method(method).warm_start != "retinanet":  # the authors' recipe: its whole OXNET chain
        full = tiny_cfg(method)
        full.merge_from_file(path)
        own = yaml.safe_load(full.OXNET.dump())
        own.pop("INPUT_SIZE")
        r = full.MODEL.RETINANET  # and their box coder
        cfg.MODEL.RETINANET.BBOX_REG_WEIGHTS, cfg.MODEL.RETINANET.SMOOTH_L1_LOSS_BETA = (
            r.BBOX_REG_WEIGHTS,
            r.SMOOTH_L1_LOSS_BETA,
        )
    else:
        with open(path, encoding="utf-8") as f:
            own = yaml.safe_load(f).get("OXNET", {})
    cfg.merge_from_other_cfg(CfgNode({"OXNET": own}))
    return cfg


def make_batch(method):
    """Two full, two weak and two unlabeled images, interleaved (the model must select each stream by
    its tag). Weak and unlabeled images get ``image_weak`` (a different fixed image) where the method's
    mapper makes a second view."""
    batch = [
        random_input(
            "full", boxes=[[6, 6, 30, 30], [28, 34, 60, 62]], classes=[0, 2], labels=[1, 0, 1], seed=1
        ),
        random_input("weak", labels=[1, 0, -1], seed=2),
        random_input("unlabeled", seed=3),
        random_input("full", boxes=[[10, 8, 42, 40]], classes=[1], labels=[0, 1, -1], seed=4),
        random_input("weak", labels=[-1, 1, 0], seed=5),
        random_input("unlabeled", seed=6),
    ]
    if second_view(method):
        for i, x in enumerate(batch):
            if x["supervision"] != "full":
                x["image_weak"] = random_input("unlabeled", seed=100 + i)["image"]
    return batch


def attach_teacher_targets(cfg, model, batch):
    """The mean teacher's targets, attached as ``OXnetTrainer`` / ``OmniStepTrainer.run_step`` do."""
    mmt = method_components(cfg.OXNET.METHOD)["unsup"] == "mmt_psm"
    hook = MeanTeacherHook(
        model,
        cfg.OXNET.TEACHER.EMA_DECAY,
        views=cfg.OXNET.MMT_PSM.VIEWS if mmt else 1,
        noise_std=cfg.OXNET.MMT_PSM.NOISE_STD,
        buffers=cfg.OXNET.TEACHER.BUFFERS,
    )
    with torch.no_grad():
        # the authors' teacher keeps boxes above 0.5 only: one more unit of bias puts some above
        authors = cfg.OXNET.SFL.TEACHER_BOXES == "authors"
        hook.teacher.head.cls_score.bias.add_(TEACHER_BIAS_SHIFT + (1.0 if authors else 0.0))
    hook.attach_soft_targets(batch, ITERATION)
    if mmt:
        assert all("teacher_std" in x for x in batch if x["supervision"] != "full")


def run_step(method):
    """One training forward of the row's tiny model on :func:`make_batch`, recording the network's
    outputs and the buffers it started from."""
    cfg = row_cfg(method)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    if model.prototypes is not None and cfg.OXNET.GLOBAL_HEAD.INIT == "zero":
        # a zero-initialized head gives every image the same confidence, so a first update (beta 0)
        # makes the prototype the batch mean and the authors' intra term 0: start from prototypes
        with torch.no_grad():
            model.prototypes.prototypes.normal_(0, 0.1, generator=torch.Generator().manual_seed(5))
            model.prototypes.initialized.fill_(True)
    batch = make_batch(method)
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    passes, last_stages = [], []
    with EventStorage(ITERATION):
        if uses_teacher(method):
            attach_teacher_targets(cfg, model, batch)  # before the spies: the teacher is a deep copy
        network = model._run_network

        def spy(batched_inputs, image_key="image", with_boxes=True, dtype=None):
            out = network(batched_inputs, image_key, with_boxes, dtype)
            passes.append(
                NetworkPass([x[image_key] for x in batched_inputs], image_key, with_boxes, *out[1:])
            )
            return out

        model._run_network = spy
        bottom_up = getattr(model.backbone, "bottom_up", model.backbone)
        handle = bottom_up.register_forward_hook(
            lambda module, inputs, outputs: last_stages.append(outputs[cfg.OXNET.GLOBAL_HEAD.IN_FEATURE])
        )
        try:
            loss_dict = model(batch)
        finally:
            handle.remove()
            del model._run_network
    last_stage = last_stages[0] if method_components(method)["global_head"] else None
    return Step(cfg, model, batch, loss_dict, passes, last_stage, buffers)


def dense(maps, k):
    """Per-level (B, A*K, H, W) maps as one (B, R, K) tensor over all anchors of all levels."""
    return cat([permute_to_N_HWA_K(x, k) for x in maps], dim=1)


def step_anchors(step):
    """The anchors (per level ``Boxes``) of the main pass's FPN features, from a fresh anchor generator."""
    cfg, backbone = step.cfg, step.model.backbone
    shapes = [backbone.output_shape()[f] for f in cfg.MODEL.RETINANET.IN_FEATURES]
    return build_anchor_generator(cfg, shapes)(step.passes[0].features)


def rampup_scale(cfg, iteration):
    """Laine & Aila's ramp-up after the burn-in (``OXNET.RAMPUP``), written out."""
    t = iteration - cfg.OXNET.RAMPUP.BURN_IN_ITERS
    if t < 0:
        return 0.0
    if cfg.OXNET.RAMPUP.ITERS <= 0:
        return 1.0
    return math.exp(-5.0 * (1.0 - min(t, cfg.OXNET.RAMPUP.ITERS) / cfg.OXNET.RAMPUP.ITERS) ** 2)


# ---------------------------------------------------------------------------- one helper per family
def retinanet_terms(step, anchors):
    """RetinaNet's focal and box losses on the full images (fvcore's ``sigmoid_focal_loss``, detectron2's
    ``_dense_box_regression_loss``; anchors labelled with a fresh ``Matcher``), divided by the loss
    normalizer after its EMA update. Returns the terms, that normalizer, and the positives per full
    image after their EMA update (which normalizes the losses on images without boxes)."""
    cfg, batch, main = step.cfg, step.batch, step.passes[0]
    r = cfg.MODEL.RETINANET
    k = r.NUM_CLASSES
    full = [i for i, x in enumerate(batch) if x["supervision"] == "full"]
    matcher = Matcher(r.IOU_THRESHOLDS, r.IOU_LABELS, allow_low_quality_matches=True)
    all_anchors = Boxes.cat(anchors)
    gt_labels, gt_boxes = [], []
    for i in full:
        inst = batch[i]["instances"]
        matched, anchor_labels = matcher(pairwise_iou(inst.gt_boxes, all_anchors))
        labels = inst.gt_classes[matched].clone()
        labels[anchor_labels == 0] = k
        labels[anchor_labels == -1] = -1
        gt_labels.append(labels)
        gt_boxes.append(inst.gt_boxes.tensor[matched])
    gt_labels = torch.stack(gt_labels)
    valid = gt_labels >= 0
    positive = valid & (gt_labels != k)
    num_pos = int(positive.sum())
    assert num_pos > 0, "the full images' boxes must match anchors (else the box loss is vacuous)"
    normalizer = 0.9 * step.buffers["loss_normalizer"] + 0.1 * max(num_pos, 1)
    positives_per_image = 0.9 * step.buffers["positives_per_image"] + 0.1 * max(num_pos / len(full), 1.0)

    sel = torch.as_tensor(full)
    logits = dense(main.logits, k)[sel]
    targets = F.one_hot(gt_labels[valid], num_classes=k + 1)[:, :-1].to(logits.dtype)
    loss_cls = sigmoid_focal_loss(
        logits[valid], targets, alpha=r.FOCAL_LOSS_ALPHA, gamma=r.FOCAL_LOSS_GAMMA, reduction="sum"
    )
    loss_box = _dense_box_regression_loss(
        anchors,
        Box2BoxTransform(weights=r.BBOX_REG_WEIGHTS),
        [permute_to_N_HWA_K(x, 4)[sel] for x in main.deltas],
        gt_boxes,
        positive,
        box_reg_loss_type=r.BBOX_REG_LOSS_TYPE,
        smooth_l1_beta=r.SMOOTH_L1_LOSS_BETA,
    )
    terms = {"loss_cls": loss_cls / normalizer, "loss_box_reg": loss_box / normalizer}
    return terms, normalizer, positives_per_image


def labelled(batch, levels):
    """Indices and (B, K) image labels of the inputs of ``levels`` that carry image labels."""
    idx = [i for i, x in enumerate(batch) if x["supervision"] in levels and "image_labels" in x]
    return idx, torch.stack([batch[i]["image_labels"] for i in idx])


def global_head_terms(step):
    """The global head's BCE (Eq. 1) on full and weak images: the CAM is the 1x1 convolution of M,
    pooled by GAP or by DAA (``local_attention``, ``normalize_attention``, ``daa_logits``), then
    ``masked_bce_with_logits`` times ``GLOBAL_HEAD.LOSS_WEIGHT``. With GPA, a copy of the prototypes as
    they were before the step takes Eq. 5 (``PrototypeMemory.update``) and Eq. 6 (``gpa_losses`` or
    ``gpa_losses_authors``) gives the intra/inter terms times their weights. Returns the terms and the
    updated prototype memory (or None)."""
    cfg, model, g = step.cfg, step.model, step.cfg.OXNET.GLOBAL_HEAD
    k = cfg.MODEL.RETINANET.NUM_CLASSES
    assert g.ATTENTION_GRAD == "all"  # other modes change gradients only, not values
    m = step.last_stage.float()
    conv = model.global_head.conv
    cam = F.conv2d(m, conv.weight, conv.bias)
    mode = method_components(cfg.OXNET.METHOD)["global_head"]
    if mode == "gap":
        logits, attention = cam.mean(dim=(2, 3)), None
    else:
        attention = normalize_attention(
            local_attention(step.passes[0].logits, k, cam.shape[-2:], g.ALIGN_CORNERS)
        )
        logits = daa_logits(cam, attention)
    idx, labels = labelled(step.batch, ("full", "weak"))
    sel = torch.as_tensor(idx)
    terms = {"loss_global": g.LOSS_WEIGHT * masked_bce_with_logits(logits[sel], labels, g.BCE_REDUCTION)}
    if not method_components(cfg.OXNET.METHOD)["gpa"]:
        return terms, None
    p = cfg.OXNET.GPA
    memory = PrototypeMemory(k, m.shape[1], p.MOMENTUM, p.ABSENT_DECAY)
    memory.load_state_dict(
        {name: step.buffers[f"prototypes.{name}"] for name in ("prototypes", "initialized")}
    )
    feats = class_features(m[sel], attention[sel], p.VIEW_BUG)  # Eq. 4
    positives = labels == 1
    memory.update(feats, logits[sel].sigmoid(), positives)  # Eq. 5
    losses_fn = gpa_losses if p.FORM == "paper" else gpa_losses_authors
    intra, inter = losses_fn(feats, memory.prototypes, positives, memory.initialized, p.MARGIN)  # Eq. 6
    terms.update(loss_gpa_intra=p.INTRA_WEIGHT * intra, loss_gpa_inter=p.INTER_WEIGHT * inter)
    return terms, memory


def weak_negative_term(step, normalizer):
    """``weak_negative_focal_loss`` on the weak images' dense logits and labels, divided by RetinaNet's
    loss normalizer (after its update)."""
    r = step.cfg.MODEL.RETINANET
    idx, labels = labelled(step.batch, ("weak",))
    logits = dense(step.passes[0].logits, r.NUM_CLASSES)[torch.as_tensor(idx)]
    loss = weak_negative_focal_loss(logits, labels, r.FOCAL_LOSS_ALPHA, r.FOCAL_LOSS_GAMMA)
    return {"loss_weak_negative": loss / normalizer}


def extra_pass(step, image_key, images):
    """The student's second network pass: it must be the only one, on exactly ``images``; returns its
    dense class logits (B, R, K)."""
    assert len(step.passes) == 2, [p.image_key for p in step.passes]
    second = step.passes[1]
    assert second.image_key == image_key and not second.with_boxes
    torch.testing.assert_close(
        torch.stack(second.inputs), torch.stack(images), rtol=0, atol=0, msg=f"{image_key}: other images"
    )
    return dense(second.logits, step.cfg.MODEL.RETINANET.NUM_CLASSES)


def pi_model_terms(step, soft, student, positives_per_image):
    """Pi model: ``pi_consistency`` between the student's logits on ``image`` and on ``image_weak``
    (a second student pass), summed, divided by the images times the positives per full image, times
    ``CONSISTENCY.WEIGHT`` (as every baseline below)."""
    other = extra_pass(step, "image_weak", [x["image_weak"] for x in soft])
    loss = baselines.pi_consistency(student, other).sum()
    return {"loss_pi": step.cfg.OXNET.CONSISTENCY.WEIGHT * loss / (len(soft) * positives_per_image)}


def mean_teacher_terms(step, soft, student, positives_per_image):
    """Mean Teacher: ``mean_teacher_consistency`` against the teacher's probabilities."""
    teacher = torch.stack([x["teacher_probs"] for x in soft])
    loss = baselines.mean_teacher_consistency(student, teacher).sum()
    return {"loss_mt": step.cfg.OXNET.CONSISTENCY.WEIGHT * loss / (len(soft) * positives_per_image)}


def mmt_psm_terms(step, soft, student, positives_per_image):
    """MMT-PSM: ``mmt_psm_consistency`` against the teacher's mean over its views, on the
    ``SELECT_FRACTION`` entries whose spread over the views is largest."""
    teacher = torch.stack([x["teacher_probs"] for x in soft])
    spread = torch.stack([x["teacher_std"] for x in soft])
    fraction = step.cfg.OXNET.MMT_PSM.SELECT_FRACTION
    loss = baselines.mmt_psm_consistency(student, teacher, spread, fraction).sum()
    return {"loss_mmt": step.cfg.OXNET.CONSISTENCY.WEIGHT * loss / (len(soft) * positives_per_image)}


def focalmix_terms(step, soft, student, positives_per_image):
    """FocalMix: the teacher's probabilities sharpened (``sharpen``), MixUp (``mixup``) of the images
    and targets with lambda and the permutation drawn from ``default_rng(iteration + 7919)`` (lambda
    folded to ``max(l, 1 - l)``), a student pass on the mixed images (checked to be exactly these) and
    ``soft_target_focal_loss`` on it."""
    f = step.cfg.OXNET.FOCALMIX
    targets = baselines.sharpen(torch.stack([x["teacher_probs"] for x in soft]), f.TEMPERATURE)
    rng = np.random.default_rng(ITERATION + 7919)
    lam = float(rng.beta(f.MIXUP_ALPHA, f.MIXUP_ALPHA))
    lam = max(lam, 1.0 - lam)
    perm = torch.as_tensor(rng.permutation(len(soft)))
    assert lam < 1.0 and not torch.equal(perm, torch.arange(len(soft)))  # a real mix
    images = torch.stack([x["image"] for x in soft])
    mixed, mixed_targets = baselines.mixup(images, targets, lam, perm)
    logits = extra_pass(step, "image", list(mixed))
    loss = baselines.soft_target_focal_loss(logits, mixed_targets, f.ALPHA, f.GAMMA).sum()
    return {"loss_focalmix": step.cfg.OXNET.CONSISTENCY.WEIGHT * loss / (len(soft) * positives_per_image)}


def sfl_terms(step, soft, student, positives_per_image):
    """SFL (Eq. 8). Dense: ``soft_focal_loss`` on every anchor and class, per image and positive
    anchor. Filtered: per weak image, the teacher's boxes of its labelled classes
    (``filter_teacher_boxes``) and ``filtered_sfl_image``; unlabeled images dense (``SFL.UNLABELED``)
    over the positives per image; both averaged over the counted images. Times ``SFL.WEIGHT``."""
    s, r = step.cfg.OXNET.SFL, step.cfg.MODEL.RETINANET
    teacher = torch.stack([x["teacher_probs"] for x in soft])
    if s.MODE == "dense":
        loss = soft_focal_loss(student, teacher, s.ALPHA, s.EPS, s.GAMMA).sum()
        return {"loss_sfl": s.WEIGHT * loss / (len(soft) * positives_per_image)}
    weak = torch.as_tensor([j for j, x in enumerate(soft) if x["supervision"] == "weak"])
    alpha_term = batch_alpha_term(teacher[weak], s.ALPHA, s.EPS) if s.ALPHA_BATCH_BUG else None
    main = step.passes[0]
    soft_idx = torch.as_tensor([i for i, x in enumerate(step.batch) if x["supervision"] != "full"])
    deltas = dense(main.deltas, 4)[soft_idx]
    anchors = cat([a.tensor for a in step_anchors(step)])
    coder = Box2BoxTransform(weights=r.BBOX_REG_WEIGHTS)
    cls_total, box_total, counted, filtered = 0.0, 0.0, 0, 0
    for j, x in enumerate(soft):
        if x["supervision"] != "weak":
            if s.UNLABELED == "dense":
                unlabeled = soft_focal_loss(student[j], teacher[j], s.ALPHA, s.EPS, s.GAMMA).sum()
                cls_total, counted = cls_total + unlabeled / positives_per_image, counted + 1
            continue
        counted += 1
        boxes, _ = filter_teacher_boxes(x["teacher_boxes"], x["teacher_classes"], x["image_labels"])
        if len(boxes) == 0:
            continue
        cls, reg, num_pos = filtered_sfl_image(
            student[j],
            deltas[j],
            teacher[j],
            boxes,
            anchors,
            coder,
            s.ALPHA,
            s.EPS,
            s.GAMMA,
            "authors" if s.BOX_LOSS == "authors" else r.BBOX_REG_LOSS_TYPE,
            r.SMOOTH_L1_LOSS_BETA,
            alpha_term,
        )
        assert num_pos > 0
        cls_total, box_total, filtered = cls_total + cls, box_total + reg, filtered + 1
    assert filtered == 2, "both weak images must keep teacher boxes (else the filtered branch is vacuous)"
    n = max(counted, 1)
    return {"loss_sfl": s.WEIGHT * cls_total / n, "loss_sfl_box": s.WEIGHT * box_total / n}


UNSUP_TERMS = {
    "pi": pi_model_terms,
    "mean_teacher": mean_teacher_terms,
    "mmt_psm": mmt_psm_terms,
    "focalmix": focalmix_terms,
    "sfl": sfl_terms,
}


def unsup_terms(step, positives_per_image):
    """The method's loss on the weak and unlabeled images (weak ones count as unlabeled), from the
    student's dense logits of its main pass on them. The baselines and dense SFL divide by the number
    of these images times the positives per full image."""
    unsup = method_components(step.cfg.OXNET.METHOD)["unsup"]
    idx = [i for i, x in enumerate(step.batch) if x["supervision"] in ("weak", "unlabeled")]
    soft = [step.batch[i] for i in idx]
    student = dense(step.passes[0].logits, step.cfg.MODEL.RETINANET.NUM_CLASSES)[torch.as_tensor(idx)]
    return UNSUP_TERMS[unsup](step, soft, student, positives_per_image)


def recompute_terms(step):
    """Every loss term of the step, from the recorded tensors; the terms beyond RetinaNet's on boxed
    images are multiplied by the ramp-up scale. Also returns the normalizers and prototypes that the
    step should have left in the model's buffers."""
    names = EXPECTED_TERMS[step.cfg.OXNET.METHOD]
    terms, normalizer, positives_per_image = retinanet_terms(step, step_anchors(step))
    extra, memory = {}, None
    if "loss_global" in names:
        global_terms, memory = global_head_terms(step)
        extra.update(global_terms)
    if "loss_weak_negative" in names:
        extra.update(weak_negative_term(step, normalizer))
    if method_components(step.cfg.OXNET.METHOD)["unsup"]:
        extra.update(unsup_terms(step, positives_per_image))
    scale = rampup_scale(step.cfg, ITERATION)
    terms.update({name: value * scale for name, value in extra.items()})
    buffers = {"loss_normalizer": normalizer, "positives_per_image": positives_per_image}
    if memory is not None:
        buffers.update({f"prototypes.{n}": b for n, b in memory.named_buffers()})
    return terms, buffers


# -------------------------------------------------------------------------------------------- tests
def test_every_row_has_its_expected_terms():
    """The table of expected terms covers exactly the registered methods."""
    assert set(EXPECTED_TERMS) == set(method_names())


@pytest.mark.parametrize("method", method_names())
def test_step_loss_is_the_sum_of_its_terms(method):
    """One training step of the row on fixed inputs: (a) each loss term equals its value recomputed
    from the network's recorded outputs with the pure loss functions, weights, normalizers and ramp-up
    scale; (b) the term names are exactly the row's; (c) the step's total loss equals the sum of the
    recomputed terms. The normalizers and GPA prototypes the step leaves are the recomputed ones."""
    step = run_step(method)
    assert set(step.loss_dict) == EXPECTED_TERMS[method], sorted(step.loss_dict)
    # the tiny config trains every term at full weight from iteration 0
    assert rampup_scale(step.cfg, ITERATION) == 1.0
    with torch.no_grad():
        expected, buffers = recompute_terms(step)
    assert set(expected) == EXPECTED_TERMS[method]
    for name, value in expected.items():
        assert value > 0, f"{name} is {float(value)}: the fixed inputs leave it vacuous"
        torch.testing.assert_close(
            step.loss_dict[name].detach(),
            torch.as_tensor(value, dtype=torch.float32),
            **TOLERANCE,
            msg=lambda m, name=name: f"{method}: {name}: {m}",
        )
    total = sum(step.loss_dict.values())
    torch.testing.assert_close(total.detach(), torch.as_tensor(sum(expected.values())).float(), **TOLERANCE)
    model_buffers = dict(step.model.named_buffers())
    for name, value in buffers.items():
        torch.testing.assert_close(model_buffers[name], torch.as_tensor(value).to(model_buffers[name].dtype))
