"""Pi model (Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017), Table 1
row 2: the squared difference between the class probabilities of two stochastic views of an image,
both through the student (:func:`oxnet.modeling.baselines.pi_consistency`)."""

from oxnet.modeling import baselines

from .base import UNSUP_LOSS_REGISTRY, UnsupLoss


@UNSUP_LOSS_REGISTRY.register()
class PiModelLoss(UnsupLoss):
    name = "pi"
    needs = ("image_weak",)  # the mapper's second strong draw
    loss_names = ("loss_pi",)

    def forward(self, model, inputs, student_logits, student_deltas, anchors):
        other = model.dense_logits(inputs, "image_weak")
        loss = baselines.pi_consistency(student_logits, other)
        weight = self.cfg.OXNET.CONSISTENCY.WEIGHT
        return {"loss_pi": weight * self.normalize(model, loss.sum(), len(inputs))}
