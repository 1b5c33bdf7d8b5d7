"""The interface of the losses on images without boxes."""

from oxnet.utils.registry import NamedRegistry

__all__ = ["UNSUP_LOSS_REGISTRY", "UnsupLoss", "build_unsup_loss"]

UNSUP_LOSS_REGISTRY = NamedRegistry("OXNET_UNSUP_LOSS")
UNSUP_LOSS_REGISTRY.__doc__ = """Losses on weak and unlabeled images, keyed by their ``name`` (a method's
``unsup`` component, :mod:`oxnet.methods`)."""


class UnsupLoss:
    """A loss on the weak and unlabeled images of a batch.

    Subclasses set ``name`` (the ``unsup`` component of :mod:`oxnet.methods` and the registry key),
    ``loss_names`` (what :meth:`forward` returns), ``needs`` (keys every such
    input must carry: ``teacher_probs`` from the mean teacher, ``image_weak`` from the dataset
    mapper, ...) and implement :meth:`forward`.

    The usual normalization (:meth:`normalize`): a loss summed over every anchor and class of each
    image, divided by the number of images times the running mean of positive anchors per box-labeled
    image, so that an image without boxes weighs like a fully labeled one in RetinaNet's loss.
    """

    name = ""
    needs = ()
    #: The loss names :meth:`forward` returns (logged as zero when a batch has no such image).
    loss_names = ()

    def __init__(self, cfg):
        self.cfg = cfg

    def check_inputs(self, inputs):
        for key in self.needs:
            missing = [x.get("file_name", i) for i, x in enumerate(inputs) if key not in x]
            if missing:
                source = "the dataset mapper" if key == "image_weak" else "the mean teacher"
                raise ValueError(f"the {self.name} loss needs {key!r} (from {source}) for {missing[:3]}")

    @staticmethod
    def normalize(model, loss_sum, num_images):
        return loss_sum / (num_images * model.positives_per_image)

    def forward(self, model, inputs, student_logits, student_deltas, anchors):
        """Losses of ``inputs`` (the batch's weak and unlabeled images).

        Args:
            model: the :class:`oxnet.modeling.OXNet` being trained (its normalizers, box coder and
                network for extra passes).
            inputs: the input dicts of these images.
            student_logits: (B, R, K) the student's class logits over all anchors.
            student_deltas: (B, R, 4) the student's box deltas.
            anchors: a callable returning the (R, 4) anchor boxes (computed when first needed).

        Returns:
            dict: loss name -> scalar tensor.
        """
        raise NotImplementedError

    def __call__(self, model, inputs, student_logits, student_deltas, anchors):
        self.check_inputs(inputs)
        return self.forward(model, inputs, student_logits, student_deltas, anchors)


def build_unsup_loss(name, cfg):
    """The registered loss whose ``name`` is ``name`` (None for "")."""
    if not name:
        return None
    return UNSUP_LOSS_REGISTRY.get(name)(cfg)


def teacher_targets(inputs, student_logits, device):
    """The mean teacher's dense probabilities of ``inputs`` as a (B, R, K) tensor, checked against
    the student's anchors."""
    import torch

    targets = torch.stack([x["teacher_probs"] for x in inputs]).to(device)
    if targets.shape != student_logits.shape:
        raise ValueError(
            f"teacher_probs of shape {tuple(targets.shape[1:])} do not match the student's "
            f"anchors {tuple(student_logits.shape[1:])}: the two views must share their "
            "geometry"
        )
    return targets
