"""OXnet configuration: ``add_oxnet_config(cfg)`` adds the ``cfg.OXNET`` keys to a detectron2 config."""
from detectron2.config import CfgNode as CN

#: Which components each method enables (paper Table 1).
#: ``global_head``: "" (none), "gap" (GAP + sigmoid, the "+MT" baselines) or "daa" (Eq. 2-3);
#: ``gpa``: global prototype alignment (Eq. 4-6); ``unsup``: the loss on unlabeled (and weak)
#: images, "" (none) or "sfl" (the mean teacher's soft focal loss, Eq. 8).
METHODS = {
    "retinanet": dict(global_head="", gpa=False, unsup=""),
    "sfl": dict(global_head="", gpa=False, unsup="sfl"),
    "gap": dict(global_head="gap", gpa=False, unsup=""),
    "daa": dict(global_head="daa", gpa=False, unsup=""),
    "daa_gpa": dict(global_head="daa", gpa=True, unsup=""),
    "oxnet": dict(global_head="daa", gpa=True, unsup="sfl"),
}

#: Unsupervised losses whose targets come from the mean teacher (MeanTeacherHook).
TEACHER_LOSSES = ("sfl",)


def uses_teacher(method):
    """Whether the method needs a mean teacher."""
    return method_components(method)["unsup"] in TEACHER_LOSSES


def method_components(method):
    """Return the component switches of a method name (see :data:`METHODS`)."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown OXNET.METHOD {method!r}; choose one of {sorted(METHODS)}") from None


def add_oxnet_config(cfg):
    """Add OXnet's keys (``cfg.OXNET``) with the paper's defaults (Sec. 2.4)."""
    _C = cfg
    _C.OXNET = CN()
    _C.OXNET.METHOD = "oxnet"
    # Square input size: "CXR images are resized to 512x512 without cropping" (Sec. 2.4).
    _C.OXNET.INPUT_SIZE = 512

    _C.OXNET.GLOBAL_HEAD = CN()
    # The last ResNet stage M (Sec. 2.1), taken from the FPN's bottom-up network.
    _C.OXNET.GLOBAL_HEAD.IN_FEATURE = "res5"
    _C.OXNET.GLOBAL_HEAD.LOSS_WEIGHT = 1.0

    _C.OXNET.GPA = CN()
    _C.OXNET.GPA.MOMENTUM = 0.7  # beta of Eq. 5 after the first update
    _C.OXNET.GPA.MARGIN = 1.0  # delta of Eq. 6
    _C.OXNET.GPA.INTRA_WEIGHT = 1.0
    _C.OXNET.GPA.INTER_WEIGHT = 1.0

    _C.OXNET.SFL = CN()
    _C.OXNET.SFL.ALPHA = 0.9  # Eq. 8
    _C.OXNET.SFL.EPS = 0.05
    _C.OXNET.SFL.GAMMA = 2.0
    _C.OXNET.SFL.WEIGHT = 1.0

    _C.OXNET.TEACHER = CN()
    _C.OXNET.TEACHER.EMA_DECAY = 0.99  # lambda of the mean teacher (Sec. 2.3)

    # Images per iteration from each stream (whole job; split evenly across processes).
    _C.OXNET.BATCH = CN()
    _C.OXNET.BATCH.FULL = 2
    _C.OXNET.BATCH.WEAK = 2
    _C.OXNET.BATCH.UNLABELED = 2

    # Augmentation. Geometry is shared by the teacher's (weak) and student's (strong) views so the
    # anchors align; the photometric part applies to the strong view only.
    _C.OXNET.AUG = CN()
    _C.OXNET.AUG.HFLIP_PROB = 0.0  # chest anatomy is not left-right symmetric: off by default
    _C.OXNET.AUG.BRIGHTNESS = 0.2  # strong view: intensity scale in [1 - b, 1 + b]
    _C.OXNET.AUG.CONTRAST = 0.2
    _C.OXNET.AUG.NOISE_STD = 6.0  # strong view: Gaussian noise (grey levels)
    _C.OXNET.AUG.CUTOUT = 1  # strong view: number of cutout squares
    _C.OXNET.AUG.CUTOUT_SIZE = 0.1  # side as a fraction of the image side

    _C.OXNET.SOLVER = CN()
    _C.OXNET.SOLVER.OPTIMIZER = "ADAM"  # "ADAM" (the paper) or "SGD" (detectron2's default)
    # Divide the LR by FACTOR when validation mAP has not improved for PATIENCE evaluations
    # (the paper's schedule); 0 disables it, leaving detectron2's SOLVER.STEPS schedule.
    _C.OXNET.SOLVER.PLATEAU_PATIENCE = 0
    _C.OXNET.SOLVER.PLATEAU_FACTOR = 0.1
    _C.OXNET.SOLVER.PLATEAU_METRIC = "bbox/mAP"

    # OXnet-COCO datasets to register at start-up: ((name, json_file, image_root), ...).
    _C.OXNET.DATASETS = ()

    # Optional prepared image cache (datasets/prepare_cache.py); "" reads image files.
    _C.OXNET.DATA = CN()
    _C.OXNET.DATA.CACHE = ""
    return cfg
