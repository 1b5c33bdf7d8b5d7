"""Prediction on new chest X-rays: a trained model applied to image files or arrays.

:class:`OXnetPredictor` loads a model and runs it on batches of images; :func:`predict_files` runs it
over files (with progress, prefetching and a complete list of unreadable files) and
:func:`write_predictions` writes the results (``demo/predict.py`` is the command line).
"""

import concurrent.futures
import os

import numpy as np
import torch
from detectron2.modeling import build_model

import oxnet.modeling  # noqa: F401  (registers OXNet)
from oxnet.config import class_names
from oxnet.data.io import ImageReadError, is_dicom, read_image, write_png
from oxnet.data.mapper import OmniDatasetMapper
from oxnet.evaluation.records import category_ids_or_default, detection_records, image_score_record
from oxnet.utils.atomic import atomic_open, atomic_write_json

from .model_files import StrictCheckpointer, load_model_config

__all__ = [
    "OXnetPredictor",
    "UnreadableImagesError",
    "find_images",
    "predict_files",
    "to_records",
    "draw_predictions",
    "write_overlay",
    "write_predictions",
    "IMAGE_EXTENSIONS",
]

#: File name endings taken from folders (files with the DICOM magic are taken too).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


class UnreadableImagesError(RuntimeError):
    """Some input images could not be read; ``errors`` is a list of (path, message)."""

    def __init__(self, errors):
        self.errors = list(errors)
        lines = "\n".join(f"  {msg}" for _, msg in self.errors)
        super().__init__(
            f"{len(self.errors)} image(s) could not be read (use --skip-unreadable to "
            f"predict the others and list these in skipped.txt):\n{lines}"
        )


def find_images(inputs, exclude=None):
    """Image files named by ``inputs`` (files, or folders searched recursively), in order, without
    duplicates. In folders: names ending in :data:`IMAGE_EXTENSIONS` (any case) and files with the
    DICOM magic; hidden files and anything under ``exclude`` (e.g. the output folder) are left out.
    A file named explicitly is always taken.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: no image was found.
    """
    exclude = os.path.abspath(exclude) + os.sep if exclude else None
    found, seen = [], set()

    def under(path):
        return bool(exclude) and (os.path.abspath(path) + os.sep).startswith(exclude)

    def add(path):
        path = os.path.abspath(path)
        if path not in seen:
            seen.add(path)
            found.append(path)

    for item in inputs:
        item = os.fspath(item)
        if os.path.isfile(item):
            add(item)
        elif os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(
                    d for d in dirs if not d.startswith(".") and not under(os.path.join(root, d))
                )
                for name in sorted(files):
                    path = os.path.join(root, name)
                    if name.startswith(".") or under(path):
                        continue
                    if name.lower().endswith(IMAGE_EXTENSIONS) or is_dicom(path):
                        add(path)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    if not found:
        raise ValueError(f"no PNG, JPEG or DICOM images found in {list(map(os.fspath, inputs))}")
    return found


class OXnetPredictor:
    """A trained OXNet (any method) or RetinaNet applied to new images, like detectron2's
    ``DefaultPredictor`` but batched and with OXnet's image reading and resizing.

    Example::

        predictor = OXnetPredictor.from_weights("output/demo/model/model_final.pth")  # its config.yaml
        outputs = predictor(["a.png", "b.dcm", array])    # paths or uint8 HxWx3 / HxW arrays
        outputs[0]["instances"].pred_boxes, predictor.class_names

    or ``OXnetPredictor(cfg)`` with ``cfg.MODEL.WEIGHTS`` the checkpoint. Weights that do not fit the
    model the config builds are an error (:class:`oxnet.engine.model_files.WeightsMismatchError`).
    Weights are loaded without running code from the file; detectron2 ``.pkl`` files (pickles) only
    with ``allow_pickle=True``, for weights the user names (:mod:`oxnet.utils.safe_load`).

    Each output is a dict with ``"instances"`` (boxes in the image's original pixels, on the CPU) and,
    for models with a global head, ``"global_scores"`` (K,) image-level class probabilities.
    Inputs are prepared as in evaluation (:class:`oxnet.data.mapper.OmniDatasetMapper`): read with
    :func:`oxnet.data.io.read_image` (arrays are taken as such) and resized to ``OXNET.INPUT_SIZE``.
    """

    def __init__(self, cfg, allow_pickle=False):
        self.cfg = cfg.clone()
        self.cfg.defrost()
        self.cfg.OXNET.DATA.CACHE = ""  # new images are not in a training cache
        self.cfg.freeze()
        if not cfg.MODEL.WEIGHTS:
            raise ValueError("MODEL.WEIGHTS is empty: give the trained model's checkpoint (.pth)")
        self.class_names = class_names(cfg)
        self.category_ids = category_ids_or_default(cfg.OXNET.CATEGORY_IDS, len(self.class_names))
        self.model = build_model(self.cfg)
        self.model.eval()
        StrictCheckpointer(self.model, allow_pickle=allow_pickle).load(cfg.MODEL.WEIGHTS)
        self.has_global_scores = bool(getattr(self.model, "global_mode", ""))
        self.mapper = OmniDatasetMapper(self.cfg, is_train=False, image_reader=_read_any)

    @classmethod
    def from_weights(cls, weights, config_file=None, opts=(), allow_pickle=False):
        """A predictor for ``weights`` with the ``config.yaml`` written beside them by training (or
        ``config_file``), plus ``opts`` (KEY VALUE ...)."""
        from oxnet.config import resolve_device

        cfg = load_model_config(weights, config_file, opts)
        resolve_device(cfg)
        return cls(cfg, allow_pickle=allow_pickle)

    def prepare(self, image):
        """The model input of one image (a path or an array); raises ImageReadError for a bad file."""
        x = self.mapper({"file_name": image})
        return {"image": x["image"], "height": x["height"], "width": x["width"]}

    @torch.no_grad()
    def run(self, inputs):
        """Run the model on prepared inputs (see :meth:`prepare`); outputs are moved to the CPU."""
        outputs = self.model(inputs)
        return [{k: v.to("cpu") for k, v in out.items()} for out in outputs]

    def __call__(self, images):
        return self.run([self.prepare(im) for im in images])


def _read_any(image):
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"expected a uint8 HxW or HxWx3 image array, got {image.dtype} {image.shape}")
        return image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    return read_image(image)


def predict_files(
    predictor,
    paths,
    batch_size=8,
    skip_unreadable=False,
    overlay_dir=None,
    num_threads=2,
    progress=True,
    display_threshold=0.0,
):
    """Run ``predictor`` over image files, ``batch_size`` images per forward pass, reading the next
    batch in ``num_threads`` threads while the model runs.

    Unreadable files never disappear silently: by default the model stops running at the first one
    and the remaining files are only read, then :class:`UnreadableImagesError` lists every unreadable
    file. With ``skip_unreadable`` the other images are predicted and the unreadable ones returned.
    With ``overlay_dir``, an overlay of each image's predictions (:func:`draw_predictions`) is written
    there as ``<image_id>_<file stem>.png`` (image_id: the position in the results), with the boxes
    scoring at least ``display_threshold`` (the results keep every box the model returned).

    Returns:
        (results, skipped): results is a list of (path, output) in the order of ``paths``; skipped is a
        list of (path, message).
    """
    from tqdm import tqdm

    def load(path):
        try:
            image = read_image(path)
        except ImageReadError as e:
            return path, None, None, str(e)
        return path, predictor.prepare(image), image if overlay_dir else None, None

    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    results, skipped = [], []
    bar = tqdm(total=len(paths), unit="image", desc="predict", disable=not progress)
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        pending = [pool.submit(load, p) for p in batches[0]] if batches else []
        for b in range(len(batches)):
            loaded = [f.result() for f in pending]
            pending = [pool.submit(load, p) for p in batches[b + 1]] if b + 1 < len(batches) else []
            good = [(p, x, im) for p, x, im, err in loaded if err is None]
            skipped += [(p, err) for p, _, _, err in loaded if err is not None]
            if good and (skip_unreadable or not skipped):
                outputs = predictor.run([x for _, x, _ in good])
                for (path, _, image), out in zip(good, outputs):
                    if overlay_dir:
                        write_overlay(
                            overlay_dir,
                            len(results),
                            path,
                            image,
                            out,
                            predictor.class_names,
                            display_threshold,
                        )
                    results.append((path, out))
            bar.update(len(loaded))
            bar.set_postfix(unreadable=len(skipped))
    bar.close()
    if skipped and not skip_unreadable:
        raise UnreadableImagesError(skipped)
    return results, skipped


def write_overlay(overlay_dir, image_id, path, image, output, names, min_score=0.0):
    """Write ``overlay_dir/<image_id>_<file stem>.png`` (see :func:`draw_predictions`); return its path."""
    stem = os.path.splitext(os.path.basename(path))[0]
    out = os.path.join(overlay_dir, f"{image_id:05d}_{stem}.png")
    picture = draw_predictions(image, output, names, min_score=min_score)
    write_png(out, np.ascontiguousarray(picture[:, :, ::-1]))
    return out


def to_records(output, file_name, image_id, names, category_ids=None):
    """COCO results of one image (:func:`oxnet.evaluation.records.detection_records`): ``image_id``,
    ``file_name``, ``category_id`` (the dataset's, ``category_ids[class index]``; default index + 1),
    ``category_name``, ``bbox`` [x, y, w, h] in original pixels, ``score``."""
    return detection_records(
        output["instances"], image_id, file_name, names, category_ids_or_default(category_ids, len(names))
    )


def overlay_caption(output, names, min_score=0.0):
    """The lines written on an overlay: how many findings pass ``min_score``, or, when none does, that
    there is none and which box scored highest (an empty overlay must not look like a normal one),
    then the top image-level probabilities when the output has ``global_scores``."""
    inst = output["instances"]
    scores = inst.scores.tolist()
    kept = [s for s in scores if s >= min_score]
    if kept:
        lines = [f"{len(kept)} finding(s) with score >= {min_score:.2f}"]
    elif scores:
        k = max(range(len(scores)), key=lambda i: scores[i])
        top = names[int(inst.pred_classes[k])]
        lines = [f"no finding with score >= {min_score:.2f}", f"highest box: {top} {scores[k]:.2f}"]
    else:
        lines = ["no finding: no box above the model's test threshold"]
    if "global_scores" in output:
        probs = output["global_scores"].tolist()
        top3 = sorted(range(len(probs)), key=lambda k: -probs[k])[:3]
        lines.append("image: " + ", ".join(f"{names[k]} {probs[k]:.2f}" for k in top3))
    return lines


def draw_predictions(image, output, names, max_side=1024, min_score=0.0, min_side=768):
    """An RGB overlay of one image's detections scoring at least ``min_score`` (class name and score)
    drawn by detectron2's Visualizer in the project's palette (:mod:`oxnet.utils.palette`), with
    :func:`overlay_caption` at the top (the threshold, or that nothing passes it) and a legend of the
    drawn classes at the bottom. Small images are enlarged to ``min_side`` so the text fits."""
    from detectron2.utils.visualizer import Visualizer

    from oxnet.data.visualize import class_colors

    longest = max(image.shape[:2])
    scale = min(max(1.0, min_side / longest), max_side / longest)
    vis = Visualizer(image, metadata=None, scale=scale)
    inst = output["instances"]
    shown = inst[inst.scores >= min_score]
    colors = class_colors(len(names))
    classes = shown.pred_classes.tolist()
    if classes:
        vis.overlay_instances(
            boxes=shown.pred_boxes.tensor.numpy(),
            labels=[f"{names[c]} {s:.2f}" for c, s in zip(classes, shown.scores.tolist())],
            assigned_colors=[colors[c] for c in classes],
            alpha=0.5,
        )
    # text about 18 px high on the written overlay: sizes and positions are in the image's pixels
    size = 14.0 / scale
    step = size * 1.5
    for i, line in enumerate(overlay_caption(output, names, min_score)):
        vis.draw_text(line, (2, 2 + i * step), font_size=size, color="w", horizontal_alignment="left")
    height = image.shape[0]
    for i, c in enumerate(sorted(set(classes))):  # legend: one line per drawn class, in its colour
        y = height - (i + 1) * step - 2
        vis.draw_text(names[c], (2, y), font_size=size, color=colors[c], horizontal_alignment="left")
    return vis.get_output().get_image()


def write_predictions(out_dir, results, skipped, names, category_ids=None):
    """Write ``predictions.json`` (COCO results, see :func:`to_records`), ``image_scores.json`` (when
    the outputs have ``global_scores``; :func:`oxnet.evaluation.records.image_score_record`) and
    ``skipped.txt`` (when files were skipped; tab-separated path and problem) atomically.
    ``image_id`` is the position in ``results``; ``python -m oxnet.evaluate`` matches images by
    ``file_name``. Returns the paths written and counts."""
    os.makedirs(out_dir, exist_ok=True)
    category_ids = category_ids_or_default(category_ids, len(names))
    detections, image_scores = [], []
    for image_id, (path, output) in enumerate(results):
        detections += to_records(output, path, image_id, names, category_ids)
        if "global_scores" in output:
            image_scores.append(image_score_record(output["global_scores"], image_id, path, names))
    written = {
        "predictions": os.path.join(out_dir, "predictions.json"),
        "images": len(results),
        "detections": len(detections),
        "skipped": len(skipped),
    }
    atomic_write_json(written["predictions"], detections)
    if image_scores:
        written["image_scores"] = os.path.join(out_dir, "image_scores.json")
        atomic_write_json(written["image_scores"], image_scores, indent=1)
    skipped_txt = os.path.join(out_dir, "skipped.txt")
    if skipped:
        written["skipped_list"] = skipped_txt
        with atomic_open(skipped_txt, "w", encoding="utf-8") as f:
            f.writelines(f"{path}\t{msg}\n" for path, msg in skipped)
    elif os.path.exists(skipped_txt):
        os.remove(skipped_txt)  # a list from an earlier run would be misleading
    return written
