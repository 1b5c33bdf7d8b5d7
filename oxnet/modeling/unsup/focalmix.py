"""FocalMix (Wang et al., "FocalMix: Semi-Supervised Learning for 3D Medical Image Detection", CVPR
2020), Table 1 row 5: a soft-target focal loss of the student on MixUp of the images and their
sharpened teacher targets (:func:`oxnet.modeling.baselines.mixup`,
:func:`oxnet.modeling.baselines.soft_target_focal_loss`)."""

import numpy as np
import torch

from oxnet.modeling import baselines
from oxnet.utils.events import current_iteration

from .base import UNSUP_LOSS_REGISTRY, UnsupLoss, teacher_targets


@UNSUP_LOSS_REGISTRY.register()
class FocalMixLoss(UnsupLoss):
    name = "focalmix"
    needs = ("teacher_probs",)
    loss_names = ("loss_focalmix",)

    def forward(self, model, inputs, student_logits, student_deltas, anchors):
        f = self.cfg.OXNET.FOCALMIX
        targets = baselines.sharpen(
            teacher_targets(inputs, student_logits, student_logits.device), f.TEMPERATURE
        )
        rng = np.random.default_rng(current_iteration() + 7919)  # a function of the iteration: resumable
        lam = float(rng.beta(f.MIXUP_ALPHA, f.MIXUP_ALPHA))
        lam = max(lam, 1.0 - lam)
        perm = torch.as_tensor(rng.permutation(len(inputs)))
        images = torch.stack([x["image"] for x in inputs]).to(student_logits.device)
        mixed, mixed_targets = baselines.mixup(images, targets, lam, perm.to(student_logits.device))
        logits = model.dense_logits([{"image": m} for m in mixed], "image")  # a further student pass
        loss = baselines.soft_target_focal_loss(logits, mixed_targets, f.ALPHA, f.GAMMA)
        weight = self.cfg.OXNET.CONSISTENCY.WEIGHT
        return {"loss_focalmix": weight * self.normalize(model, loss.sum(), len(inputs))}
