"""OXnet configuration: ``add_oxnet_config(cfg)`` adds the ``cfg.OXNET`` keys to a detectron2 config."""

from detectron2.config import CfgNode as CN

#: The nine thoracic diseases of the OXnet paper (Sec. 3.1), in contiguous-id order.
PAPER_CLASSES = (
    "aortic calcification",
    "cardiomegaly",
    "fracture",
    "mass",
    "nodule",
    "pleural effusion",
    "pneumonia",
    "pneumothorax",
    "tuberculosis",
)

# Options added after benchmark results were first recorded, with the value that leaves training as it
# was: a run's fingerprint (oxnet.bench) omits them while they have it, so finished runs stay valid.
NEUTRAL_OPTIONS = {
    "OXNET.AUG.SCALE_RANGE": (1.0, 1.0),
    "OXNET.GLOBAL_HEAD.ATTENTION_GRAD": "all",
    "OXNET.CATEGORY_IDS": (),
    "OXNET.GLOBAL_HEAD.BCE_REDUCTION": "sum_classes",
    "OXNET.GLOBAL_HEAD.INIT": "normal",
    "OXNET.WEAK.NEGATIVE_FOCAL": False,
    "OXNET.SFL.MODE": "dense",
    "OXNET.SFL.UNLABELED": "dense",
    "OXNET.GLOBAL_HEAD.ALIGN_CORNERS": False,
    "OXNET.GPA.FORM": "paper",
    "OXNET.BACKBONE.PRETRAINED": "",
    "OXNET.BACKBONE.PRETRAINED_INPUT": "auto",
    # fault handling: no effect on a run whose images all decode and whose losses stay finite
    "OXNET.DATA.MAX_FAILED_FRACTION": 0.01,
    "OXNET.SOLVER.MAX_NONFINITE_SKIPS": 5,
    # mixed precision: the dtype matters only with SOLVER.AMP.ENABLED (which the fingerprint keeps; the
    # bench resolves "auto" before fingerprinting); float32 inference is what every recorded run used
    "OXNET.AMP.DTYPE": "bfloat16",
    "OXNET.AMP.INFERENCE": "float32",
    # a default that changed: the old value is the neutral one, so runs with the new default (fused
    # Adam, whose results differ in the last bits) get new folders instead of reusing recorded ones
    "OXNET.SOLVER.FUSED": False,
    # the authors' recipe (configs/authors/, README "The paper, the authors' code and our defaults"):
    # each switch's default is the paper's form, the form every earlier run trained
    "OXNET.SFL.TEACHER_BOXES": "inference",
    "OXNET.SFL.TEACHER_BOX_INDEX_BUG": False,
    "OXNET.SFL.BOX_LOSS": "retinanet",
    "OXNET.SFL.ALPHA_BATCH_BUG": False,
    "OXNET.SFL.TEACHER_VIEW": "weak",
    "OXNET.GPA.ABSENT_DECAY": False,
    "OXNET.GPA.VIEW_BUG": False,
    "OXNET.AUG.POLICY": "oxnet",
    "OXNET.BACKBONE.FREEZE_BN_STATS": False,
    "OXNET.TEACHER.BUFFERS": "copy",
    "OXNET.SOLVER.STEP_FRACTIONS": (),
    "OXNET.WARM_START": "",
}


def add_oxnet_config(cfg):
    """Add OXnet's keys (``cfg.OXNET``) with the paper's defaults (Sec. 2.4)."""
    _C = cfg
    _C.OXNET = CN()
    # The method to train: OXnet, one of its ablations or a baseline of the paper's Table 1
    # (oxnet.methods: which components each enables; `python train_net.py --list-methods`).
    _C.OXNET.METHOD = "oxnet"
    # Square input size: "CXR images are resized to 512x512 without cropping" (Sec. 2.4).
    _C.OXNET.INPUT_SIZE = 512

    # Pretrained ResNet weights for the backbone (oxnet.modeling.pretrained), converted to detectron2's
    # ResNet when training starts from scratch (not when resuming; MODEL.WEIGHTS, when set, loads over
    # them).
    _C.OXNET.BACKBONE = CN()
    # "" (none), a torchvision-layout ResNet file (.pth/.pt/.safetensors: torchvision, timm or
    # torchxrayvision), or a cached name: torchvision://resnet18|34|50|101|152, timm://resnet50.a1_in1k,
    # xrv://resnet50-res512-all. Needs MODEL.RESNETS.NORM FrozenBN and STRIDE_IN_1X1 False; nothing is
    # downloaded (`python -m oxnet.modeling.pretrained fetch NAME` on a machine with internet).
    _C.OXNET.BACKBONE.PRETRAINED = ""
    # The input normalization the weights were trained with, which MODEL.PIXEL_MEAN/STD must match:
    # "imagenet", "xrv" (torchxrayvision's [-1024, 1024]), "auto" (xrv for xrv:// names and files with a
    # 1-channel conv1, else imagenet) or "none" (no check).
    _C.OXNET.BACKBONE.PRETRAINED_INPUT = "auto"
    # BatchNorm layers (MODEL.RESNETS.NORM "BN") kept in eval mode while training: their running
    # statistics stay as loaded, their affine weights still train. False: detectron2's training-mode
    # BN. True: the authors' train_oxnet.py (``retinanet.module.freeze_bn()``), which detectron2's
    # "FrozenBN" is not (it freezes the affine weights too).
    _C.OXNET.BACKBONE.FREEZE_BN_STATS = False

    # Start from a trained detector: a config file (relative to the working directory or to the
    # config file that names it) whose run trains the RetinaNet stage; train_net.py trains it first
    # (in OUTPUT_DIR/warm_start, resumable) and starts the student and the mean teacher from its
    # model_final.pth. "" or MODEL.WEIGHTS set: no such stage (the authors' train_retinanet.py,
    # then train_oxnet.py with both models loaded from it).
    _C.OXNET.WARM_START = ""

    # The global head: image-level classification from the image labels (Sec. 2.1, Eq. 1; the "gap" and
    # "daa" heads of the methods, oxnet.methods).
    _C.OXNET.GLOBAL_HEAD = CN()
    # The last ResNet stage M (Sec. 2.1), taken from the FPN's bottom-up network.
    _C.OXNET.GLOBAL_HEAD.IN_FEATURE = "res5"
    _C.OXNET.GLOBAL_HEAD.LOSS_WEIGHT = 1.0  # weight of the global head's BCE loss (Eq. 1)
    # Whose image labels reach the detector through DAA's attention R
    # (oxnet.modeling.attention.gate_attention): "all" (Eq. 3, the paper), "positive" (present classes
    # only) or "none". It gates the global BCE only: GPA's class features (Eq. 4) use R ungated, so
    # with GPA the image labels still reach the detector through R.
    _C.OXNET.GLOBAL_HEAD.ATTENTION_GRAD = "all"
    # The image-label BCE (Eq. 1) over the known (image, class) entries: "sum_classes" (Eq. 1's sum
    # over classes, averaged over images; the paper) or "mean" (the authors' train_oxnet.py l.296-324:
    # BCEWithLogits averaged over images x classes, 1/K of Eq. 1).
    _C.OXNET.GLOBAL_HEAD.BCE_REDUCTION = "sum_classes"
    # Initialization of the 1x1 classifier: "normal" (std 0.01, zero bias) or "zero" (the authors'
    # code: zero weights, no bias, so DAA sends no gradient into the detector until the CAM has learned).
    _C.OXNET.GLOBAL_HEAD.INIT = "normal"
    # Corner convention of the bilinear resize of the local attention to the CAM's grid (Eq. 2):
    # False (PyTorch's default) or True (the authors' code).
    _C.OXNET.GLOBAL_HEAD.ALIGN_CORNERS = False

    # Weak images' labels in the detector's loss.
    _C.OXNET.WEAK = CN()
    # Weak negatives, a loss the paper does not have: for each class a weak image is labelled without
    # (0), RetinaNet's focal loss with target 0 on every anchor. True adds it to every method with image
    # labels (a global head); the *_neg methods (retinanet_neg, daa_neg, oxnet_neg) have it built in.
    _C.OXNET.WEAK.NEGATIVE_FOCAL = False

    # Global prototype alignment (GPA, Sec. 2.2, Eq. 4-6).
    _C.OXNET.GPA = CN()
    _C.OXNET.GPA.MOMENTUM = 0.7  # beta of Eq. 5 after the first update
    _C.OXNET.GPA.MARGIN = 1.0  # delta of Eq. 6
    _C.OXNET.GPA.INTRA_WEIGHT = 1.0  # weight of the intra-class loss (features to their prototype)
    _C.OXNET.GPA.INTER_WEIGHT = 1.0  # weight of the inter-class loss (prototypes apart by the margin)
    # Eq. 6's form: "paper" (per-image class features, hinge max(0, delta - d)) or "authors" (their
    # code: per-class batch-mean features, ((delta - sqrt d) / delta)^2 max(delta - sqrt d, 0)^2).
    _C.OXNET.GPA.FORM = "paper"
    # A class absent from the batch: False (Eq. 5 updates present classes only, the paper) or True
    # (the authors' update_prototypes, model.py l.309-335: its prototype is multiplied by MOMENTUM).
    _C.OXNET.GPA.ABSENT_DECAY = False
    # The authors' bug in their class features (model.py l.322): the (B, C, K) stack is reshaped with
    # ``.view(B, K, C)``, which scrambles channels and classes, instead of permuted. Off unless
    # reproducing their runs.
    _C.OXNET.GPA.VIEW_BUG = False

    # Soft focal loss on the mean teacher's predictions (SFL, Sec. 2.3, Eq. 7-8):
    # (q~ alpha + eps) |q~ - q|^gamma BCE(q, q~) for the student's q and the teacher's q~.
    _C.OXNET.SFL = CN()
    _C.OXNET.SFL.ALPHA = 0.9  # alpha of Eq. 8: weight of the teacher's probability
    _C.OXNET.SFL.EPS = 0.05  # eps of Eq. 8: weight left to entries the teacher deems negative
    _C.OXNET.SFL.GAMMA = 2.0  # gamma of Eq. 8: focusing exponent
    _C.OXNET.SFL.WEIGHT = 1.0  # weight of the SFL loss
    # "dense": Eq. 8 on every anchor and class; "filtered": the authors' code (teacher boxes of the
    # image's labelled classes, 0.4/0.5 ignore band, box consistency; oxnet.modeling.unsup.sfl).
    _C.OXNET.SFL.MODE = "dense"
    # Filtered mode, unlabeled images (no labels to filter with): "dense" (Eq. 8) or "skip".
    _C.OXNET.SFL.UNLABELED = "dense"
    # --- the authors' ConsistencyLoss (LLYXC/OXnet retinanet/losses.py, model.py); defaults: ours ---
    # Filtered mode, which teacher boxes: "inference" (detectron2's inference: score >
    # SCORE_THRESH_TEST, per-class NMS at NMS_THRESH_TEST, at most DETECTIONS_PER_IMAGE) or "authors"
    # (model.py l.422-459: every anchor decoded and clipped, score = max class probability > 0.01,
    # one NMS over all classes at IoU 0.5, then score > 0.5).
    _C.OXNET.SFL.TEACHER_BOXES = "inference"
    # The authors' bug in that selection (model.py l.452): the coordinates are the first K boxes in
    # anchor order among those above 0.01 instead of the K kept ones (scores and classes are right).
    # Only with TEACHER_BOXES "authors"; off unless reproducing their runs.
    _C.OXNET.SFL.TEACHER_BOX_INDEX_BUG = False
    # Filtered mode, box consistency on the positive anchors: "retinanet" (RetinaNet's box loss as
    # configured, summed over coordinates, / positives) or "authors" (losses.py l.244-292: smooth L1
    # with beta 1/9 on deltas divided by (0.1, 0.1, 0.2, 0.2), teacher box sides clamped to >= 1,
    # averaged over the 4 coordinates and the positive anchors).
    _C.OXNET.SFL.BOX_LOSS = "retinanet"
    # The authors' bug in SFL's alpha (losses.py l.234): each weak image's loss is weighted by the
    # whole weak batch's sum_b (eps + alpha q~_b) instead of its own (eps + alpha q~). Off unless
    # reproducing their runs.
    _C.OXNET.SFL.ALPHA_BATCH_BUG = False
    # The teacher's view of a weak or unlabeled image: "weak" (the student's geometry without its
    # photometric changes) or "augmented" (a second, independently augmented view, as the authors'
    # TransformTwice gives the teacher).
    _C.OXNET.SFL.TEACHER_VIEW = "weak"

    # Schedule of every loss beyond RetinaNet's on boxed images (global head, GPA, SFL and the
    # baselines' consistency): zero for the first BURN_IN_ITERS iterations (the detector learns from
    # its boxes alone), then Laine & Aila's ramp-up exp(-5 (1 - t / ITERS)^2) over the next ITERS.
    _C.OXNET.RAMPUP = CN()
    _C.OXNET.RAMPUP.BURN_IN_ITERS = 0  # iterations with these losses off (0: none)
    _C.OXNET.RAMPUP.ITERS = 0  # length T of the ramp-up after the burn-in (0: full weight at once)

    # Semi-supervised baselines (oxnet.modeling.baselines): their loss is multiplied by WEIGHT.
    _C.OXNET.CONSISTENCY = CN()
    _C.OXNET.CONSISTENCY.WEIGHT = 1.0  # factor of the baselines' loss on images without boxes
    # MMT-PSM: teacher self-ensemble over VIEWS perturbed copies of the weak view (Gaussian noise of
    # NOISE_STD grey levels; the first copy is unperturbed); the SELECT_FRACTION most sensitive
    # anchor-class entries of each image are distilled.
    _C.OXNET.MMT_PSM = CN()
    _C.OXNET.MMT_PSM.VIEWS = 4  # copies of the weak view the teacher's predictions are averaged over
    _C.OXNET.MMT_PSM.NOISE_STD = 6.0  # Gaussian noise added to the copies but the first (grey levels)
    _C.OXNET.MMT_PSM.SELECT_FRACTION = 0.1  # fraction of each image's anchor-class entries distilled
    # FocalMix: soft-target focal loss (ALPHA, GAMMA) on MixUp (lambda ~ Beta(MIXUP_ALPHA, MIXUP_ALPHA))
    # of unlabeled images and their teacher targets sharpened with TEMPERATURE.
    _C.OXNET.FOCALMIX = CN()
    _C.OXNET.FOCALMIX.ALPHA = 0.25  # alpha of the soft-target focal loss
    _C.OXNET.FOCALMIX.GAMMA = 2.0  # gamma of the soft-target focal loss
    _C.OXNET.FOCALMIX.MIXUP_ALPHA = 0.75  # MixUp weight lambda ~ Beta(MIXUP_ALPHA, MIXUP_ALPHA)
    _C.OXNET.FOCALMIX.TEMPERATURE = 0.5  # sharpening temperature of the teacher's targets

    # The mean teacher: an exponential moving average of the student (methods with a teacher loss).
    _C.OXNET.TEACHER = CN()
    _C.OXNET.TEACHER.EMA_DECAY = 0.99  # lambda of the mean teacher (Sec. 2.3)
    # The student's buffers (GPA prototypes, loss normalizers, BN statistics): "copy" (copied into the
    # teacher after each step) or "keep" (the teacher keeps its own; the authors' update_ema_variables,
    # train_oxnet.py l.35-40, averages parameters only).
    _C.OXNET.TEACHER.BUFFERS = "copy"

    # Images per iteration from each stream (whole job; split evenly across processes).
    _C.OXNET.BATCH = CN()
    _C.OXNET.BATCH.FULL = 2  # images with boxes (D_F)
    _C.OXNET.BATCH.WEAK = 2  # images with image labels only (D_W); unused by methods that cannot use them
    _C.OXNET.BATCH.UNLABELED = 2  # unlabeled images (D_U); used only by methods with an unsupervised loss

    # Augmentation. Geometry is shared by the teacher's (weak) and student's (strong) views so the
    # anchors align; the photometric part applies to the strong view only.
    _C.OXNET.AUG = CN()
    _C.OXNET.AUG.HFLIP_PROB = 0.0  # horizontal flip probability; chest anatomy is not symmetric: 0
    # Scale jitter (large-scale jitter, Ghiasi et al. 2021): resize by a factor drawn from this range
    # of the input size, then crop (or pad at the right and bottom) to INPUT_SIZE. (1, 1): off.
    _C.OXNET.AUG.SCALE_RANGE = (1.0, 1.0)
    _C.OXNET.AUG.BRIGHTNESS = 0.2  # strong view: intensity scale in [1 - b, 1 + b]
    _C.OXNET.AUG.CONTRAST = 0.2  # strong view: contrast scale in [1 - c, 1 + c] around the mean
    _C.OXNET.AUG.NOISE_STD = 6.0  # strong view: Gaussian noise (grey levels)
    _C.OXNET.AUG.CUTOUT = 1  # strong view: number of cutout squares
    _C.OXNET.AUG.CUTOUT_SIZE = 0.1  # strong view: cutout square side as a fraction of the image side
    # "oxnet": the strong view above, on weak and unlabeled images only. "authors" (their Augmenter,
    # retinanet/dataloader.py l.413-450): with p = 0.9 one of 9 colour operations at fixed levels and a
    # black cutout square of 2-98 px (of a 512 px image; scaled to INPUT_SIZE), on every training
    # image, box images included (oxnet.data.authors_augment).
    _C.OXNET.AUG.POLICY = "oxnet"

    # Mixed precision (oxnet.modeling.precision). Training runs the network pass (backbone, FPN, head) of
    # the student and the teacher under autocast when detectron2's SOLVER.AMP.ENABLED is True; losses,
    # DAA's pooling, GPA, the teacher's probabilities and the EMA updates stay float32.
    _C.OXNET.AMP = CN()
    # "bfloat16" (CPUs with AVX-512 BF16 or AMX, GPUs from Ampere on), "float16" (CUDA only, with a
    # gradient scaler) or "auto" (bfloat16 where supported, else float16 on CUDA, else float32).
    _C.OXNET.AMP.DTYPE = "bfloat16"
    # The network pass at inference (predictor, --eval-only, evaluation during training, the service):
    # "float32", "bfloat16", "float16" (CUDA) or "auto". Exported models are float32.
    _C.OXNET.AMP.INFERENCE = "float32"

    # Optimizer and LR schedule (detectron2's SOLVER.* keys set the rate, steps and warm-up).
    _C.OXNET.SOLVER = CN()
    _C.OXNET.SOLVER.OPTIMIZER = "ADAM"  # "ADAM" (the paper) or "SGD" (detectron2's default)
    # Adam's fused implementation (one kernel over all parameters; CPU and CUDA): about 3x faster
    # than the per-parameter loop PyTorch uses on CPUs, which was 9-12 % of an OXnet step on the
    # CPU preset; results differ from the loop's in the last bits (about 2e-7 after a few steps).
    _C.OXNET.SOLVER.FUSED = True
    # Multiply the LR by PLATEAU_FACTOR when validation mAP has not improved for PATIENCE evaluations
    # (the paper's schedule); 0 disables it, leaving detectron2's SOLVER.STEPS schedule.
    _C.OXNET.SOLVER.PLATEAU_PATIENCE = 0
    _C.OXNET.SOLVER.PLATEAU_FACTOR = 0.1  # the LR's factor at each plateau (0.1: LR / 10)
    _C.OXNET.SOLVER.PLATEAU_METRIC = "bbox/mAP"  # the validation metric PLATEAU_PATIENCE watches
    # LR steps (x SOLVER.GAMMA) at these fractions of SOLVER.MAX_ITER, replacing SOLVER.STEPS; ()
    # keeps SOLVER.STEPS. The authors' schedule (train_oxnet.py l.316-323): (21/55, 46/55).
    _C.OXNET.SOLVER.STEP_FRACTIONS = ()
    # A step whose loss has a NaN or infinite term is skipped (no update of the weights, optimizer,
    # teacher or GPA prototypes) and the term logged; after this many such steps in a row training
    # saves a checkpoint and stops with an error naming the term and the iteration.
    _C.OXNET.SOLVER.MAX_NONFINITE_SKIPS = 5

    # OXnet-COCO datasets to register at start-up: ((name, json_file, image_root), ...).
    _C.OXNET.DATASETS = ()

    # Optional prepared image cache (datasets/prepare_cache.py); "" reads image files.
    _C.OXNET.DATA = CN()
    _C.OXNET.DATA.CACHE = ""  # folder of the cache written by datasets/prepare_cache.py
    # Training images that may fail to decode (a file corrupted after validation), as a fraction of
    # each stream's images: each is logged, replaced by another image of its stream and counted
    # (data/failed_images in metrics.json); past the fraction training stops naming the files. 0 stops
    # at the first. `python -m oxnet.data.validate FILE --decode` checks every image beforehand.
    _C.OXNET.DATA.MAX_FAILED_FRACTION = 0.01

    # Class names in contiguous-id order (for predictions and overlays); empty: see class_names().
    # The trainer fills both from the training set into the run's config.yaml, so that predictions
    # carry the dataset's category ids.
    _C.OXNET.CLASS_NAMES = ()
    # The training set's COCO category id of each class, in contiguous-id order; empty: unknown.
    _C.OXNET.CATEGORY_IDS = ()
    return cfg


def class_names(cfg):
    """``OXNET.CLASS_NAMES``, or the paper's nine classes when ``MODEL.RETINANET.NUM_CLASSES`` is 9,
    else ``class0``, ``class1``, ..."""
    num_classes = cfg.MODEL.RETINANET.NUM_CLASSES
    names = tuple(cfg.OXNET.CLASS_NAMES)
    if names:
        if len(names) != num_classes:
            raise ValueError(
                f"OXNET.CLASS_NAMES has {len(names)} names but MODEL.RETINANET.NUM_CLASSES "
                f"is {num_classes}: {names}"
            )
        return names
    if num_classes == 9:
        return PAPER_CLASSES
    return tuple(f"class{i}" for i in range(num_classes))


def resolve_device(cfg):
    """Set ``MODEL.DEVICE`` to "cpu" when it asks for CUDA and CUDA is absent; return whether it did."""
    import torch

    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
        return True
    return False
