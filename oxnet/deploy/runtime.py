"""Run a trained OXnet detector on image arrays, whatever form it was saved in.

A *model folder* is either what training writes (``model_final.pth`` + ``config.yaml``: the *eager*
detectron2 model) or what ``tools/export_model.py`` writes (``model.onnx``, ``model.pt2`` or
``model.ts`` + ``model.json`` + ``config.yaml``). :func:`load_model` opens either as a
:class:`DeployedModel` whose :meth:`~DeployedModel.predict` returns the same result for every backend::

    {"width": W, "height": H,
     "detections": [{"category_id", "category_name", "bbox": [x, y, w, h], "score"}, ...],
     "image_scores": {class_name: probability} or None}

Boxes are in the original image's pixels, sorted by score (highest first), and include every box
above the model's test score threshold. An optional ``thresholds.json`` ({class_name: score}) in the
folder gives per-class operating points; :func:`apply_thresholds` applies them.

The exported graphs compute the network only (backbone, FPN, heads, global head): per-anchor class
probabilities, box deltas and image-level probabilities. Anchor decoding, the per-level top-k, the
per-class NMS and the rescaling to the original pixel grid are done here in NumPy, with the same
arithmetic as detectron2's ``RetinaNet.inference`` and ``detector_postprocess``, for the ONNX
Runtime, ``torch.export`` (pt2) and TorchScript backends.

``python -m oxnet.deploy.runtime MODEL_DIR --input FILES_OR_FOLDERS --output OUT`` writes
``predictions.json`` (COCO results, as ``demo/predict.py``) and ``image_scores.json``.
"""

import hashlib
import json
import math
import os

import numpy as np

__all__ = [
    "MODEL_INFO",
    "THRESHOLDS",
    "BACKENDS",
    "DeployedModel",
    "load_model",
    "MAX_FINDINGS_PER_CLASS",
    "MAX_FINDINGS_PER_IMAGE",
    "apply_thresholds",
    "to_records",
    "read_thresholds",
    "read_thresholds_info",
    "config_sha1",
    "model_info_from_config",
    "prepare_images",
    "postprocess",
    "grid_anchors",
    "nms_per_class",
]

#: The description of an exported model, beside its graph.
MODEL_INFO = "model.json"
#: Optional per-class operating thresholds, in any model folder.
THRESHOLDS = "thresholds.json"
#: How they were chosen (``python -m oxnet.deploy.thresholds``): validation set, per-class details.
THRESHOLDS_INFO = "thresholds_info.json"
#: Backend name -> file holding the model.
BACKENDS = {"onnx": "model.onnx", "torchscript": "model.ts", "pt2": "model.pt2", "eager": "model_final.pth"}


# ---------------------------------------------------------------------------------------------- info
def config_sha1(cfg):
    """SHA-1 of the model's config as YAML, with ``MODEL.WEIGHTS`` and ``OUTPUT_DIR`` blanked (they
    name files, not the model): an exported model and its eager source share it."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = ""
    cfg.OUTPUT_DIR = ""
    return hashlib.sha1(cfg.dump().encode("utf-8")).hexdigest()


def training_data_counts(cfg):
    """Images (per supervision level) and boxes of each training dataset of ``cfg`` whose OXnet-COCO
    file is listed in ``OXNET.DATASETS`` and still exists; {} when none is known."""
    files = {tuple(e)[0]: tuple(e)[1] for e in cfg.OXNET.DATASETS}
    out = {}
    for name in cfg.DATASETS.TRAIN:
        path = files.get(name)
        if not path or not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                coco = json.load(f)
            levels = {}
            for img in coco.get("images", []):
                level = img.get("supervision", "full")
                levels[level] = levels.get(level, 0) + 1
            out[name] = {
                "json_file": path,
                "images": len(coco.get("images", [])),
                "boxes": len(coco.get("annotations", [])),
                "supervision": levels,
            }
        except (OSError, ValueError, AttributeError):
            continue  # counts are informative only
    return out


def model_info_from_config(cfg, fmt="eager"):
    """The ``model.json`` dict of the model ``cfg`` builds (``fmt``: its format). Exported models add
    the graph's input/output description and the anchors (:mod:`oxnet.deploy.export`)."""
    import oxnet
    from oxnet.config import class_names
    from oxnet.evaluation.records import category_ids_or_default
    from oxnet.methods import method_components

    names = list(class_names(cfg))
    ret = cfg.MODEL.RETINANET
    return {
        "format": fmt,
        "input_size": int(cfg.OXNET.INPUT_SIZE),
        "pixel_mean": [float(v) for v in cfg.MODEL.PIXEL_MEAN],
        "pixel_std": [float(v) for v in cfg.MODEL.PIXEL_STD],
        "input_channels": len(cfg.MODEL.PIXEL_MEAN),
        "class_names": names,
        "category_ids": category_ids_or_default(cfg.OXNET.CATEGORY_IDS, len(names)),
        "has_global_head": bool(method_components(cfg.OXNET.METHOD)["global_head"]),
        "method": cfg.OXNET.METHOD,
        "config_sha1": config_sha1(cfg),
        "oxnet_version": oxnet.__version__,
        "score_thresh": float(ret.SCORE_THRESH_TEST),
        "nms_thresh": float(ret.NMS_THRESH_TEST),
        "topk_candidates": int(ret.TOPK_CANDIDATES_TEST),
        "max_detections": int(cfg.TEST.DETECTIONS_PER_IMAGE),
        "bbox_reg_weights": [float(v) for v in ret.BBOX_REG_WEIGHTS],
        "training_data": training_data_counts(cfg),
    }


def read_thresholds_info(folder):
    """The model folder's ``thresholds_info.json`` (how its operating points were chosen), or None
    without a folder or the file."""
    path = os.path.join(folder, THRESHOLDS_INFO) if folder else None
    if not path or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_thresholds(path, class_names):
    """Per-class operating thresholds from ``path`` ({class_name: score in [0, 1]}); None when the
    file does not exist.

    Raises:
        ValueError: not a JSON object, a name that is not one of ``class_names``, or a score that is
            not a number in [0, 1] (the message names the file and the entry).
    """
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object {{class_name: score}}, got {type(data).__name__}")
    out = {}
    for name, value in data.items():
        if name not in class_names:
            raise ValueError(f"{path}: {name!r} is not a class of the model ({', '.join(class_names)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{path}: threshold of {name!r} must be a number in [0, 1], got {value!r}")
        out[name] = float(value)
    return out


#: Findings kept per class and per image after the operating thresholds (highest scores first): a
#: report a radiologist reads, not a list of every box above a threshold.
MAX_FINDINGS_PER_CLASS, MAX_FINDINGS_PER_IMAGE = 3, 10


def apply_thresholds(result, thresholds, max_per_class=None, max_per_image=None):
    """A copy of ``result`` keeping the detections that score at least their class's threshold
    (classes absent from ``thresholds``, or ``thresholds`` None, keep all their detections), then at
    most ``max_per_class`` per class and ``max_per_image`` in all, highest scores first (None: no cap).
    The result's ``capped`` counts the detections the caps removed."""
    thresholds = thresholds or {}
    kept = [
        dict(d) for d in result["detections"] if d["score"] >= thresholds.get(d["category_name"], -math.inf)
    ]
    kept.sort(key=lambda d: -d["score"])
    out = dict(result)
    per_class, capped = {}, []
    for d in kept:
        n = per_class.get(d["category_name"], 0)
        if max_per_class is not None and n >= max_per_class:
            continue
        if max_per_image is not None and len(capped) >= max_per_image:
            break
        per_class[d["category_name"]] = n + 1
        capped.append(d)
    out["detections"] = capped
    out["capped"] = len(kept) - len(capped)
    if result.get("image_scores") is not None:
        out["image_scores"] = dict(result["image_scores"])
    return out


def to_records(result, file_name, image_id):
    """COCO results of one image (the format of ``predictions.json``, as
    :func:`oxnet.engine.predictor.to_records`): ``image_id``, ``file_name``, ``category_id``,
    ``category_name``, ``bbox`` [x, y, w, h], ``score``."""
    return [
        {
            "image_id": image_id,
            "file_name": file_name,
            "category_id": d["category_id"],
            "category_name": d["category_name"],
            "bbox": list(d["bbox"]),
            "score": d["score"],
        }
        for d in result["detections"]
    ]


# ------------------------------------------------------------------------------------ preprocessing
def as_uint8_image(image):
    """``image`` as uint8 HxW (grey) or HxWx3, as the model reads it: a HxW array of any dtype
    (:func:`oxnet.data.io.read_raw`) is min-max scaled per image; uint8 HxW and HxWx3 are kept."""
    from oxnet.data.io import scale_to_uint8

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        if image.size == 0:
            raise ValueError(f"empty image array {image.shape}")
        return image if image.dtype == np.uint8 else scale_to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return image
    raise ValueError(
        f"expected a grey HxW array (any dtype) or a uint8 HxWx3 array, got {image.dtype} {image.shape}"
    )


def _resize(image, size):
    """Bilinear resize of a uint8 image to size x size with PIL (what detectron2's ``T.Resize`` does)."""
    from PIL import Image

    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def prepare_images(images, info):
    """The exported graph's input for ``images`` (see :func:`as_uint8_image`): each resized to
    ``input_size`` squared, normalized with ``pixel_mean``/``pixel_std`` and zero-padded to
    ``padded_size``; returns (float32 (B, C, P, P), [(height, width) of each original])."""
    size = int(info["input_size"])
    padded = int(info.get("padded_size", size))
    channels = int(info["input_channels"])
    mean = np.asarray(info["pixel_mean"], np.float32)[:, None, None]
    std = np.asarray(info["pixel_std"], np.float32)[:, None, None]
    batch = np.zeros((len(images), channels, padded, padded), np.float32)
    sizes = []
    for i, image in enumerate(images):
        image = as_uint8_image(image)
        sizes.append(image.shape[:2])
        x = _resize(image, size).astype(np.float32)
        x = (
            np.broadcast_to(x[None], (channels, size, size))
            if x.ndim == 2
            else x.transpose(2, 0, 1)[:channels]
        )
        batch[i, :, :size, :size] = (x - mean) / std
    return batch, sizes


# ----------------------------------------------------------------------------------- postprocessing
def grid_anchors(anchor_info):
    """(R, 4) float32 anchors of all levels, in detectron2's ``DefaultAnchorGenerator`` order
    (level, then row, column, cell anchor) from ``model.json``'s ``anchors`` entry."""
    out = []
    offset = float(anchor_info["offset"])
    for stride, (gh, gw), cell in zip(
        anchor_info["strides"], anchor_info["grid_sizes"], anchor_info["cell_anchors"]
    ):
        xs = np.arange(offset * stride, gw * stride, step=stride, dtype=np.float32)[:gw]
        ys = np.arange(offset * stride, gh * stride, step=stride, dtype=np.float32)[:gh]
        sy, sx = np.meshgrid(ys, xs, indexing="ij")
        shifts = np.stack([sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel()], axis=1)
        cell = np.asarray(cell, np.float32).reshape(-1, 4)
        out.append((shifts[:, None, :] + cell[None, :, :]).reshape(-1, 4))
    return out


_SCALE_CLAMP = math.log(1000.0 / 16)  # detectron2's _DEFAULT_SCALE_CLAMP


def _apply_deltas(deltas, anchors, weights, scale_clamp=_SCALE_CLAMP):
    """detectron2's ``Box2BoxTransform.apply_deltas`` in float32."""
    deltas = deltas.astype(np.float32, copy=False)
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + np.float32(0.5) * widths
    ctr_y = anchors[:, 1] + np.float32(0.5) * heights
    wx, wy, ww, wh = (np.float32(w) for w in weights)
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw = np.minimum(deltas[:, 2] / ww, np.float32(scale_clamp))
    dh = np.minimum(deltas[:, 3] / wh, np.float32(scale_clamp))
    pcx, pcy = dx * widths + ctr_x, dy * heights + ctr_y
    pw, ph = np.exp(dw) * widths, np.exp(dh) * heights
    half = np.float32(0.5)
    return np.stack([pcx - half * pw, pcy - half * ph, pcx + half * pw, pcy + half * ph], axis=1)


def _nms(boxes, scores, thresh):
    """torchvision's ``nms`` (greedy, IoU > thresh suppresses, float32 arithmetic); indices kept,
    by decreasing score."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for n, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[n + 1 :]
        rest = rest[~suppressed[rest]]
        if not len(rest):
            break
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou > np.float32(thresh)]] = True
    return np.asarray(keep, np.int64)


def nms_per_class(boxes, scores, classes, thresh):
    """torchvision's ``batched_nms``: NMS within each class; indices kept, by decreasing score."""
    keep = [
        idx[_nms(boxes[idx], scores[idx], thresh)]
        for c in np.unique(classes)
        for idx in [np.nonzero(classes == c)[0]]
    ]
    if not keep:
        return np.zeros(0, np.int64)
    keep = np.concatenate(keep)
    return keep[np.argsort(-scores[keep], kind="stable")]


def postprocess(scores, deltas, anchors, info, height, width):
    """Detections of one image from the graph's outputs, as detectron2's ``RetinaNet.inference``
    followed by ``detector_postprocess``.

    Args:
        scores: (R, K) class probabilities of all anchors (levels concatenated).
        deltas: (R, 4) box deltas.
        anchors: per level, (R_l, 4) anchors (:func:`grid_anchors`).
        info: ``model.json``.
        height, width: the original image's size.

    Returns:
        (boxes (N, 4) float32 x1y1x2y2 in original pixels, scores (N,), classes (N,)), by decreasing score.
    """
    thresh, topk = float(info["score_thresh"]), int(info["topk_candidates"])
    all_boxes, all_scores, all_classes = [], [], []
    start = 0
    for level in anchors:
        n = len(level)
        s = scores[start : start + n]
        flat = s.reshape(-1)
        idx = np.nonzero(flat > np.float32(thresh))[0]
        order = np.argsort(-flat[idx], kind="stable")[:topk]
        idx = idx[order]
        anchor_idx, class_idx = np.divmod(idx, s.shape[1])
        all_boxes.append(
            _apply_deltas(deltas[start : start + n][anchor_idx], level[anchor_idx], info["bbox_reg_weights"])
        )
        all_scores.append(flat[idx])
        all_classes.append(class_idx)
        start += n
    boxes = np.concatenate(all_boxes).astype(np.float32)
    det_scores = np.concatenate(all_scores).astype(np.float32)
    classes = np.concatenate(all_classes)
    keep = nms_per_class(boxes, det_scores, classes, float(info["nms_thresh"]))[: int(info["max_detections"])]
    boxes, det_scores, classes = boxes[keep], det_scores[keep], classes[keep]
    # detector_postprocess: scale to the original grid, clip, drop empty boxes
    size = float(info["input_size"])
    boxes[:, 0::2] *= np.float32(width / size)
    boxes[:, 1::2] *= np.float32(height / size)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, np.float32(width))
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, np.float32(height))
    ok = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
    return boxes[ok], det_scores[ok], classes[ok]


def _result(boxes, scores, classes, height, width, info, image_scores=None):
    names, ids = info["class_names"], info["category_ids"]
    xywh = np.asarray(boxes, np.float32).astype(np.float64).reshape(-1, 4)
    xywh[:, 2:] -= xywh[:, :2]
    scores = np.asarray(scores, np.float32).astype(np.float64)
    dets = [
        {"category_id": int(ids[c]), "category_name": names[c], "bbox": b, "score": s}
        for c, b, s in zip(np.asarray(classes).tolist(), xywh.tolist(), scores.tolist())
    ]
    dets.sort(key=lambda d: -d["score"])
    probs = None
    if image_scores is not None:
        probs = dict(zip(names, np.asarray(image_scores, np.float32).astype(np.float64).tolist()))
    return {"width": int(width), "height": int(height), "detections": dets, "image_scores": probs}


# ------------------------------------------------------------------------------------------ backends
class _GraphRunner:
    """Shared pre- and post-processing around an exported graph (``self._forward``)."""

    def __init__(self, info):
        self.info = info
        self.anchors = grid_anchors(info["anchors"])
        total = sum(len(a) for a in self.anchors)
        if total != int(info["num_anchors"]):
            raise ValueError(
                f"model.json: anchors give {total} boxes but the graph has {info['num_anchors']}"
            )

    def __call__(self, images):
        batch, sizes = prepare_images(images, self.info)
        outputs = self._forward(batch)
        scores, deltas = outputs[0], outputs[1]
        image_scores = outputs[2] if len(outputs) > 2 else None
        results = []
        for i, (h, w) in enumerate(sizes):
            boxes, s, c = postprocess(scores[i], deltas[i], self.anchors, self.info, h, w)
            results.append(
                _result(boxes, s, c, h, w, self.info, image_scores[i] if image_scores is not None else None)
            )
        return results


class _OnnxRunner(_GraphRunner):
    def __init__(self, path, info, threads=None):
        import onnxruntime as ort

        super().__init__(info)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        threads = threads or _default_threads()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def _forward(self, batch):
        return self.session.run(None, {self.input_name: batch})


class _TorchScriptRunner(_GraphRunner):
    def __init__(self, path, info, threads=None):
        import warnings

        import torch

        super().__init__(info)
        if threads:
            torch.set_num_threads(threads)
        with warnings.catch_warnings():
            # PyTorch deprecates TorchScript; a model.ts folder was exported as TorchScript on purpose
            # (C++ users, oxnet.deploy.export), so its users are not told to switch on every load.
            warnings.filterwarnings(
                "ignore",
                message=r"`torch\.jit\.load` is deprecated",
                category=FutureWarning,
                module=r"torch\.jit\._serialization",
            )
            self.module = torch.jit.load(path, map_location="cpu").eval()

    def _forward(self, batch):
        import torch

        with torch.inference_mode():
            return [t.numpy() for t in self.module(torch.from_numpy(batch))]


class _ExportedProgramRunner(_GraphRunner):
    """A ``torch.export`` program (``model.pt2``)."""

    def __init__(self, path, info, threads=None):
        import torch

        super().__init__(info)
        if threads:
            torch.set_num_threads(threads)
        self.module = torch.export.load(path).module()

    def _forward(self, batch):
        import torch

        with torch.inference_mode():
            return [t.numpy() for t in self.module(torch.from_numpy(batch))]


class _EagerRunner:
    """The detectron2 model through :class:`oxnet.engine.predictor.OXnetPredictor`."""

    def __init__(self, weights, info, threads=None, cfg=None):
        import torch

        from oxnet.config import resolve_device
        from oxnet.engine.predictor import OXnetPredictor

        if threads:
            torch.set_num_threads(threads)
        self.info = info
        if cfg is None:
            self.predictor = OXnetPredictor.from_weights(weights)
        else:
            cfg = cfg.clone()
            cfg.defrost()
            cfg.MODEL.WEIGHTS = os.fspath(weights)
            resolve_device(cfg)
            self.predictor = OXnetPredictor(cfg)

    def __call__(self, images):
        arrays = []
        for image in images:
            image = as_uint8_image(image)
            arrays.append(np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image)
        outputs = self.predictor.run([self.predictor.prepare(a) for a in arrays])
        results = []
        for a, out in zip(arrays, outputs):
            inst = out["instances"]
            g = out.get("global_scores")
            results.append(
                _result(
                    inst.pred_boxes.tensor.numpy(),
                    inst.scores.numpy(),
                    inst.pred_classes.numpy(),
                    a.shape[0],
                    a.shape[1],
                    self.info,
                    g.numpy() if g is not None else None,
                )
            )
        return results


def _default_threads():
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


class DeployedModel:
    """A detector ready to run (:func:`load_model`): ``info`` (``model.json``), ``class_names``,
    ``thresholds`` (``thresholds.json`` or None), ``backend``, ``folder``."""

    def __init__(self, folder, info, backend, runner, thresholds=None):
        self.folder, self.info, self.backend = folder, info, backend
        self.class_names = list(info["class_names"])
        self.category_ids = list(info["category_ids"])
        self.thresholds = thresholds
        self._runner = runner

    def predict(self, image):
        """The result of one image (a grey HxW array of any dtype, or uint8 HxWx3); see the module doc."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images):
        """Results of several images, run as one batch."""
        if not len(images):
            return []
        return self._runner(list(images))

    def __repr__(self):
        return f"DeployedModel({self.folder!r}, backend={self.backend!r})"


def load_model(folder, backend=None, threads=None, precision=None):
    """Open a model folder.

    Args:
        folder: an exported model folder (``model.json`` + ``model.onnx`` / ``model.pt2`` /
            ``model.ts``) or a trained one (``model_final.pth`` + ``config.yaml``).
        backend: "onnx", "torchscript", "pt2" or "eager"; None picks onnx if ``model.onnx`` is there,
            else torchscript if ``model.ts``, else pt2 if ``model.pt2``, else eager.
        threads: intra-op threads (default: ``OMP_NUM_THREADS`` when set, else the library's default).
        precision: the eager model's ``OXNET.AMP.INFERENCE`` ("float32", "bfloat16", "float16" on
            CUDA, "auto"); None keeps its config's. Exported models run in float32.

    Raises:
        FileNotFoundError: the folder lacks the backend's files (the message lists what it has).
        ValueError: unknown backend, inconsistent ``model.json`` or a bad ``thresholds.json``.
    """
    folder = os.fspath(folder)
    if os.path.isfile(folder):
        raise FileNotFoundError(
            f"{folder} is a file: give the model's folder ({os.path.dirname(folder) or '.'}), which "
            "holds the weights, config.yaml and thresholds.json"
        )
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"model folder {folder} does not exist")
    if backend is None:
        backend = next(
            (
                b
                for b in ("onnx", "torchscript", "pt2", "eager")
                if os.path.exists(os.path.join(folder, BACKENDS[b]))
            ),
            None,
        )
        if backend is None:
            raise FileNotFoundError(
                f"{folder} holds no model (model.onnx, model.ts, model.pt2 or model_final.pth); "
                f"it has: {', '.join(sorted(os.listdir(folder))) or 'nothing'}"
            )
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    path = os.path.join(folder, BACKENDS[backend])
    if not os.path.exists(path):
        raise FileNotFoundError(f"{folder} has no {BACKENDS[backend]} for the {backend} backend")
    if backend == "eager":
        from oxnet.engine.model_files import load_model_config

        if not os.path.exists(os.path.join(folder, "config.yaml")):
            raise FileNotFoundError(
                f"{folder} has model_final.pth but no config.yaml: training writes it to OUTPUT_DIR; "
                "copy the config the model was trained with there as config.yaml"
            )
        cfg = load_model_config(path)
        if precision:
            cfg.OXNET.AMP.INFERENCE = precision
        info = model_info_from_config(cfg, "eager")
        runner = _EagerRunner(path, info, threads, cfg=cfg)
    else:
        if precision not in (None, "", "float32"):
            raise ValueError(f"the {backend} model is float32; precision {precision!r} needs --backend eager")
        info_path = os.path.join(folder, MODEL_INFO)
        if not os.path.exists(info_path):
            raise FileNotFoundError(
                f"{folder} has {BACKENDS[backend]} but no {MODEL_INFO} (its "
                "preprocessing); export it again with tools/export_model.py"
            )
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        missing = [
            k
            for k in (
                "input_size",
                "pixel_mean",
                "pixel_std",
                "input_channels",
                "class_names",
                "category_ids",
                "score_thresh",
                "nms_thresh",
                "topk_candidates",
                "max_detections",
                "bbox_reg_weights",
                "anchors",
                "num_anchors",
            )
            if k not in info
        ]
        if missing:
            raise ValueError(f"{info_path}: missing {', '.join(missing)}; export the model again")
        runners = {"onnx": _OnnxRunner, "torchscript": _TorchScriptRunner, "pt2": _ExportedProgramRunner}
        runner = runners[backend](path, info, threads)
    thresholds = read_thresholds(os.path.join(folder, THRESHOLDS), info["class_names"])
    return DeployedModel(folder, info, backend, runner, thresholds)


# ---------------------------------------------------------------------------------- command line
def main(argv=None):
    """Predict image files with a model folder; write predictions.json (+ image_scores.json)."""
    import argparse

    from oxnet.data.io import ImageReadError, read_raw
    from oxnet.engine.predictor import find_images
    from oxnet.utils.atomic import atomic_write_json

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("model", help="model folder (exported or trained)")
    p.add_argument("--backend", choices=sorted(BACKENDS), default=None)
    p.add_argument("--input", nargs="+", required=True, help="image files and/or folders")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    model = load_model(args.model, args.backend)
    paths = find_images(args.input, exclude=args.output)
    detections, image_scores, errors = [], [], []
    for start in range(0, len(paths), args.batch_size):
        chunk, images = [], []
        for path in paths[start : start + args.batch_size]:
            try:
                images.append(read_raw(path))
                chunk.append(path)
            except ImageReadError as e:
                errors.append(str(e))
        for k, (path, res) in enumerate(zip(chunk, model.predict_batch(images))):
            image_id = start + k
            detections += to_records(res, path, image_id)
            if res["image_scores"] is not None:
                image_scores.append(
                    {"image_id": image_id, "file_name": path, "global_scores": res["image_scores"]}
                )
    if errors:
        raise SystemExit("error: unreadable images:\n  " + "\n  ".join(errors))
    os.makedirs(args.output, exist_ok=True)
    atomic_write_json(os.path.join(args.output, "predictions.json"), detections)
    if image_scores:
        atomic_write_json(os.path.join(args.output, "image_scores.json"), image_scores, indent=1)
    print(
        f"{len(paths)} images, {len(detections)} boxes ({model.backend}): "
        f"{os.path.join(args.output, 'predictions.json')}"
    )


if __name__ == "__main__":
    main()
