"""Benchmark specifications: the data, the model size and the schedule of a Table 1 / Table 2 rerun.

A spec is a JSON-able dict (``--data`` takes a preset name or the path of a JSON file with the same
keys; missing keys take :data:`DEFAULTS`):

* ``data``: where the images come from, one of

  - ``{"kind": "synthetic", "n_train", "n_test", "size", "seed"}``: synthetic chest X-rays
    (:func:`oxnet.data.synthetic.generate_split`, as ``datasets/prepare_synthetic.py`` writes them);
  - ``{"kind": "coco", "json", "images", "n_train", "n_test", "seed"}``: a fully labeled COCO
    detection file (:func:`oxnet.data.importers.load_coco`) split at random, stratified by class,
    one image per patient unless the images carry ``patient_id``
    (:func:`oxnet.data.split.split_by_patient`); relative paths are relative to the spec file (to the
    repository root for presets);
  - ``{"kind": "toy", "n_train", "n_test", "size", "num_classes", "seed"}``: bright squares
    (:func:`oxnet.utils.testing.write_toy_dataset`), only to test the wiring.

* ``table1``: ``{"full": fraction or count}`` of the training images that keep their boxes; the
  others are weakly labeled for methods with a global head and unlabeled for the others, as in the
  paper's Table 1 (e.g. OXnet 2725 / 11238 / 0, Mean Teacher 2725 / 0 / 11238, RetinaNet 2725 / 0 / 0).
* ``table2``: ``{"settings": [[full, weak, unlabeled], ...] or null}`` with ``null`` for the paper's
  nine settings scaled to the training set (:func:`oxnet.data.omni.table2_settings`); the first three
  rows train RetinaNet, the others OXnet (``"methods"`` overrides that, one per setting).
* ``iters``, ``seeds``: iterations per run and seeds per row (``--iters`` / ``--seeds`` override).
* ``burn_in_fraction`` (default 0), ``rampup_fraction`` (default 0.25): ``OXNET.RAMPUP.BURN_IN_ITERS``
  and ``OXNET.RAMPUP.ITERS`` as fractions of ``iters``, for every row alike.
* ``eval_period`` (default 0: only after training): also evaluate on the test set every so many
  iterations (or this fraction of ``iters``) during training; the mAPs are kept as the run's
  ``curve`` in results.json.
* ``opts``: detectron2 config overrides applied after the row's config file, e.g. the model size.
* ``warm_start``: ``{"iters": K0, "opts": [...]}``; with K0 > 0 every run starts from RetinaNet trained
  K0 iterations on the run's box-labeled images (same seed), as the paper's authors start OXnet from a
  trained detector, and ``opts`` apply on top of ``opts`` (default: Adam at 1e-4, a fifth of the
  from-scratch rate). ``--warm-start K0`` sets K0.
"""
import json
import os

__all__ = ["DEFAULTS", "PRESETS", "TABLE1_ROWS", "CPU_MODEL", "load_spec"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The rows of the paper's Table 1, in its order.
TABLE1_ROWS = ("retinanet", "pi_model", "mean_teacher", "mmt_psm", "focalmix", "pi_model_mt",
               "mean_teacher_mt", "mmt_psm_mt", "focalmix_mt", "sfl", "daa", "daa_gpa", "oxnet")

#: A RetinaNet whose runs fit in minutes on a 2-core CPU: ResNet-18 (GroupNorm, from scratch: no
#: pre-trained weights can be downloaded), a 64-channel FPN, two head convolutions, 192 px inputs and
#: anchors scaled to them (detectron2's 32..512 x 192/512), 2 images per stream and iteration, Adam at
#: 5e-4 (the paper's 1e-5 is for an ImageNet-initialized ResNet-101 over 60k iterations). Same for
#: every row.
CPU_MODEL = [
    "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.DEPTH", 18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.FPN.OUT_CHANNELS", 64,
    "MODEL.RETINANET.NUM_CONVS", 2,
    "MODEL.ANCHOR_GENERATOR.SIZES", [[12, 15.12, 19.05], [24, 30.24, 38.10], [48, 60.48, 76.20],
                                     [96, 120.95, 152.40], [192, 241.90, 304.79]],
    "OXNET.INPUT_SIZE", 192,
    "OXNET.BATCH.FULL", 2,
    "OXNET.BATCH.WEAK", 2,
    "OXNET.BATCH.UNLABELED", 2,
    "SOLVER.BASE_LR", 5e-4,
    "DATALOADER.NUM_WORKERS", 1,
]

DEFAULTS = {
    "table1": {"full": 0.25},
    "table2": {"settings": None, "methods": None},
    "iters": 250,
    "seeds": 3,
    "opts": CPU_MODEL,
    "warm_start": {"iters": 0, "opts": ["SOLVER.BASE_LR", 1e-4]},
}

PRESETS = {
    # 400 training images (100 with boxes) and 100 test images of the nine paper classes, drawn at the
    # network's input size.
    "synthetic": {
        "data": {"kind": "synthetic", "n_train": 400, "n_test": 100, "size": 192, "seed": 0},
        "iters": 250,
        "seeds": 3,
    },
    # TBX11K's 500 tuberculosis X-rays: 350 train (a quarter keep their boxes) / 150 test. The two
    # TB classes are kept: every image has TB, so a single class would leave image labels empty of
    # information.
    "tbx500": {
        "data": {"kind": "coco", "json": "../shared/data/tbx11k-tb500/annotations.json",
                 "images": "../shared/data/tbx11k-tb500/images", "n_train": 350, "n_test": 150, "seed": 0},
        "iters": 250,
        "seeds": 3,
    },
    # Wiring only: a few 64 px toy images and a tiny network.
    "toy": {
        "data": {"kind": "toy", "n_train": 12, "n_test": 4, "size": 64, "num_classes": 3, "seed": 0},
        "iters": 2,
        "seeds": 1,
        "opts": CPU_MODEL + ["OXNET.INPUT_SIZE", 64, "MODEL.RETINANET.NUM_CONVS", 1,
                             "OXNET.BATCH.FULL", 2, "OXNET.BATCH.WEAK", 2, "OXNET.BATCH.UNLABELED", 2,
                             "DATALOADER.NUM_WORKERS", 0],
    },
}


def load_spec(data):
    """The spec for ``--data``: a preset name (:data:`PRESETS`) or a JSON file path."""
    if data in PRESETS:
        spec, base = dict(json.loads(json.dumps(PRESETS[data])), name=data), REPO_ROOT
    elif os.path.isfile(data):
        with open(data, encoding="utf-8") as f:
            try:
                spec = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{data}: not a JSON benchmark spec: {e}") from None
        spec.setdefault("name", os.path.splitext(os.path.basename(data))[0])
        base = os.path.dirname(os.path.abspath(data))
    else:
        raise ValueError(f"--data {data!r} is neither a preset ({', '.join(sorted(PRESETS))}) "
                         "nor a JSON file")
    out = json.loads(json.dumps(DEFAULTS))
    for k, v in spec.items():
        out[k] = dict(out[k], **v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    d = out.get("data")
    if not isinstance(d, dict) or d.get("kind") not in ("synthetic", "coco", "toy"):
        raise ValueError(f"{data}: 'data' must be an object with kind 'synthetic', 'coco' or 'toy', "
                         f"got {d!r}")
    if d["kind"] == "coco":
        for key in ("json", "images"):
            if key not in d:
                raise ValueError(f"{data}: data kind 'coco' needs {key!r}")
            d[key] = os.path.normpath(os.path.join(base, d[key]))
    return out
