"""A synthetic frontal chest X-ray generator with boxes for the nine classes of the paper.

Images are drawn as an attenuation map (bright = dense) in anatomical coordinates normalized by the
image size, so every size works. Convention: the patient faces the viewer, so the patient's left
(aortic knob, cardiac apex) is on the image's right.

Every image is a pure function of ``(seed, index)``: the patient comes from
``default_rng([seed, index, 0])``, each finding class from ``default_rng([seed, index, 1, class])``, the
noise from ``default_rng([seed, index, 2])`` and the list of classes present from
``default_rng([seed, index, 3])``. ``sample(index, findings=[...])`` therefore renders the same patient
with any chosen subset of its findings, and images can be generated in parallel.

Each finding is drawn as a local change of the attenuation map; its box is the tight box of the pixels
where that change reaches :data:`BOX_LEVEL` of its peak (for cardiomegaly: the visible heart).

Modules: :mod:`.anatomy` (the patient), :mod:`.findings` (the nine findings), :mod:`.rendering` (the
attenuation map and the simulated acquisition), :mod:`.generator` (:class:`SyntheticCXR`: the random
draws of an image), :mod:`.splits` (datasets on disk) and :mod:`.primitives` (shapes they share).
"""

from .findings import Finding
from .generator import CLASS_PREVALENCE as CLASS_PREVALENCE  # re-exported: the module's former constants
from .generator import NORMAL_FRACTION as NORMAL_FRACTION
from .generator import SyntheticCXR
from .primitives import BOX_LEVEL as BOX_LEVEL
from .splits import generate_split, synthetic_categories

__all__ = ["SyntheticCXR", "Finding", "generate_split", "synthetic_categories", "contact_sheet"]


def contact_sheet(*args, **kwargs):
    """See :func:`oxnet.data.visualize.contact_sheet`."""
    from oxnet.data.visualize import contact_sheet as _contact_sheet

    return _contact_sheet(*args, **kwargs)
