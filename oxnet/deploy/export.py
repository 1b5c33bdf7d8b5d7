"""Export a trained OXnet detector as ONNX, a ``torch.export`` program or TorchScript
(``tools/export_model.py`` is the command line).

The graph is the network: backbone, FPN, RetinaNet head and, for models with a global head, the
image-level classifier (GAP or DAA pooling; the attention maps themselves are not outputs). Its input
is the normalized, zero-padded batch ``images`` (B, C, P, P) float32, and its outputs are

- ``scores`` (B, R, K): sigmoid class probabilities of every anchor (levels concatenated in
  detectron2's order: level, row, column, cell anchor);
- ``deltas`` (B, R, 4): box regression deltas of every anchor;
- ``image_scores`` (B, K): image-level probabilities (models with a global head only).

Formats, each captured with the API PyTorch recommends for it:

- ``onnx`` (``model.onnx``, opset >= 18): ``torch.onnx.export(..., dynamo=True)``, which captures the
  network with ``torch.export`` and translates it with onnxscript; for ONNX Runtime and other
  runtimes. The batch dimension is dynamic.
- ``pt2`` (``model.pt2``): a ``torch.export`` ExportedProgram (``torch.export.save``), the Python-side
  PyTorch artefact; ``torch.export.load(path).module()`` runs it, with a dynamic batch dimension.
- ``torchscript`` (``model.ts``): ``torch.jit.trace`` + ``freeze``. PyTorch deprecates TorchScript;
  it is kept because it is still the one PyTorch format that C++ programs load with plain libtorch
  (``torch::jit::load``) without a compiler toolchain (a ``torch.export`` program reaches C++ only
  through AOTInductor, which compiles a platform-specific library), and because model folders
  exported before keep working. PyTorch's deprecation warnings of the TorchScript calls are silenced
  here (the format is chosen on purpose); the export logs one line saying so.

``model.json`` beside it records what :mod:`oxnet.deploy.runtime` needs to prepare images and turn
those outputs into boxes: input and padded size, pixel mean/std, class names and ids, thresholds, the
anchors (strides, grid sizes, cell anchors) and the config's SHA-1. Decoding, top-k, NMS and the
rescaling to the original image run in NumPy (:func:`oxnet.deploy.runtime.postprocess`), identical
for every format.
"""

import contextlib
import logging
import math
import os
import shutil
import warnings

import numpy as np
import torch
from torch import nn

from .runtime import BACKENDS, MODEL_INFO, grid_anchors, model_info_from_config

__all__ = ["FORMATS", "DenseOutputs", "build_eager_model", "export_model", "match_results"]

logger = logging.getLogger(__name__)

#: Export formats and the file each writes.
FORMATS = {"onnx": BACKENDS["onnx"], "pt2": BACKENDS["pt2"], "torchscript": BACKENDS["torchscript"]}
#: Lowest ONNX opset written: the lowest the torch.export-based exporter implements (it cannot convert
#: this network to 17).
MIN_OPSET = 18


class DenseOutputs(nn.Module):
    """The exported network of an ``OXNet`` (or detectron2 ``RetinaNet``): normalized padded images
    -> (scores, deltas[, image_scores]) as described in the module docstring."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.num_classes = int(model.num_classes)
        self.has_global_head = bool(getattr(model, "global_mode", ""))

    def forward(self, images):
        from detectron2.modeling.meta_arch.retinanet import permute_to_N_HWA_K

        m = self.model
        features = m.backbone(images)
        features = [features[f] for f in m.head_in_features]
        logits, deltas = m.head(features)
        scores = torch.cat([permute_to_N_HWA_K(x, self.num_classes) for x in logits], dim=1).sigmoid()
        boxes = torch.cat([permute_to_N_HWA_K(x, 4) for x in deltas], dim=1)
        if not self.has_global_head:
            return scores, boxes
        global_logits = m._global_logits(logits)[0]
        return scores, boxes, global_logits.sigmoid()


def build_eager_model(cfg):
    """The detectron2 model of ``cfg`` on the CPU in eval mode, with ``cfg.MODEL.WEIGHTS`` loaded strictly."""
    from detectron2.modeling import build_model

    import oxnet.modeling  # noqa: F401  (registers OXNet)
    from oxnet.engine.model_files import StrictCheckpointer

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    cfg.OXNET.AMP.INFERENCE = "float32"  # exported graphs are float32, whatever the training precision
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("MODEL.WEIGHTS is empty: give the trained model's checkpoint (.pth)")
    model = build_model(cfg)
    StrictCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model.eval()


def graph_info(cfg, model, fmt):
    """``model.json`` of ``model`` exported as ``fmt``: the config's info plus the graph's input and
    outputs and the anchors (checked against the model's own anchor generator)."""
    info = model_info_from_config(cfg, fmt)
    size = info["input_size"]
    div = int(getattr(model.backbone, "size_divisibility", 0) or 0)
    padded = int(math.ceil(size / div) * div) if div > 1 else size
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, info["input_channels"], padded, padded))
        feats = [feats[f] for f in model.head_in_features]
        model._bottom_up_features = None
        ref = torch.cat([b.tensor for b in model.anchor_generator(feats)]).numpy()
    gen = model.anchor_generator
    anchors = {
        "strides": [int(s) for s in gen.strides],
        "offset": float(gen.offset),
        "grid_sizes": [list(f.shape[-2:]) for f in feats],
        "cell_anchors": [c.tolist() for c in gen.cell_anchors],
    }
    mine = np.concatenate(grid_anchors(anchors))
    if mine.shape != ref.shape or not np.array_equal(mine, ref):
        raise RuntimeError("the anchors recorded for the runtime differ from the model's anchor generator")
    outputs = ["scores", "deltas"] + (["image_scores"] if info["has_global_head"] else [])
    info.update(
        padded_size=padded,
        anchors=anchors,
        num_anchors=int(len(ref)),
        graph={
            "input": "images",
            "input_layout": "NCHW float32, (pixels - pixel_mean) / pixel_std, "
            "resized to input_size, zero-padded to padded_size",
            "outputs": outputs,
        },
    )
    return info


@contextlib.contextmanager
def quiet_torchscript():
    """Silence PyTorch's deprecation warnings of the TorchScript calls, matched by message, category
    and module: TorchScript is the format asked for (C++ users, see the module docstring), so the
    advice to move to ``torch.export`` is not for the person running the export or the model; and the
    tracer's warnings about a Python boolean of a tensor in detectron2's ``Conv2d`` and in
    ``torch.nn.functional.group_norm`` (input checks of training mode or of the batch size, which an
    eval-mode graph never fails; the export is then checked on other batch sizes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`torch\.jit\.(trace|trace_method|freeze|save|load)` is deprecated",
            category=FutureWarning,
            module=r"torch\.jit\.",
        )
        warnings.filterwarnings(
            "ignore",
            message=r"Converting a tensor to a Python boolean",
            category=torch.jit.TracerWarning,
            module=r"(detectron2\.layers\.wrappers|torch\.nn\.functional)$",
        )
        yield


def _export_torchscript(wrapper, example, path):
    logger.info(
        "TorchScript is deprecated by PyTorch and kept for C++ (libtorch) users; "
        "Python and ONNX Runtime users: --format pt2 or onnx"
    )
    with quiet_torchscript(), torch.no_grad():
        traced = torch.jit.trace(wrapper, (example,), check_trace=False)
        traced = torch.jit.freeze(traced.eval())
        torch.jit.save(traced, path)


def _batch_dim():
    return torch.export.Dim("batch", min=1, max=4096)


def _export_pt2(wrapper, example, path):
    with torch.no_grad():
        program = torch.export.export(wrapper, (example,), dynamic_shapes=({0: _batch_dim()},))
    torch.export.save(program, path)


def _export_onnx(wrapper, example, path, outputs, opset):
    import onnx

    with torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            (example,),
            None,
            input_names=["images"],
            output_names=outputs,
            dynamic_shapes=({0: _batch_dim()},),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    program.save(path)
    onnx.checker.check_model(path)


def export_model(cfg, out_dir, fmt, opset=MIN_OPSET, check=True):
    """Export the model of ``cfg`` (``MODEL.WEIGHTS`` loaded) to ``out_dir`` as ``fmt`` (a key of
    :data:`FORMATS`).

    Writes ``model.onnx``, ``model.pt2`` or ``model.ts``, ``model.json`` and ``config.yaml`` (each atomically;
    ``model.json`` last, so a folder with it is complete). With ``check``, the exported graph is run
    on a random batch of 1 and of 3 and must match the eager network (max |difference| <= 1e-4).

    Returns:
        the ``model.json`` dict.
    """
    from oxnet.utils.atomic import atomic_open, atomic_write_json

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    if opset < MIN_OPSET:
        raise ValueError(f"ONNX opset must be >= {MIN_OPSET}, got {opset}")
    model = build_eager_model(cfg)
    info = graph_info(cfg, model, fmt)
    info["source_weights"] = os.path.abspath(cfg.MODEL.WEIGHTS)
    if fmt == "onnx":
        info["opset"] = int(opset)
    wrapper = DenseOutputs(model).eval()
    p, c = info["padded_size"], info["input_channels"]
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, c, p, p, generator=gen)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, FORMATS[fmt])
    stem, ext = os.path.splitext(path)
    tmp = stem + ".tmp" + ext  # torch.export.save writes only to a name ending in .pt2
    try:
        if fmt == "torchscript":
            _export_torchscript(wrapper, example, tmp)
        elif fmt == "pt2":
            _export_pt2(wrapper, example, tmp)
        else:
            _export_onnx(wrapper, example, tmp, info["graph"]["outputs"], opset)
        if check:
            _check_graph(wrapper, tmp, fmt, c, p)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    dumped = cfg.clone()
    dumped.defrost()
    dumped.MODEL.WEIGHTS = ""
    with atomic_open(os.path.join(out_dir, "config.yaml"), "w") as f:
        f.write(dumped.dump())
    stale = [os.path.join(out_dir, n) for f, n in FORMATS.items() if f != fmt]
    for other in stale:  # one graph per folder: load_model would prefer a stale model.onnx or model.ts
        if os.path.exists(other):
            os.remove(other)
    atomic_write_json(os.path.join(out_dir, MODEL_INFO), info, indent=1)
    logger.info("exported %s to %s", fmt, path)
    return info


def _check_graph(wrapper, path, fmt, channels, padded, tol=1e-4):
    gen = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        x = torch.randn(batch, channels, padded, padded, generator=gen)
        with torch.no_grad():
            ref = [t.numpy() for t in wrapper(x)]
        if fmt == "torchscript":
            with quiet_torchscript(), torch.no_grad():
                got = [t.numpy() for t in torch.jit.load(path)(x)]
        elif fmt == "pt2":
            with torch.no_grad():
                got = [t.numpy() for t in torch.export.load(path).module()(x)]
        else:
            import onnxruntime as ort

            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            got = sess.run(None, {"images": x.numpy()})
        for name, a, b in zip(["scores", "deltas", "image_scores"], ref, got):
            err = float(np.abs(a - b).max()) if a.size else 0.0
            if a.shape != b.shape or err > tol:
                raise RuntimeError(
                    f"exported {fmt} graph differs from the model on {name} at batch {batch}: "
                    f"shapes {a.shape} vs {b.shape}, max |difference| {err:.3g}"
                )


def match_results(a, b, box_tol=1e-3, score_tol=1e-4):
    """Problems (a list of strings; empty when they agree) between two results of
    :meth:`oxnet.deploy.runtime.DeployedModel.predict` for the same image: image size, detection count,
    each detection of ``a`` paired with one of ``b`` of the same class whose box corners are within
    ``box_tol`` px and score within ``score_tol`` (pairing tolerates reordering among near-equal
    scores), and the image-level scores."""
    problems = []
    if (a["width"], a["height"]) != (b["width"], b["height"]):
        problems.append(f"image size {a['width']}x{a['height']} vs {b['width']}x{b['height']}")
    da, db = a["detections"], b["detections"]
    if len(da) != len(db):
        problems.append(f"{len(da)} vs {len(db)} detections")
    free = list(range(len(db)))

    def corners(bbox):
        x, y, w, h = bbox
        return np.array([x, y, x + w, y + h])

    for i, d in enumerate(da):
        ba = corners(d["bbox"])
        found = None
        for j in free:
            e = db[j]
            if (
                e["category_id"] == d["category_id"]
                and abs(e["score"] - d["score"]) <= score_tol
                and np.abs(corners(e["bbox"]) - ba).max() <= box_tol
            ):
                found = j
                break
        if found is None:
            problems.append(
                f"detection {i} ({d['category_name']} {d['score']:.6f} at "
                f"{[round(v, 3) for v in d['bbox']]}) has no match"
            )
            if len(problems) > 5:
                break
        else:
            free.remove(found)
    sa, sb = a.get("image_scores"), b.get("image_scores")
    if (sa is None) != (sb is None):
        problems.append("image_scores present in one result only")
    elif sa is not None:
        worst = max(abs(sa[k] - sb[k]) for k in sa)
        if set(sa) != set(sb) or worst > score_tol:
            problems.append(f"image_scores differ by up to {worst:.3g}")
    return problems


def copy_thresholds(src_folder, out_dir):
    """Copy ``thresholds.json`` (and ``thresholds_info.json``, how it was chosen) from the trained
    model's folder to the export, when there is one; returns whether it did."""
    from .runtime import THRESHOLDS

    copied = False
    for name in (THRESHOLDS, "thresholds_info.json"):
        src = os.path.join(src_folder, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(out_dir, name))
            copied = True
    return copied
