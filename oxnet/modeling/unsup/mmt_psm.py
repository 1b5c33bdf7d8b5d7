"""MMT-PSM (Zhou et al., "Deep Mining External Imperfect Data for Chest X-ray Disease Screening" /
MMT-PSM, MICCAI 2020), Table 1 row 4: the teacher's self-ensemble over perturbed views as the target,
on the most perturbation-sensitive anchors (:func:`oxnet.modeling.baselines.mmt_psm_consistency`)."""

import torch

from oxnet.modeling import baselines

from .base import UNSUP_LOSS_REGISTRY, UnsupLoss, teacher_targets


@UNSUP_LOSS_REGISTRY.register()
class MMTPSMLoss(UnsupLoss):
    name = "mmt_psm"
    needs = ("teacher_probs", "teacher_std")
    loss_names = ("loss_mmt",)

    def forward(self, model, inputs, student_logits, student_deltas, anchors):
        targets = teacher_targets(inputs, student_logits, student_logits.device)
        spread = torch.stack([x["teacher_std"] for x in inputs]).to(student_logits.device)
        loss = baselines.mmt_psm_consistency(
            student_logits, targets, spread, self.cfg.OXNET.MMT_PSM.SELECT_FRACTION
        )
        weight = self.cfg.OXNET.CONSISTENCY.WEIGHT
        return {"loss_mmt": weight * self.normalize(model, loss.sum(), len(inputs))}
