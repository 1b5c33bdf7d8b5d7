"""What a trained model needs beside its weights, and loading it without surprises.

Every training run writes ``OUTPUT_DIR/config.yaml``: its full config with the class names and the
training set's category ids filled in (``OXNET.CLASS_NAMES``, ``OXNET.CATEGORY_IDS``) and the files of
its datasets (``OXNET.DATASETS``). ``demo/predict.py`` and ``train_net.py --eval-only`` read the config
beside the weights by default, and load weights strictly: a parameter whose shape differs from the
model the config builds, or that is missing, is an error (detectron2 would skip it with a warning and
run a partly random model).
"""

import logging
import os

from detectron2.checkpoint import DetectionCheckpointer

from oxnet.utils.atomic import atomic_open
from oxnet.utils.safe_load import SafeLoadingMixin

__all__ = [
    "CONFIG_NAME",
    "WeightsMismatchError",
    "StrictCheckpointer",
    "model_config_path",
    "with_dataset_info",
    "save_run_config",
    "load_model_config",
    "split_weights",
]

logger = logging.getLogger(__name__)

#: The file name of a run's config beside its weights.
CONFIG_NAME = "config.yaml"


class WeightsMismatchError(ValueError):
    """Weights that do not fit the model built from the config."""


class StrictCheckpointer(SafeLoadingMixin, DetectionCheckpointer):
    """``DetectionCheckpointer`` that refuses weights not matching the model: parameters or buffers with
    another shape, missing from the file, or in the file but not in the model. Files are loaded
    without running code from them; detectron2 ``.pkl`` files only with ``allow_pickle=True``
    (:mod:`oxnet.utils.safe_load`)."""

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        problems = []
        if incompatible.incorrect_shapes:
            shown = ", ".join(
                f"{k} (file {tuple(a)}, model {tuple(b)})" for k, a, b in incompatible.incorrect_shapes[:5]
            )
            problems.append(f"{len(incompatible.incorrect_shapes)} with another shape: {shown}")
        if incompatible.missing_keys:
            problems.append(
                f"{len(incompatible.missing_keys)} missing from the file: "
                f"{', '.join(incompatible.missing_keys[:5])}"
            )
        if incompatible.unexpected_keys:
            problems.append(
                f"{len(incompatible.unexpected_keys)} not in the model: "
                f"{', '.join(incompatible.unexpected_keys[:5])}"
            )
        if problems:
            raise WeightsMismatchError(
                f"the weights {self._source} do not fit the model built from the config: "
                + "; ".join(problems)
                + ". Use the config the model was trained with (its config.yaml, "
                "written beside the weights) or the matching --config-file"
            )
        return incompatible

    def load(self, path, checkpointables=None):
        self._source = path
        return super().load(path, checkpointables)


def model_config_path(weights):
    """``config.yaml`` in the folder of ``weights``."""
    return os.path.join(os.path.dirname(os.path.abspath(os.fspath(weights))), CONFIG_NAME)


def with_dataset_info(cfg):
    """A copy of ``cfg`` with ``OXNET.CLASS_NAMES`` and ``OXNET.CATEGORY_IDS`` taken from the first
    training dataset's metadata (when empty), and every dataset of ``DATASETS.TRAIN`` / ``TEST`` that
    was registered from an OXnet-COCO file added to ``OXNET.DATASETS``, so that the saved config
    rebuilds the model, names its classes and finds its data on its own.

    Raises:
        ValueError: the training datasets disagree on their classes, or the class count is not
            ``MODEL.RETINANET.NUM_CLASSES``.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    cfg = cfg.clone()
    cfg.defrost()
    classes = None
    for name in cfg.DATASETS.TRAIN:
        if name not in DatasetCatalog.list():
            continue
        meta = MetadataCatalog.get(name)
        id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
        if not id_map or not meta.get("thing_classes", None):
            continue
        inverse = {v: k for k, v in id_map.items()}
        found = (tuple(meta.thing_classes), tuple(int(inverse[k]) for k in range(len(inverse))))
        if classes is not None and found != classes:
            raise ValueError(
                f"training datasets {list(cfg.DATASETS.TRAIN)} have different classes: {classes} and {found}"
            )
        classes = found
    if classes is not None:
        if len(classes[0]) != cfg.MODEL.RETINANET.NUM_CLASSES:
            raise ValueError(
                f"the training set has {len(classes[0])} classes {list(classes[0])} but "
                f"MODEL.RETINANET.NUM_CLASSES is {cfg.MODEL.RETINANET.NUM_CLASSES}"
            )
        if not cfg.OXNET.CLASS_NAMES:
            cfg.OXNET.CLASS_NAMES = classes[0]
        if not cfg.OXNET.CATEGORY_IDS:
            cfg.OXNET.CATEGORY_IDS = classes[1]
    known = {tuple(e)[0] for e in cfg.OXNET.DATASETS}
    extra = []
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        if name in known or name not in DatasetCatalog.list():
            continue
        meta = MetadataCatalog.get(name)
        if meta.get("json_file", None) and meta.get("image_root", None):
            extra.append((name, meta.json_file, meta.image_root))
            known.add(name)
    if extra:
        cfg.OXNET.DATASETS = tuple(tuple(e) for e in cfg.OXNET.DATASETS) + tuple(extra)
    return cfg


def save_run_config(cfg, output_dir):
    """Write ``output_dir/config.yaml`` (:func:`with_dataset_info` of ``cfg``) atomically; return its path."""
    path = os.path.join(output_dir, CONFIG_NAME)
    os.makedirs(output_dir, exist_ok=True)
    text = with_dataset_info(cfg).dump()
    with atomic_open(path, "w") as f:
        f.write(text)
    return path


def split_weights(opts):
    """``(weights, other opts)`` from command-line overrides ``KEY VALUE ...``: the value of
    ``MODEL.WEIGHTS`` (None when absent) and the overrides without it."""
    opts = list(opts)
    keys = opts[::2]
    if "MODEL.WEIGHTS" not in keys:
        return None, opts
    i = keys.index("MODEL.WEIGHTS") * 2
    return opts[i + 1], opts[:i] + opts[i + 2 :]


def load_model_config(weights=None, config_file=None, opts=()):
    """The config of a trained model: ``config_file`` if given, else the ``config.yaml`` beside
    ``weights``; then ``opts`` (KEY VALUE ...) and ``MODEL.WEIGHTS = weights`` (when given).

    Raises:
        FileNotFoundError: neither a config file nor a config.yaml beside the weights.
    """
    from detectron2.config import get_cfg

    from oxnet.config import add_oxnet_config

    if not config_file:
        if not weights:
            raise FileNotFoundError("give the model's weights (MODEL.WEIGHTS / --weights) or --config-file")
        config_file = model_config_path(weights)
        if not os.path.exists(weights):
            raise FileNotFoundError(
                f"the weights {weights} do not exist (check the path; training writes model_final.pth)"
            )
        if not os.path.exists(config_file):
            raise FileNotFoundError(
                f"no {CONFIG_NAME} beside the weights {weights} (training runs write it to OUTPUT_DIR); "
                "pass the config the model was trained with as --config-file"
            )
    elif not os.path.exists(config_file):
        raise FileNotFoundError(f"config file {config_file} does not exist")
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.set_new_allowed(False)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if weights:
        cfg.MODEL.WEIGHTS = os.fspath(weights)
    return cfg
