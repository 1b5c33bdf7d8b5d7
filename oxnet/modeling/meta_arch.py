"""The OXnet meta-architecture: RetinaNet + global head (GAP or DAA) + GPA + soft focal loss."""
import math
from typing import Dict, List

import numpy as np
import torch
from torch import distributed as dist
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, RetinaNet
from detectron2.modeling.meta_arch import retinanet as d2_retinanet
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from torch import nn
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.utils.events import get_event_storage
from fvcore.nn import sigmoid_focal_loss

from oxnet.config import UNSUP_LOSSES, method_components

from . import baselines
from .attention import (ATTENTION_GRAD_MODES, daa_logits, gate_attention, local_attention,
                        normalize_attention)
from .global_head import GlobalHead
from .gpa import PrototypeMemory, class_features, gpa_losses
from .losses import BCE_REDUCTIONS, masked_bce_with_logits, soft_focal_loss

SOFT_TARGET_LEVELS = ("weak", "unlabeled")  # SFL is applied to D_W and D_U (Sec. 2.4)
#: Loss names of the unsupervised losses (``OXNET.METHOD`` components, see oxnet.config.METHODS).
UNSUP_LOSS_KEYS = {"sfl": "loss_sfl", "pi": "loss_pi", "mean_teacher": "loss_mt", "mmt_psm": "loss_mmt",
                   "focalmix": "loss_focalmix"}
IMAGE_LABEL_LEVELS = ("full", "weak")  # weak losses are applied to D_W and D_F (Sec. 2.4)


def _iteration():
    """The training iteration of the current EventStorage (0 outside a training loop)."""
    try:
        return max(get_event_storage().iter, 0)
    except AssertionError:
        return 0


def _group_norm(channels):
    return nn.GroupNorm(min(32, channels), channels)


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
    def __init__(self, *, global_mode: str = "", global_in_feature: str = "res5",
                 global_head: GlobalHead = None, global_loss_weight: float = 1.0, attention_grad: str = "all",
                 bce_reduction: str = "mean",
                 prototypes: PrototypeMemory = None, gpa_margin: float = 1.0,
                 gpa_intra_weight: float = 1.0, gpa_inter_weight: float = 1.0,
                 unsup: str = "", sfl_alpha: float = 0.9, sfl_eps: float = 0.05,
                 sfl_gamma: float = 2.0, sfl_weight: float = 1.0, consistency_weight: float = 1.0,
                 burn_in: int = 0, rampup: int = 0, psm_fraction: float = 0.1, focalmix_alpha: float = 0.25,
                 focalmix_gamma: float = 2.0, mixup_alpha: float = 0.75, focalmix_temperature: float = 0.5,
                 **kwargs):
        super().__init__(**kwargs)
        if global_mode not in ("", "gap", "daa"):
            raise ValueError(f"global head mode must be '', 'gap' or 'daa', got {global_mode!r}")
        if prototypes is not None and global_mode != "daa":
            raise ValueError("GPA needs the DAA global head: its class features use the local attention R")
        if attention_grad not in ATTENTION_GRAD_MODES:
            raise ValueError(f"OXNET.GLOBAL_HEAD.ATTENTION_GRAD must be one of {ATTENTION_GRAD_MODES}, "
                             f"got {attention_grad!r}")
        self.global_mode = global_mode
        self.attention_grad = attention_grad
        self.global_in_feature = global_in_feature
        self.global_head = global_head
        self.global_loss_weight = global_loss_weight
        if bce_reduction not in BCE_REDUCTIONS:
            raise ValueError(f"OXNET.GLOBAL_HEAD.BCE_REDUCTION must be one of {BCE_REDUCTIONS}, "
                             f"got {bce_reduction!r}")
        self.bce_reduction = bce_reduction
        self.prototypes = prototypes
        self.gpa_margin = gpa_margin
        self.gpa_intra_weight = gpa_intra_weight
        self.gpa_inter_weight = gpa_inter_weight
        if unsup and unsup not in UNSUP_LOSSES:
            raise ValueError(f"unknown unsupervised loss {unsup!r}; choose one of {UNSUP_LOSSES}")
        self.unsup = unsup
        self.consistency_weight = consistency_weight
        if burn_in < 0 or rampup < 0:
            raise ValueError(f"OXNET.RAMPUP.BURN_IN_ITERS and ITERS must be >= 0, got {burn_in} and {rampup}")
        self.burn_in, self.rampup = burn_in, rampup
        self.psm_fraction = psm_fraction
        self.focalmix_alpha, self.focalmix_gamma = focalmix_alpha, focalmix_gamma
        self.mixup_alpha, self.focalmix_temperature = mixup_alpha, focalmix_temperature
        self.sfl_alpha, self.sfl_eps, self.sfl_gamma, self.sfl_weight = sfl_alpha, sfl_eps, sfl_gamma, sfl_weight
        # Loss normalizers are buffers (not Python floats) so that checkpoints and resumed runs keep them.
        self.register_buffer("loss_normalizer", torch.tensor(100.0))
        self.register_buffer("positives_per_image", torch.tensor(100.0))
        self._bottom_up_features = None
        if global_mode:
            bottom_up = getattr(self.backbone, "bottom_up", self.backbone)
            bottom_up.register_forward_hook(self._keep_bottom_up_features)

    @classmethod
    def from_config(cls, cfg):
        head_norm = cfg.MODEL.RETINANET.NORM
        if head_norm == "GN":
            # detectron2 v0.6's RetinaNetHead probes get_norm("GN", 1), which fails: build the head
            # without norm first, then again with a GroupNorm callable.
            cfg = cfg.clone()
            cfg.defrost()
            cfg.MODEL.RETINANET.NORM = ""
        ret = super().from_config(cfg)
        if head_norm == "GN":
            shapes = ret["backbone"].output_shape()
            head_cfg = RetinaNetHead.from_config(cfg, [shapes[f] for f in cfg.MODEL.RETINANET.IN_FEATURES])
            ret["head"] = RetinaNetHead(**{**head_cfg, "norm": _group_norm})
        parts = method_components(cfg.OXNET.METHOD)
        num_classes = cfg.MODEL.RETINANET.NUM_CLASSES
        ret.update(global_mode=parts["global_head"], unsup=parts["unsup"],
                   burn_in=cfg.OXNET.RAMPUP.BURN_IN_ITERS, rampup=cfg.OXNET.RAMPUP.ITERS)
        if parts["global_head"]:
            backbone = ret["backbone"]
            bottom_up = getattr(backbone, "bottom_up", backbone)
            feature = cfg.OXNET.GLOBAL_HEAD.IN_FEATURE
            shapes = bottom_up.output_shape()
            if feature not in shapes:
                raise ValueError(f"OXNET.GLOBAL_HEAD.IN_FEATURE={feature!r} is not an output of the "
                                 f"backbone ({sorted(shapes)}); add it to MODEL.RESNETS.OUT_FEATURES")
            channels = shapes[feature].channels
            ret.update(global_in_feature=feature, global_head=GlobalHead(channels, num_classes),
                       global_loss_weight=cfg.OXNET.GLOBAL_HEAD.LOSS_WEIGHT,
                       attention_grad=cfg.OXNET.GLOBAL_HEAD.ATTENTION_GRAD,
                       bce_reduction=cfg.OXNET.GLOBAL_HEAD.BCE_REDUCTION)
            if parts["gpa"]:
                ret.update(prototypes=PrototypeMemory(num_classes, channels, cfg.OXNET.GPA.MOMENTUM),
                           gpa_margin=cfg.OXNET.GPA.MARGIN, gpa_intra_weight=cfg.OXNET.GPA.INTRA_WEIGHT,
                           gpa_inter_weight=cfg.OXNET.GPA.INTER_WEIGHT)
        if parts["unsup"] == "sfl":
            s = cfg.OXNET.SFL
            ret.update(sfl_alpha=s.ALPHA, sfl_eps=s.EPS, sfl_gamma=s.GAMMA, sfl_weight=s.WEIGHT)
        elif parts["unsup"]:
            c, f = cfg.OXNET.CONSISTENCY, cfg.OXNET.FOCALMIX
            ret.update(consistency_weight=c.WEIGHT,
                       psm_fraction=cfg.OXNET.MMT_PSM.SELECT_FRACTION, focalmix_alpha=f.ALPHA,
                       focalmix_gamma=f.GAMMA, mixup_alpha=f.MIXUP_ALPHA, focalmix_temperature=f.TEMPERATURE)
        return ret

    # ------------------------------------------------------------------ helpers
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
        """RetinaNet's focal and box losses (detectron2's), computed with fvcore's eager focal loss
        instead of its TorchScript twin. TorchScript's profiling executor replaces a function's graph
        after its first calls in a process, and the optimized backward rounds differently: a run's
        gradients, hence its result, would depend on what ran before it in the same process."""
        scripted = d2_retinanet.sigmoid_focal_loss_jit
        d2_retinanet.sigmoid_focal_loss_jit = sigmoid_focal_loss
        try:
            return super().losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        finally:
            d2_retinanet.sigmoid_focal_loss_jit = scripted

    def _run_network(self, batched_inputs, image_key="image", with_boxes=True):
        """Backbone + head on ``batched_inputs[i][image_key]``. ``with_boxes=False`` skips the box
        branch (deltas None) for passes that need only class maps (teacher targets, attention)."""
        images = self.preprocess_image([{"image": x[image_key]} for x in batched_inputs])
        features = self.backbone(images.tensor)
        features = [features[f] for f in self.head_in_features]
        if with_boxes:
            logits, deltas = self.head(features)
        else:
            logits, deltas = [self.head.cls_score(self.head.cls_subnet(f)) for f in features], None
        return images, features, logits, deltas

    def _global_logits(self, logits: List[torch.Tensor]):
        """Global-head logits (B, K) plus the maps they pool: CAM X, attention R (DAA only), M."""
        feats_m = self._bottom_up_features[self.global_in_feature]
        self._bottom_up_features = None
        cam = self.global_head(feats_m)
        if self.global_mode == "gap":
            return cam.mean(dim=(2, 3)), cam, None, feats_m
        attention = normalize_attention(local_attention(logits, self.num_classes, cam.shape[-2:]))
        return daa_logits(cam, attention), cam, attention, feats_m

    # ------------------------------------------------------------------ forward
    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        images, features, logits, deltas = self._run_network(batched_inputs)
        global_out = self._global_logits(logits) if self.global_mode else None
        if self.training:
            return self.forward_omni(batched_inputs, features, logits, deltas, global_out)
        results = self.forward_inference(images, features, [logits, deltas])
        processed = []
        for i, (res, inp, size) in enumerate(zip(results, batched_inputs, images.image_sizes)):
            out = {"instances": detector_postprocess(res, inp.get("height", size[0]), inp.get("width", size[1]))}
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

        full = [i for i, s in enumerate(levels) if s == "full"]
        if full:
            anchors = self.anchor_generator(features)
            gt_instances = [batched_inputs[i]["instances"].to(self.device) for i in full]
            gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
            sel = torch.as_tensor(full, device=self.device)
            losses.update(self.losses(anchors, [x[sel] for x in pred_logits], gt_labels,
                                      [x[sel] for x in pred_deltas], gt_boxes))
            num_pos = sum(int(((g >= 0) & (g != self.num_classes)).sum()) for g in gt_labels)
            self._ema_update("positives_per_image", max(num_pos / len(full), 1.0), 100.0)
        else:
            losses.update(loss_cls=zero, loss_box_reg=zero)

        extra = {}
        if global_out is not None:
            extra.update(self._weak_losses(batched_inputs, levels, global_out, zero))
        if self.unsup:
            extra[UNSUP_LOSS_KEYS[self.unsup]] = self._unsupervised_loss(batched_inputs, levels,
                                                                         pred_logits, zero)
        scale = self._rampup_scale()
        losses.update({k: v * scale for k, v in extra.items()})
        return losses

    def _weak_losses(self, batched_inputs, levels, global_out, zero):
        g_logits, cam, attention, feats_m = global_out
        idx = [i for i, s in enumerate(levels) if s in IMAGE_LABEL_LEVELS and "image_labels" in batched_inputs[i]]
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
            feats = class_features(feats_m[sel], attention[sel])  # Eq. 4
            positives = labels == 1
            self.prototypes.update(feats, g_logits[sel].sigmoid(), positives)  # Eq. 5
            intra, inter = gpa_losses(feats, self.prototypes.prototypes, positives,
                                      self.prototypes.initialized, self.gpa_margin)  # Eq. 6
            out["loss_gpa_intra"] = out["loss_gpa_intra"] + self.gpa_intra_weight * intra
            out["loss_gpa_inter"] = out["loss_gpa_inter"] + self.gpa_inter_weight * inter
        return out

    def _unsupervised_loss(self, batched_inputs, levels, pred_logits, zero):
        """The method's loss on weak and unlabeled images: the soft focal loss (Eq. 8) or a baseline's
        (:mod:`oxnet.modeling.baselines`), summed over every anchor and class of each such image and
        divided by (number of such images x running mean of positive anchors per fully labeled
        image), so that an image without boxes weighs like a fully labeled one in RetinaNet's loss.
        The baselines' losses are further scaled by ``OXNET.CONSISTENCY.WEIGHT``."""
        idx = [i for i, s in enumerate(levels) if s in SOFT_TARGET_LEVELS]
        if not idx:
            return zero
        needs = {"sfl": ("teacher_probs",), "mean_teacher": ("teacher_probs",),
                 "focalmix": ("teacher_probs",), "mmt_psm": ("teacher_probs", "teacher_std"),
                 "pi": ("image_weak",)}[self.unsup]
        for key in needs:
            missing = [batched_inputs[i].get("file_name", i) for i in idx if key not in batched_inputs[i]]
            if missing:
                source = "the dataset mapper" if key == "image_weak" else "the mean teacher"
                raise ValueError(f"the {self.unsup} loss needs {key!r} (from {source}) for {missing[:3]}")
        sel = torch.as_tensor(idx, device=self.device)
        student = cat(pred_logits, dim=1)[sel]
        targets = None
        if "teacher_probs" in needs:
            targets = torch.stack([batched_inputs[i]["teacher_probs"] for i in idx]).to(self.device)
            if targets.shape != student.shape:
                raise ValueError(f"teacher_probs of shape {tuple(targets.shape[1:])} do not match the "
                                 f"student's anchors {tuple(student.shape[1:])}: the two views must share "
                                 "their geometry")
        if self.unsup == "sfl":
            loss = soft_focal_loss(student, targets, self.sfl_alpha, self.sfl_eps, self.sfl_gamma).sum()
            return self.sfl_weight * loss / (len(idx) * self.positives_per_image)
        if self.unsup == "pi":
            other = self._dense_logits([batched_inputs[i] for i in idx], "image_weak")
            loss = baselines.pi_consistency(student, other)
        elif self.unsup == "mean_teacher":
            loss = baselines.mean_teacher_consistency(student, targets)
        elif self.unsup == "mmt_psm":
            spread = torch.stack([batched_inputs[i]["teacher_std"] for i in idx]).to(self.device)
            loss = baselines.mmt_psm_consistency(student, targets, spread, self.psm_fraction)
        else:  # focalmix: a further pass of the student on mixed images
            loss = self._focalmix_loss([batched_inputs[i] for i in idx], targets)
        return self.consistency_weight * loss.sum() / (len(idx) * self.positives_per_image)

    def _dense_logits(self, inputs, image_key):
        """Student logits (B, R, K) over all anchors for ``inputs[image_key]``, with gradients."""
        _, _, logits, _ = self._run_network(inputs, image_key, with_boxes=False)
        self._bottom_up_features = None
        return cat(self._transpose_dense_predictions([logits], [self.num_classes])[0], dim=1)

    def _focalmix_loss(self, inputs, targets):
        """FocalMix: soft-target focal loss of the student on MixUp of the images (strong views) and
        their sharpened teacher targets, mixed with a random permutation of the batch."""
        targets = baselines.sharpen(targets, self.focalmix_temperature)
        rng = np.random.default_rng(_iteration() + 7919)  # a function of the iteration: resumable
        lam = float(rng.beta(self.mixup_alpha, self.mixup_alpha))
        lam = max(lam, 1.0 - lam)
        perm = torch.as_tensor(rng.permutation(len(inputs)))
        images = torch.stack([x["image"] for x in inputs]).to(self.device)
        mixed, mixed_targets = baselines.mixup(images, targets, lam, perm.to(self.device))
        logits = self._dense_logits([{"image": m} for m in mixed], "image")
        return baselines.soft_target_focal_loss(logits, mixed_targets, self.focalmix_alpha,
                                                self.focalmix_gamma)

    def _rampup_scale(self):
        """Weight of the losses beyond RetinaNet's on boxed images at the current iteration t:
        0 during the burn-in (t < B), then Laine & Aila's ramp-up ``exp(-5 (1 - (t - B) / T)^2)``
        over T = ``OXNET.RAMPUP.ITERS`` iterations, then 1."""
        t = _iteration() - self.burn_in
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
        return self._dense_logits(batched_inputs, image_key).sigmoid()

    @torch.no_grad()
    def attention_maps(self, batched_inputs):
        """Per image: ``cam`` (global CAM X), ``local`` (normalized local attention R) and ``daa``
        (X * R, the map DAA pools), each a (K, h, w) numpy array on the last-stage grid."""
        if self.global_mode != "daa":
            raise ValueError("attention maps need the DAA global head (OXNET.METHOD daa, daa_gpa or oxnet)")
        _, _, logits, _ = self._run_network(batched_inputs, with_boxes=False)
        _, cam, attention, _ = self._global_logits(logits)
        return [{"cam": c.cpu().numpy(), "local": a.cpu().numpy(), "daa": (c * a).cpu().numpy()}
                for c, a in zip(cam, attention)]
