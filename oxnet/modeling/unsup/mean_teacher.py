"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017), Table 1 row 3: the squared difference between
the student's class probabilities and the EMA teacher's on the weak view
(:func:`oxnet.modeling.baselines.mean_teacher_consistency`)."""

from oxnet.modeling import baselines

from .base import UNSUP_LOSS_REGISTRY, UnsupLoss, teacher_targets


@UNSUP_LOSS_REGISTRY.register()
class MeanTeacherLoss(UnsupLoss):
    name = "mean_teacher"
    needs = ("teacher_probs",)
    loss_names = ("loss_mt",)

    def forward(self, model, inputs, student_logits, student_deltas, anchors):
        targets = teacher_targets(inputs, student_logits, student_logits.device)
        loss = baselines.mean_teacher_consistency(student_logits, targets)
        weight = self.cfg.OXNET.CONSISTENCY.WEIGHT
        return {"loss_mt": weight * self.normalize(model, loss.sum(), len(inputs))}
