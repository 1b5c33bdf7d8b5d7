"""The methods ``OXNET.METHOD`` names: each a registered composition of OXnet's components.

A method is a global head ("" none, "gap": GAP + sigmoid, the "+MT" baselines, or "daa": Eq. 2-3),
GPA (Eq. 4-6) or not, a loss on the images without boxes ("" none, "sfl": the mean teacher's soft
focal loss, Eq. 8, or a semi-supervised baseline's: "pi", "mean_teacher", "mmt_psm", "focalmix", each
registered in :data:`oxnet.modeling.unsup.UNSUP_LOSS_REGISTRY`), and extras: ``weak_negatives``
(the detector also trains on the weak images' absent classes: a loss the paper does not have, so the
methods with it are rows of their own, ``*_neg``) and ``requires``
(config values the method is defined with; building a model whose config differs is an error).
Image labels are used only by methods with a global head or ``weak_negatives``; the others treat weak
images as unlabeled. The rows named after the paper train exactly its losses; ``OXNET.WEAK.NEGATIVE_FOCAL
True`` adds weak negatives to any method with image labels.

A new method is one more ``register_method(Method(...))``; an unknown or repeated name is an error
listing the registered ones (:class:`oxnet.utils.registry.NamedRegistry`).
"""

from dataclasses import dataclass

from oxnet.utils.registry import NamedRegistry

__all__ = [
    "COMPONENT_TITLES",
    "COMPONENT_VALUES",
    "METHOD_REGISTRY",
    "TEACHER_LOSSES",
    "Method",
    "check_method_config",
    "describe_methods",
    "get_method",
    "method_components",
    "method_names",
    "register_method",
    "second_view",
    "uses_image_labels",
    "uses_teacher",
    "uses_weak_negatives",
]

METHOD_REGISTRY = NamedRegistry("OXNET_METHOD")
METHOD_REGISTRY.__doc__ = (
    """The methods of ``OXNET.METHOD`` (:class:`Method`), in the paper's Table 1 order."""
)

#: Unsupervised losses whose targets come from the mean teacher (MeanTeacherHook).
TEACHER_LOSSES = ("sfl", "mean_teacher", "mmt_psm", "focalmix")


@dataclass(frozen=True)
class Method:
    """One ``OXNET.METHOD``: its components and the config values it is defined with."""

    name: str
    global_head: str = ""
    gpa: bool = False
    unsup: str = ""
    weak_negatives: bool = False
    #: ((config key, value), ...) the method needs, e.g. the filtered SFL of ``oxnet_plus``
    requires: tuple = ()
    #: where the method's full config is (named in the error when ``requires`` is not met)
    config_file: str = ""
    #: the method whose run is this method's RetinaNet stage when it starts from a trained detector
    #: (``python -m oxnet.bench --warm-start``)
    warm_start: str = "retinanet"

    def __post_init__(self):
        if self.global_head not in ("", "gap", "daa"):
            raise ValueError(
                f"method {self.name}: global_head must be '', 'gap' or 'daa', got {self.global_head!r}"
            )
        if self.gpa and self.global_head != "daa":
            raise ValueError(f"method {self.name}: GPA needs the DAA global head (its features use R)")

    def components(self):
        """``{"global_head", "gpa", "unsup", "weak_negatives"}``."""
        return {
            "global_head": self.global_head,
            "gpa": self.gpa,
            "unsup": self.unsup,
            "weak_negatives": self.weak_negatives,
        }


def register_method(method):
    """Register a :class:`Method` under its name; returns it."""
    return METHOD_REGISTRY.register(method)


def get_method(name):
    """The registered :class:`Method` ``name`` (ValueError listing the methods when unknown)."""
    try:
        return METHOD_REGISTRY.get(name)
    except ValueError:
        raise ValueError(
            f"unknown OXNET.METHOD {name!r}; choose one of {', '.join(method_names())}"
        ) from None


def method_names():
    """Every registered method, in registration (Table 1) order."""
    return METHOD_REGISTRY.names()


# RetinaNet on the box-labeled images (Table 1, row 1)
register_method(Method("retinanet"))
# RetinaNet that also learns from the weak images' absent classes as box-free images (not in the paper)
register_method(Method("retinanet_neg", weak_negatives=True))
# semi-supervised baselines (Table 1, rows 2-5) and their multi-task "+MT" variants (rows 6-9)
_BASELINES = (
    ("pi", "pi_model"),
    ("mean_teacher", "mean_teacher"),
    ("mmt_psm", "mmt_psm"),
    ("focalmix", "focalmix"),
)
for _unsup, _name in _BASELINES:
    register_method(Method(_name, unsup=_unsup))
for _unsup, _name in _BASELINES:
    register_method(Method(f"{_name}_mt", global_head="gap", unsup=_unsup))
# RetinaNet with the multi-task global head alone
register_method(Method("gap", global_head="gap"))
# OXnet's ablations (rows 10-12) and OXnet (row 13)
register_method(Method("sfl", unsup="sfl"))
register_method(Method("daa", global_head="daa"))
register_method(Method("daa_gpa", global_head="daa", gpa=True))
register_method(Method("oxnet", global_head="daa", gpa=True, unsup="sfl"))
# DAA and OXnet with weak negatives (not in the paper)
register_method(Method("daa_neg", global_head="daa", weak_negatives=True))
register_method(Method("oxnet_neg", global_head="daa", gpa=True, unsup="sfl", weak_negatives=True))
# OXnet with weak negatives, filtered SFL and a zero-initialized global head (not in the paper)
register_method(
    Method(
        "oxnet_plus",
        global_head="daa",
        gpa=True,
        unsup="sfl",
        weak_negatives=True,
        requires=(("OXNET.SFL.MODE", "filtered"), ("OXNET.GLOBAL_HEAD.INIT", "zero")),
        config_file="configs/table1/oxnet_plus.yaml",
    )
)
# retinanet_neg plus filtered SFL, which needs the weak images' labels (not in the paper)
register_method(
    Method(
        "sfl_plus",
        unsup="sfl",
        weak_negatives=True,
        requires=(("OXNET.SFL.MODE", "filtered"),),
        config_file="configs/table1/sfl_plus.yaml",
    )
)
# The authors' recipe (configs/authors/, README): their RetinaNet stage and OXnet as their code trains
# it, with every switch of the README's difference table set to their code (their bugs included)
_AUTHORS_REQUIRES = (("OXNET.AUG.POLICY", "authors"),)
register_method(
    Method(
        "retinanet_authors",
        requires=_AUTHORS_REQUIRES,
        config_file="configs/authors/retinanet_R101.yaml",
        warm_start="retinanet_authors",
    )
)
register_method(
    Method(
        "oxnet_authors",
        global_head="daa",
        gpa=True,
        unsup="sfl",
        requires=_AUTHORS_REQUIRES
        + (
            ("OXNET.SFL.MODE", "filtered"),
            ("OXNET.SFL.TEACHER_BOXES", "authors"),
            ("OXNET.SFL.BOX_LOSS", "authors"),
            ("OXNET.GPA.FORM", "authors"),
            ("OXNET.TEACHER.BUFFERS", "keep"),
        ),
        config_file="configs/authors/oxnet_R101.yaml",
        warm_start="retinanet_authors",
    )
)
del _BASELINES, _unsup, _name, _AUTHORS_REQUIRES


def method_components(method):
    """The component switches of a method name (see :class:`Method`)."""
    return get_method(method).components()


def check_method_config(cfg):
    """Raise ValueError when the config lacks a value its method is defined with (``requires``)."""
    method = get_method(cfg.OXNET.METHOD)
    for key, value in method.requires:
        node = cfg
        for part in key.split("."):
            node = node[part]
        if node != value:
            where = f" (as {method.config_file} sets it)" if method.config_file else ""
            raise ValueError(f"OXNET.METHOD {method.name} needs {key} {value!r}{where}, got {node!r}")


def uses_teacher(method):
    """Whether the method needs a mean teacher."""
    return get_method(method).unsup in TEACHER_LOSSES


def uses_image_labels(method):
    """Whether the method learns from weak images' labels (a global head or weak negatives)."""
    m = get_method(method)
    return bool(m.global_head) or m.weak_negatives


def uses_weak_negatives(cfg):
    """Whether the detector trains on weak images' absent classes: a method with weak negatives built in
    (``*_neg``), or ``OXNET.WEAK.NEGATIVE_FOCAL`` with a method that uses image labels."""
    method = cfg.OXNET.METHOD
    return get_method(method).weak_negatives or (
        bool(cfg.OXNET.WEAK.NEGATIVE_FOCAL) and uses_image_labels(method)
    )


def second_view(method):
    """What the mapper puts in ``image_weak`` for weak/unlabeled training images: "weak" (the
    teacher's view, without photometric changes), "strong" (a second, independent strong draw: the
    Pi model's two stochastic views) or "" (none)."""
    unsup = get_method(method).unsup
    if unsup in TEACHER_LOSSES:
        return "weak"
    return "strong" if unsup == "pi" else ""


#: Readable names of the component switches and of their values.
COMPONENT_TITLES = {
    "global_head": "global head",
    "gpa": "GPA",
    "unsup": "loss on images without boxes",
    "weak_negatives": "weak negatives (not in the paper)",
}
COMPONENT_VALUES = {
    "global_head": {"": "-", "gap": "GAP (+MT)", "daa": "DAA"},
    "gpa": {False: "-", True: "GPA"},
    "unsup": {
        "": "-",
        "sfl": "SFL (mean teacher)",
        "pi": "Pi model",
        "mean_teacher": "Mean Teacher",
        "mmt_psm": "MMT-PSM",
        "focalmix": "FocalMix",
    },
    "weak_negatives": {False: "-", True: "focal loss, target 0"},
}


def describe_methods():
    """``[(method, {component title: readable value})]`` for every registered method, in order."""
    return [
        (m, {title: COMPONENT_VALUES[c][method_components(m)[c]] for c, title in COMPONENT_TITLES.items()})
        for m in method_names()
    ]
