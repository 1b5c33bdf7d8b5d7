"""The OXnet meta-architecture: RetinaNet + global head (GAP or DAA) + GPA + soft focal loss."""

import math

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, RetinaNet
from detectron2.modeling.anchor_generator import build_anchor_generator
from detectron2.modeling.backbone import build_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.modeling.box_regression import Box2BoxTransform, _dense_box_regression_loss
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage
from fvcore.nn import sigmoid_focal_loss
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F

from oxnet.methods import check_method_config, method_components, uses_weak_negatives
from oxnet.utils.events import current_iteration

from .attention import ATTENTION_GRAD_MODES, daa_logits, gate_attention, local_attention, normalize_attention
from .global_head import GlobalHead
from .gpa import GPA_FORMS, PrototypeMemory, class_features, gpa_losses, gpa_losses_authors
from .losses import BCE_REDUCTIONS, masked_bce_with_logits, weak_negative_focal_loss
from .precision import Float32LastLevelP6P7, network_autocast, resolve_dtype
from .teacher_boxes import TEACHER_BOX_MODES, authors_teacher_boxes
from .unsup import UnsupLoss, build_unsup_loss

SOFT_TARGET_LEVELS = ("weak", "unlabeled")  # SFL is applied to D_W and D_U (Sec. 2.4)
IMAGE_LABEL_LEVELS = ("full", "weak")  # weak losses are applied to D_W and D_F (Sec. 2.4)


def _group_norm(channels):
    return nn.GroupNorm(min(32, channels), channels)


def retinanet_parts(cfg):
    """detectron2 v0.6's ``RetinaNet.from_config``, with a GroupNorm head (``MODEL.RETINANET.NORM``
    "GN") built once: v0.6's ``RetinaNetHead`` probes ``get_norm("GN", 1)``, which fails, so the head
    gets a GroupNorm callable instead of the string. Built in detectron2's order (backbone, head,
    anchors), so the head's weights are the random draws a head without norm would get."""
    if cfg.MODEL.RETINANET.NORM != "GN":
        return RetinaNet.from_config(cfg)
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    feature_shapes = [shapes[f] for f in cfg.MODEL.RETINANET.IN_FEATURES]
    head = RetinaNetHead(**{**RetinaNetHead.from_config(cfg, feature_shapes), "norm": _group_norm})
    r = cfg.MODEL.RETINANET
    return {
        "backbone": backbone,
        "head": head,
        "anchor_generator": build_anchor_generator(cfg, feature_shapes),
        "box2box_transform": Box2BoxTransform(weights=r.BBOX_REG_WEIGHTS),
        "anchor_matcher": Matcher(r.IOU_THRESHOLDS, r.IOU_LABELS, allow_low_quality_matches=True),
        "pixel_mean": cfg.MODEL.PIXEL_MEAN,
        "pixel_std": cfg.MODEL.PIXEL_STD,
        "num_classes": r.NUM_CLASSES,
        "head_in_features": r.IN_FEATURES,
        "focal_loss_alpha": r.FOCAL_LOSS_ALPHA,
        "focal_loss_gamma": r.FOCAL_LOSS_GAMMA,
        "smooth_l1_beta": r.SMOOTH_L1_LOSS_BETA,
        "box_reg_loss_type": r.BBOX_REG_LOSS_TYPE,
        "test_score_thresh": r.SCORE_THRESH_TEST,
        "test_topk_candidates": r.TOPK_CANDIDATES_TEST,
        "test_nms_thresh": r.NMS_THRESH_TEST,
        "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        "vis_period": cfg.VIS_PERIOD,
        "input_format": cfg.INPUT.FORMAT,
    }


@META_ARCH_REGISTRY.register()
class OXNet(RetinaNet):
    """RetinaNet trained from boxes, image labels and unlabeled images at once (the OXnet paper).

    Training input: a list of dicts from :class:`oxnet.data.OmniDatasetMapper`, each tagged with
    ``"supervision"`` ("full", "weak" or "unlabeled"). Full images carry ``"instances"``; full and weak
    images carry ``"image_labels"`` (K,) with 1 / 0 / -1 (positive / negative / masked); weak and
    unlabeled images carry ``"teacher_probs"`` (R, K), the mean teacher's dense probabilities on the
    weak view, when the soft focal loss is enabled (the trainer attaches them).

    Losses: RetinaNet's focal and box regression losses on full images (a full image without boxes
    trains as background everywhere); the global BCE (Eq. 1) and GPA's intra/inter losses (Eq. 6) on
    full and weak images; the soft focal loss (Eq. 8) on weak and unlabeled images. The
    semi-supervised baselines of Table 1 (:mod:`oxnet.modeling.baselines`) replace the soft focal
    loss by theirs, on the same images: weak images count as unlabeled for a method without a global
    head. The Pi model reads its second stochastic view from ``"image_weak"``; MMT-PSM also reads
    ``"teacher_std"`` (R, K), the spread of the teacher's probabilities over perturbed views.

    Inference output: RetinaNet's ``"instances"`` plus ``"global_scores"`` (K,) for models with a
    global head.
    """

    @configurable
    def __init__(
        self,
        *,
        global_mode: str = "",
        global_in_feature: str = "res5",
        global_head: GlobalHead = None,
        global_loss_weight: float = 1.0,
        attention_grad: str = "all",
        bce_reduction: str = "mean",
        align_corners: bool = False,
        gpa_form: str = "paper",
        prototypes: PrototypeMemory = None,
        gpa_margin: float = 1.0,
        gpa_intra_weight: float = 1.0,
        gpa_inter_weight: float = 1.0,
        gpa_view_bug: bool = False,
        teacher_boxes: str = "inference",
        teacher_box_index_bug: bool = False,
        freeze_bn_stats: bool = False,
        unsup_loss: UnsupLoss = None,
        weak_negatives: bool = False,
        burn_in: int = 0,
        rampup: int = 0,
        amp_dtype: torch.dtype = None,
        inference_dtype: torch.dtype = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Autocast dtype of the network pass (None: float32) in training (the student and, in its
        # copy, the mean teacher) and in inference (oxnet.modeling.precision).
        self.amp_dtype, self.inference_dtype = amp_dtype, inference_dtype
        top_block = getattr(self.backbone, "top_block", None)
        if type(top_block) is LastLevelP6P7:  # P6/P7 in float32 under autocast (see the class)
            top_block.__class__ = Float32LastLevelP6P7
        if global_mode not in ("", "gap", "daa"):
            raise ValueError(f"global head mode must be '', 'gap' or 'daa', got {global_mode!r}")
        if prototypes is not None and global_mode != "daa":
            raise ValueError("GPA needs the DAA global head: its class features use the local attention R")
        if attention_grad not in ATTENTION_GRAD_MODES:
            raise ValueError(
                f"OXNET.GLOBAL_HEAD.ATTENTION_GRAD must be one of {ATTENTION_GRAD_MODES}, "
                f"got {attention_grad!r}"
            )
        self.global_mode = global_mode
        self.attention_grad = attention_grad
        self.global_in_feature = global_in_feature
        self.global_head = global_head
        self.global_loss_weight = global_loss_weight
        if bce_reduction not in BCE_REDUCTIONS:
            raise ValueError(
                f"OXNET.GLOBAL_HEAD.BCE_REDUCTION must be one of {BCE_REDUCTIONS}, got {bce_reduction!r}"
            )
        self.bce_reduction = bce_reduction
        if gpa_form not in GPA_FORMS:
            raise ValueError(f"OXNET.GPA.FORM must be one of {GPA_FORMS}, got {gpa_form!r}")
        self.align_corners, self.gpa_form = bool(align_corners), gpa_form
        if teacher_boxes not in TEACHER_BOX_MODES:
            raise ValueError(
                f"OXNET.SFL.TEACHER_BOXES must be one of {TEACHER_BOX_MODES}, got {teacher_boxes!r}"
            )
        # the mean teacher (a copy of this model) reads these when it selects its boxes
        self.teacher_boxes, self.teacher_box_index_bug = teacher_boxes, bool(teacher_box_index_bug)
        self.gpa_view_bug = bool(gpa_view_bug)
        self.freeze_bn_stats = bool(freeze_bn_stats)
        self.prototypes = prototypes
        self.gpa_margin = gpa_margin
        self.gpa_intra_weight = gpa_intra_weight
        self.gpa_inter_weight = gpa_inter_weight
        self.unsup_loss = unsup_loss
        self.unsup = unsup_loss.name if unsup_loss is not None else ""
        self.weak_negatives = weak_negatives
        if burn_in < 0 or rampup < 0:
            raise ValueError(f"OXNET.RAMPUP.BURN_IN_ITERS and ITERS must be >= 0, got {burn_in} and {rampup}")
        self.burn_in, self.rampup = burn_in, rampup
        # Loss normalizers are buffers (not Python floats) so that checkpoints and resumed runs keep them.
        self.register_buffer("loss_normalizer", torch.tensor(100.0))
        self.register_buffer("positives_per_image", torch.tensor(100.0))
        self._bottom_up_features = None
        if global_mode:
            bottom_up = getattr(self.backbone, "bottom_up", self.backbone)
            bottom_up.register_forward_hook(self._keep_bottom_up_features)

    @classmethod
    def from_config(cls, cfg):
        ret = retinanet_parts(cfg)
        check_method_config(cfg)
        parts = method_components(cfg.OXNET.METHOD)
        num_classes = cfg.MODEL.RETINANET.NUM_CLASSES
        ret.update(
            global_mode=parts["global_head"],
            unsup_loss=build_unsup_loss(parts["unsup"], cfg),
            weak_negatives=uses_weak_negatives(cfg),
            burn_in=cfg.OXNET.RAMPUP.BURN_IN_ITERS,
            rampup=cfg.OXNET.RAMPUP.ITERS,
            teacher_boxes=cfg.OXNET.SFL.TEACHER_BOXES,
            teacher_box_index_bug=cfg.OXNET.SFL.TEACHER_BOX_INDEX_BUG,
            freeze_bn_stats=cfg.OXNET.BACKBONE.FREEZE_BN_STATS,
            amp_dtype=resolve_dtype(cfg.OXNET.AMP.DTYPE, cfg.MODEL.DEVICE)
            if cfg.SOLVER.AMP.ENABLED
            else None,
            inference_dtype=resolve_dtype(cfg.OXNET.AMP.INFERENCE, cfg.MODEL.DEVICE, "OXNET.AMP.INFERENCE"),
        )
        if parts["global_head"]:
            backbone = ret["backbone"]
            bottom_up = getattr(backbone, "bottom_up", backbone)
            feature = cfg.OXNET.GLOBAL_HEAD.IN_FEATURE
            shapes = bottom_up.output_shape()
            if feature not in shapes:
                raise ValueError(
                    f"OXNET.GLOBAL_HEAD.IN_FEATURE={feature!r} is not an output of the "
                    f"backbone ({sorted(shapes)}); add it to MODEL.RESNETS.OUT_FEATURES"
                )
            channels = shapes[feature].channels
            ret.update(
                global_in_feature=feature,
                global_head=GlobalHead(channels, num_classes, init=cfg.OXNET.GLOBAL_HEAD.INIT),
                global_loss_weight=cfg.OXNET.GLOBAL_HEAD.LOSS_WEIGHT,
                attention_grad=cfg.OXNET.GLOBAL_HEAD.ATTENTION_GRAD,
                bce_reduction=cfg.OXNET.GLOBAL_HEAD.BCE_REDUCTION,
                align_corners=cfg.OXNET.GLOBAL_HEAD.ALIGN_CORNERS,
            )
            if parts["gpa"]:
                ret.update(
                    prototypes=PrototypeMemory(
                        num_classes, channels, cfg.OXNET.GPA.MOMENTUM, cfg.OXNET.GPA.ABSENT_DECAY
                    ),
                    gpa_view_bug=cfg.OXNET.GPA.VIEW_BUG,
                    gpa_margin=cfg.OXNET.GPA.MARGIN,
                    gpa_intra_weight=cfg.OXNET.GPA.INTRA_WEIGHT,
                    gpa_inter_weight=cfg.OXNET.GPA.INTER_WEIGHT,
                    gpa_form=cfg.OXNET.GPA.FORM,
                )
        return ret

    # ------------------------------------------------------------------ helpers
    def train(self, mode: bool = True):
        """``nn.Module.train``; with ``OXNET.BACKBONE.FREEZE_BN_STATS`` every BatchNorm layer stays in
        eval mode (running statistics frozen, affine weights trained), as the authors' ``freeze_bn``."""
        super().train(mode)
        if mode and self.freeze_bn_stats:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _keep_bottom_up_features(self, module, inputs, outputs):
        self._bottom_up_features = outputs

    def _ema_update(self, name, value, initial_value, momentum=0.9):
        """EMA of a loss normalizer, kept in a buffer and averaged over processes so that every
        process normalizes (and checkpoints) the same value."""
        buf = getattr(self, name)
        value = torch.tensor(float(value), device=buf.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(value)
            value /= dist.get_world_size()
        buf.mul_(momentum).add_((1 - momentum) * value)
        return buf.item()

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes):
        """RetinaNet's focal and box losses: detectron2 v0.6's ``RetinaNet.losses`` line for line, with
        fvcore's eager ``sigmoid_focal_loss`` where detectron2 calls its TorchScript twin
        ``sigmoid_focal_loss_jit``. TorchScript's profiling executor replaces a function's graph after
        its first calls in a process, and the optimized backward rounds differently: a run's
        gradients, hence its result, would depend on what ran before it in the same process. Written
        out rather than by swapping detectron2's module global during the call, which would change the
        loss of any other model running in another thread meanwhile (the service runs models side by
        side)."""
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R)
        valid_mask = gt_labels >= 0
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum().item()
        get_event_storage().put_scalar("num_pos_anchors", num_pos_anchors / num_images)
        normalizer = self._ema_update("loss_normalizer", max(num_pos_anchors, 1), 100)
        # no loss for the last (background) class
        gt_labels_target = F.one_hot(gt_labels[valid_mask], num_classes=self.num_classes + 1)[:, :-1]
        loss_cls = sigmoid_focal_loss(
            cat(pred_logits, dim=1)[valid_mask],
            gt_labels_target.to(pred_logits[0].dtype),
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )
        loss_box_reg = _dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        return {"loss_cls": loss_cls / normalizer, "loss_box_reg": loss_box_reg / normalizer}

    def preprocess_image(self, batched_inputs):
        """detectron2's normalization and padding; a model with one input channel
        (``len(MODEL.PIXEL_MEAN) == 1``, e.g. a chest X-ray pretrained stem) takes the first channel of
        the grey images the data pipeline replicates to three."""
        if self.pixel_mean.shape[0] == 1:
            batched_inputs = [{**x, "image": x["image"][:1]} for x in batched_inputs]
        return super().preprocess_image(batched_inputs)

    def _run_network(self, batched_inputs, image_key="image", with_boxes=True, dtype=None):
        """Backbone + head on ``batched_inputs[i][image_key]``. ``with_boxes=False`` skips the box
        branch (deltas None) for passes that need only class maps (teacher targets, attention).

        ``dtype`` (None: float32) runs the pass under autocast; the class and box maps come back in
        float32, so the losses, the attention, the teacher's probabilities and the box decoding that
        use them run in float32 (a bfloat16 sum over thousands of anchors, or a box decoded at
        bfloat16's 8-bit precision, would lose what the loss and the boxes need). The backbone's
        last stage is cast where the global head reads it (:meth:`_global_logits`)."""
        with network_autocast(self.device, dtype):
            images = self.preprocess_image([{"image": x[image_key]} for x in batched_inputs])
            features = self.backbone(images.tensor)
            features = [features[f] for f in self.head_in_features]
            if with_boxes:
                logits, deltas = self.head(features)
            else:
                logits, deltas = [self.head.cls_score(self.head.cls_subnet(f)) for f in features], None
        if dtype is not None:
            logits = [x.float() for x in logits]
            deltas = None if deltas is None else [x.float() for x in deltas]
        return images, features, logits, deltas

    def _global_logits(self, logits: list[torch.Tensor]):
        """Global-head logits (B, K) plus the maps they pool: CAM X, attention R (DAA only), M."""
        feats_m = self._bottom_up_features[self.global_in_feature].float()  # M: float32 for Eq. 1-6
        self._bottom_up_features = None
        cam = self.global_head(feats_m)
        if self.global_mode == "gap":
            return cam.mean(dim=(2, 3)), cam, None, feats_m
        attention = normalize_attention(
            local_attention(logits, self.num_classes, cam.shape[-2:], self.align_corners)
        )
        return daa_logits(cam, attention), cam, attention, feats_m

    # ------------------------------------------------------------------ forward
    def forward(self, batched_inputs: list[dict[str, torch.Tensor]]):
        dtype = self.amp_dtype if self.training else self.inference_dtype
        images, features, logits, deltas = self._run_network(batched_inputs, dtype=dtype)
        global_out = self._global_logits(logits) if self.global_mode else None
        if self.training:
            return self.forward_omni(batched_inputs, features, logits, deltas, global_out)
        results = self.forward_inference(images, features, [logits, deltas])
        processed = []
        for i, (res, inp, size) in enumerate(zip(results, batched_inputs, images.image_sizes)):
            out = {
                "instances": detector_postprocess(res, inp.get("height", size[0]), inp.get("width", size[1]))
            }
            if global_out is not None:
                out["global_scores"] = global_out[0][i].sigmoid()
            processed.append(out)
        return processed

    def forward_omni(self, batched_inputs, features, logits, deltas, global_out):
        levels = [x.get("supervision", "full") for x in batched_inputs]
        pred_logits, pred_deltas = self._transpose_dense_predictions([logits, deltas], [self.num_classes, 4])
        # A zero that touches every output keeps all parameters in the graph (DDP needs that).
        zero = sum(x.sum() for x in pred_logits + pred_deltas) * 0.0
        losses = {}

        anchor_cache = []

        def anchors():  # (R, 4) anchor boxes of all levels, computed once when needed
            if not anchor_cache:
                anchor_cache.append(self.anchor_generator(features))
            return anchor_cache[0]

        full = [i for i, s in enumerate(levels) if s == "full"]
        if full:
            gt_instances = [batched_inputs[i]["instances"].to(self.device) for i in full]
            gt_labels, gt_boxes = self.label_anchors(anchors(), gt_instances)
            sel = torch.as_tensor(full, device=self.device)
            losses.update(
                self.losses(
                    anchors(),
                    [x[sel] for x in pred_logits],
                    gt_labels,
                    [x[sel] for x in pred_deltas],
                    gt_boxes,
                )
            )
            num_pos = sum(int(((g >= 0) & (g != self.num_classes)).sum()) for g in gt_labels)
            self._ema_update("positives_per_image", max(num_pos / len(full), 1.0), 100.0)
        else:
            losses.update(loss_cls=zero, loss_box_reg=zero)

        extra = {}
        if global_out is not None:
            extra.update(self._weak_losses(batched_inputs, levels, global_out, zero))
        # (B, R, K): every anchor of every level, concatenated once for the losses that need it
        all_logits = cat(pred_logits, dim=1) if self.weak_negatives or self.unsup_loss is not None else None
        if self.weak_negatives:
            extra["loss_weak_negative"] = self._weak_negative_loss(batched_inputs, levels, all_logits, zero)
        if self.unsup_loss is not None:
            extra.update(
                self._unsupervised_losses(
                    batched_inputs,
                    levels,
                    all_logits,
                    pred_deltas,
                    lambda: cat([a.tensor for a in anchors()]),
                    zero,
                )
            )
        scale = self._rampup_scale()
        losses.update({k: v * scale for k, v in extra.items()})
        return losses

    def _weak_negative_loss(self, batched_inputs, levels, all_logits, zero):
        """RetinaNet's focal loss with target 0 on every anchor of each class a weak image is labelled
        without (:func:`oxnet.modeling.losses.weak_negative_focal_loss`), divided by RetinaNet's
        running loss normalizer: an all-negative weak image weighs as a box-free full image."""
        idx = [i for i, s in enumerate(levels) if s == "weak" and "image_labels" in batched_inputs[i]]
        if not idx:
            return zero + 0.0
        sel = torch.as_tensor(idx, device=self.device)
        labels = torch.stack([batched_inputs[i]["image_labels"] for i in idx]).to(self.device)
        loss = weak_negative_focal_loss(all_logits[sel], labels, self.focal_loss_alpha, self.focal_loss_gamma)
        return zero + loss / self.loss_normalizer

    def _weak_losses(self, batched_inputs, levels, global_out, zero):
        g_logits, cam, attention, feats_m = global_out
        idx = [
            i for i, s in enumerate(levels) if s in IMAGE_LABEL_LEVELS and "image_labels" in batched_inputs[i]
        ]
        out = {"loss_global": zero + 0.0}
        if self.prototypes is not None:
            out.update(loss_gpa_intra=zero + 0.0, loss_gpa_inter=zero + 0.0)
        # Keep the global head in the graph even when no image of the batch has labels.
        out["loss_global"] = out["loss_global"] + g_logits.sum() * 0.0
        if not idx:
            return out
        sel = torch.as_tensor(idx, device=self.device)
        labels = torch.stack([batched_inputs[i]["image_labels"] for i in idx]).to(self.device)
        logits = g_logits[sel]
        if self.global_mode == "daa" and self.attention_grad != "all":
            gated = gate_attention(attention[sel], labels, self.attention_grad)
            logits = daa_logits(cam[sel], gated)  # Eq. 3, same values as g_logits
        loss = masked_bce_with_logits(logits, labels, self.bce_reduction)  # Eq. 1
        out["loss_global"] = out["loss_global"] + self.global_loss_weight * loss
        if self.prototypes is not None:
            feats = class_features(feats_m[sel], attention[sel], self.gpa_view_bug)  # Eq. 4
            positives = labels == 1
            self.prototypes.update(feats, g_logits[sel].sigmoid(), positives)  # Eq. 5
            losses_fn = gpa_losses if self.gpa_form == "paper" else gpa_losses_authors
            intra, inter = losses_fn(
                feats, self.prototypes.prototypes, positives, self.prototypes.initialized, self.gpa_margin
            )  # Eq. 6
            out["loss_gpa_intra"] = out["loss_gpa_intra"] + self.gpa_intra_weight * intra
            out["loss_gpa_inter"] = out["loss_gpa_inter"] + self.gpa_inter_weight * inter
        return out

    def _unsupervised_losses(self, batched_inputs, levels, all_logits, pred_deltas, anchors, zero):
        """The method's loss on weak and unlabeled images (:mod:`oxnet.modeling.unsup`: the soft focal
        loss of Eq. 8 or a baseline's). Weak images count as unlabeled for a method without a global
        head."""
        idx = [i for i, s in enumerate(levels) if s in SOFT_TARGET_LEVELS]
        if not idx:
            return {k: zero + 0.0 for k in self.unsup_loss.loss_names}
        sel = torch.as_tensor(idx, device=self.device)
        out = self.unsup_loss(
            self, [batched_inputs[i] for i in idx], all_logits[sel], cat(pred_deltas, dim=1)[sel], anchors
        )
        return {k: zero + v for k, v in out.items()}

    def dense_logits(self, inputs, image_key):
        """Student logits (B, R, K) over all anchors for ``inputs[image_key]``, with gradients."""
        _, _, logits, _ = self._run_network(inputs, image_key, with_boxes=False, dtype=self.amp_dtype)
        self._bottom_up_features = None
        return cat(self._transpose_dense_predictions([logits], [self.num_classes])[0], dim=1)

    def _rampup_scale(self):
        """Weight of the losses beyond RetinaNet's on boxed images at the current iteration t:
        0 during the burn-in (t < B), then Laine & Aila's ramp-up ``exp(-5 (1 - (t - B) / T)^2)``
        over T = ``OXNET.RAMPUP.ITERS`` iterations, then 1."""
        t = current_iteration() - self.burn_in
        if t < 0:
            return 0.0
        if self.rampup <= 0:
            return 1.0
        phase = 1.0 - min(t, self.rampup) / self.rampup
        return math.exp(-5.0 * phase * phase)

    # ------------------------------------------------------------------ teacher / analysis
    @torch.no_grad()
    def dense_probs(self, batched_inputs, image_key="image"):
        """Dense class probabilities (B, R, K) over all anchors of all levels (the teacher's targets)."""
        return self.dense_logits(batched_inputs, image_key).sigmoid()

    @property
    def needs_teacher_boxes(self):
        """Whether the unsupervised loss needs the teacher's detections (filtered SFL)."""
        return getattr(self.unsup_loss, "mode", "") == "filtered"

    @torch.no_grad()
    def teacher_outputs(self, batched_inputs, image_key="image_weak"):
        """One pass of this model as the teacher: dense probabilities (B, R, K) and its detections
        (``Instances`` in the input frame with ``pred_boxes``, ``scores``, ``pred_classes``), selected
        as ``OXNET.SFL.TEACHER_BOXES`` says (:mod:`oxnet.modeling.teacher_boxes`)."""
        images, features, logits, deltas = self._run_network(batched_inputs, image_key, dtype=self.amp_dtype)
        self._bottom_up_features = None
        probs = cat(self._transpose_dense_predictions([logits], [self.num_classes])[0], dim=1).sigmoid()
        if self.teacher_boxes == "inference":
            return probs, self.forward_inference(images, features, [logits, deltas])
        anchors = Boxes.cat(self.anchor_generator(features)).tensor
        dense_deltas = cat(self._transpose_dense_predictions([deltas], [4])[0], dim=1)
        detections = []
        for i, size in enumerate(images.image_sizes):
            decoded = Boxes(self.box2box_transform.apply_deltas(dense_deltas[i], anchors))
            decoded.clip(size)
            boxes, scores, classes = authors_teacher_boxes(
                probs[i], decoded.tensor, self.teacher_box_index_bug
            )
            det = Instances(size)
            det.pred_boxes, det.scores, det.pred_classes = Boxes(boxes), scores, classes
            detections.append(det)
        return probs, detections

    @torch.no_grad()
    def attention_maps(self, batched_inputs):
        """Per image: ``cam`` (global CAM X), ``local`` (normalized local attention R) and ``daa``
        (X * R, the map DAA pools), each a (K, h, w) numpy array on the last-stage grid."""
        if self.global_mode != "daa":
            raise ValueError("attention maps need the DAA global head (OXNET.METHOD daa, daa_gpa or oxnet)")
        _, _, logits, _ = self._run_network(batched_inputs, with_boxes=False, dtype=self.inference_dtype)
        _, cam, attention, _ = self._global_logits(logits)
        return [
            {"cam": c.cpu().numpy(), "local": a.cpu().numpy(), "daa": (c * a).cpu().numpy()}
            for c, a in zip(cam, attention)
        ]
