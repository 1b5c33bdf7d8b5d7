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
    (:func:`oxnet.data.toy.write_toy_dataset`), only to test the wiring;
  - ``{"kind": "omni", "boxes": {...}, "weak": [{...}, ...], "merge_classes" or "class_map", "seed"}``:
    real omni-supervised data, box-labeled images plus images that only ever had image labels:

    * ``boxes``: the keys of kind ``coco`` (``json``, ``images``, ``n_train``, ``n_test``, ``seed``),
      split exactly as kind ``coco`` splits them (the same spec gives the same test images), and
      ``without_boxes``: what an image of the file without any box is, ``"normal"`` (default, COCO's
      meaning) or ``"uncertain"`` (image labels -1: neither a lesion nor a normal image, e.g. in a file of
      diseased images only);
    * ``merge_classes``: a class name: every box class becomes this one class (e.g. TBX11K's
      category-agnostic protocol), or ``class_map``: ``{box class: class}`` renaming / merging box
      classes (:func:`oxnet.data.importers.apply_class_map`; classes not named are kept);
    * ``weak``: label tables (CheXpert style, 1 / 0 / -1 / blank, one row per image) read with
      :func:`oxnet.data.importers.labels_csv.load_labels_csv`, each
      ``{"csv", "images", "path_column" (default "file_name"), "label_columns", "patient_column",
      "test_normal", "test_positive", "stratify", "seed"}``. ``label_columns``: the class columns, a
      list of class names or ``{column: class}`` (default: the columns named like the classes);
      ``patient_column`` as in the importer (default: guessed). ``test_normal`` normal images (every
      class 0) and ``test_positive`` positive images (some class 1) are held out at random (``seed``,
      default the spec's), stratified by the column ``stratify`` (e.g. the source hospital; null: not
      stratified), with the largest-remainder share of each stratum; images of a held-out image's
      patient leave training too. The other rows are weakly labeled training images.

    The test set ``test.json`` is the box test split plus the held-out normal images as fully labeled
    images without boxes (so that a false alarm on a healthy chest counts against AP, and
    :mod:`oxnet.evaluation.normals` reports false alarms per normal image); a second test set
    ``test_image.json`` holds every held-out image as a weak image with its labels, for the image-level
    AUROC of each run (from the top box score and from the global head). In every mix the real weak
    images fill the ``weak`` count first, then the ``unlabeled`` count (as unlabeled images), and the box
    pool's images the rest: in Table 1 a method that uses image labels (a global head, or
    ``weak_negatives``) gets them as weak images, a semi-supervised baseline as unlabeled images and
    RetinaNet not at all. Image paths are written relative to the folders' common parent.

* ``table1``: ``{"full": fraction or count}`` of the training images that keep their boxes; the
  others are weakly labeled for methods with a global head (or weak negatives) and unlabeled for the
  others, as in the paper's Table 1 (e.g. OXnet 2725 / 11238 / 0, Mean Teacher 2725 / 0 / 11238,
  RetinaNet 2725 / 0 / 0); ``"rows"``: the methods the table lists (default :data:`TABLE1_ROWS`;
  ``--rows`` may also pick :data:`TABLE1_EXTRA_ROWS`, which are then listed too).
* ``table2``: ``{"settings": [[full, weak, unlabeled], ...] or null}`` with ``null`` for the paper's
  nine settings scaled to the training set, real weak images included
  (:func:`oxnet.data.omni.table2_settings`); the first three rows train RetinaNet, the others OXnet
  (``"methods"`` overrides that, one per setting).
* ``iters``, ``seeds``: iterations per run and seeds per row (``--iters`` / ``--seeds`` override).
* ``precision`` (default ``"auto"``; ``--precision`` overrides): the training precision, ``"auto"``
  (bfloat16 mixed precision where the CPU or GPU computes bfloat16 natively, else float32),
  ``"float32"``, ``"bfloat16"`` or ``"float16"`` (CUDA). It is resolved on the machine before the run
  is fingerprinted (``SOLVER.AMP.ENABLED`` and ``OXNET.AMP.DTYPE``), so float32 and bfloat16 runs
  never share a folder or a results entry; each result records it. Evaluation stays float32.
* ``burn_in_fraction`` (default 0), ``rampup_fraction`` (default 0: the paper's plain sum of the
  losses; runs recorded before 2026-12-06 used 0.25): ``OXNET.RAMPUP.BURN_IN_ITERS`` and
  ``OXNET.RAMPUP.ITERS`` as fractions of ``iters``, for every row alike.
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

__all__ = ["DEFAULTS", "PRESETS", "TABLE1_ROWS", "TABLE1_EXTRA_ROWS", "CPU_MODEL", "load_spec"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The rows of the paper's Table 1, in its order.
TABLE1_ROWS = (
    "retinanet",
    "pi_model",
    "mean_teacher",
    "mmt_psm",
    "focalmix",
    "pi_model_mt",
    "mean_teacher_mt",
    "mmt_psm_mt",
    "focalmix_mt",
    "sfl",
    "daa",
    "daa_gpa",
    "oxnet",
)
#: Rows beyond the paper's: RetinaNet, DAA and OXnet also trained on the weak images' absent classes
#: (weak negatives), the filtered-SFL rows and the authors' recipe (its RetinaNet stage and OXnet,
#: configs/authors/; configs/table1/<row>.yaml). ``--rows`` or a spec's ``table1.rows`` add them.
TABLE1_EXTRA_ROWS = (
    "retinanet_neg",
    "daa_neg",
    "oxnet_neg",
    "sfl_plus",
    "oxnet_plus",
    "retinanet_authors",
    "oxnet_authors",
)

#: A RetinaNet whose runs fit in minutes on a 2-core CPU: ResNet-18 (GroupNorm, from scratch: no
#: pre-trained weights can be downloaded), a 64-channel FPN, two head convolutions, 192 px inputs and
#: anchors scaled to them (detectron2's 32..512 x 192/512), 2 images per stream and iteration, Adam at
#: 5e-4 (the paper's 1e-5 is for an ImageNet-initialized ResNet-101 over 60k iterations). Same for
#: every row.
CPU_MODEL = [
    "MODEL.DEVICE",
    "cpu",
    "MODEL.RESNETS.DEPTH",
    18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    64,
    "MODEL.FPN.OUT_CHANNELS",
    64,
    "MODEL.RETINANET.NUM_CONVS",
    2,
    "MODEL.ANCHOR_GENERATOR.SIZES",
    [[12, 15.12, 19.05], [24, 30.24, 38.10], [48, 60.48, 76.20], [96, 120.95, 152.40], [192, 241.90, 304.79]],
    "OXNET.INPUT_SIZE",
    192,
    "OXNET.BATCH.FULL",
    2,
    "OXNET.BATCH.WEAK",
    2,
    "OXNET.BATCH.UNLABELED",
    2,
    "SOLVER.BASE_LR",
    5e-4,
    "DATALOADER.NUM_WORKERS",
    1,
]

DEFAULTS = {
    "table1": {"full": 0.25},
    "table2": {"settings": None, "methods": None},
    "iters": 250,
    "seeds": 3,
    "opts": CPU_MODEL,
    "warm_start": {"iters": 0, "opts": ["SOLVER.BASE_LR", 1e-4]},
    "precision": "auto",
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
        "data": {
            "kind": "coco",
            "json": "../shared/data/tbx11k-tb500/annotations.json",
            "images": "../shared/data/tbx11k-tb500/images",
            "n_train": 350,
            "n_test": 150,
            "seed": 0,
        },
        "iters": 250,
        "seeds": 3,
    },
    # TBX11K's category-agnostic protocol on real omni-supervised data: tbx500's split (352 train, a
    # quarter with boxes, / 148 test) with one class, tuberculosis, plus 288 X-rays with only a TB / normal
    # label from four other hospitals (tb-extra-weak). 50 normal and 30 TB X-rays of those are held out
    # (stratified by hospital): the normals join the test set as box-free images, all 80 make the
    # image-level test set (TB vs normal); the other 208 (101 normal) are weak training images. Every
    # TBX image has TB: the one without a box (tb1199, a test image) is uncertain, not normal.
    "tbx-omni": {
        "data": {
            "kind": "omni",
            "boxes": {
                "json": "../shared/data/tbx11k-tb500/annotations.json",
                "images": "../shared/data/tbx11k-tb500/images",
                "n_train": 350,
                "n_test": 150,
                "seed": 0,
                "without_boxes": "uncertain",
            },
            "merge_classes": "tuberculosis",
            "weak": [
                {
                    "csv": "../shared/data/tb-extra-weak/labels.csv",
                    "images": "../shared/data/tb-extra-weak/images",
                    "path_column": "file_name",
                    "label_columns": ["tuberculosis"],
                    "test_normal": 50,
                    "test_positive": 30,
                    "stratify": "source",
                }
            ],
            "seed": 0,
        },
        "table1": {"full": 0.25, "rows": list(TABLE1_ROWS + TABLE1_EXTRA_ROWS)},
        "iters": 250,
        "seeds": 3,
    },
    # Wiring only: a few 64 px toy images and a tiny network.
    "toy": {
        "data": {"kind": "toy", "n_train": 12, "n_test": 4, "size": 64, "num_classes": 3, "seed": 0},
        "iters": 2,
        "precision": "float32",
        "seeds": 1,
        "opts": CPU_MODEL
        + [
            "OXNET.INPUT_SIZE",
            64,
            "MODEL.RETINANET.NUM_CONVS",
            1,
            "OXNET.BATCH.FULL",
            2,
            "OXNET.BATCH.WEAK",
            2,
            "OXNET.BATCH.UNLABELED",
            2,
            "DATALOADER.NUM_WORKERS",
            0,
        ],
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
        raise ValueError(
            f"--data {data!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a JSON file"
        )
    out = json.loads(json.dumps(DEFAULTS))
    for k, v in spec.items():
        out[k] = dict(out[k], **v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    d = out.get("data")
    if not isinstance(d, dict) or d.get("kind") not in ("synthetic", "coco", "toy", "omni"):
        raise ValueError(
            f"{data}: 'data' must be an object with kind 'synthetic', 'coco', 'toy' or 'omni', got {d!r}"
        )
    if d["kind"] == "coco":
        _resolve(d, ("json", "images"), base, f"{data}: data kind 'coco'")
    elif d["kind"] == "omni":
        _check_omni(d, base, data)
    rows = out["table1"].get("rows")
    if rows is not None:
        unknown = [r for r in rows if r not in TABLE1_ROWS + TABLE1_EXTRA_ROWS]
        if unknown:
            raise ValueError(
                f"{data}: table1.rows {unknown} are not table rows "
                f"({', '.join(TABLE1_ROWS + TABLE1_EXTRA_ROWS)})"
            )
    return out


def _resolve(d, keys, base, what):
    for key in keys:
        if key not in d:
            raise ValueError(f"{what} needs {key!r}")
        d[key] = os.path.normpath(os.path.join(base, d[key]))


def _check_omni(d, base, data):
    boxes, weak = d.get("boxes"), d.get("weak")
    if not isinstance(boxes, dict):
        raise ValueError(f"{data}: data kind 'omni' needs 'boxes', an object with the keys of kind 'coco'")
    _resolve(boxes, ("json", "images"), base, f"{data}: data.boxes")
    for key in ("n_train", "n_test"):
        if key not in boxes:
            raise ValueError(f"{data}: data.boxes needs {key!r}")
    if not isinstance(weak, list) or not all(isinstance(w, dict) for w in weak):
        raise ValueError(
            f"{data}: data kind 'omni' needs 'weak', a list of label-table objects "
            f'{{"csv", "images", ...}}, got {weak!r}'
        )
    if d.get("merge_classes") is not None and d.get("class_map") is not None:
        raise ValueError(f"{data}: give 'merge_classes' or 'class_map', not both")
    merge = d.get("merge_classes")
    if merge is not None and not (isinstance(merge, str) and merge):
        raise ValueError(f"{data}: 'merge_classes' must be a class name, got {d['merge_classes']!r}")
    if d.get("class_map") is not None and not isinstance(d["class_map"], dict):
        raise ValueError(
            f"{data}: 'class_map' must be an object {{box class: class}}, got {d['class_map']!r}"
        )
    known = {
        "csv",
        "images",
        "path_column",
        "label_columns",
        "patient_column",
        "test_normal",
        "test_positive",
        "stratify",
        "seed",
    }
    for i, w in enumerate(weak):
        unknown = sorted(set(w) - known)
        if unknown:
            raise ValueError(f"{data}: data.weak[{i}] has unknown keys {unknown} (known: {sorted(known)})")
        _resolve(w, ("csv", "images"), base, f"{data}: data.weak[{i}]")
        for key in ("test_normal", "test_positive"):
            if not (isinstance(w.get(key, 0), int) and w.get(key, 0) >= 0):
                raise ValueError(f"{data}: data.weak[{i}].{key} must be a count >= 0, got {w[key]!r}")
