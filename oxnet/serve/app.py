"""The prediction service: a FastAPI app around one deployed model.

* ``POST /v1/predict``: a DICOM, PNG or JPEG upload (a multipart form field ``file`` or the raw request
  body) -> findings as JSON (``?format=dicom-sr``: a DICOM SR, for DICOM uploads only).
  ``?preview=1`` adds the image as the model sees it (an 8-bit PNG data URL); ``?attention=1`` adds
  the DAA attention maps of eager models with the DAA head.
* ``GET /v1/model``: classes, version, training data, operating thresholds, limits.
* ``GET /healthz``; ``GET /``: the review page (``static/index.html``).

Uploads are bounded in size (413) and in declared pixel count (422); anything that is not a decodable
DICOM/PNG/JPEG gets a 4xx naming the problem. Inference runs in worker threads, at most
``workers`` at a time, with at most ``max_queue`` requests waiting; beyond that a request gets 503
with ``Retry-After``. An upload is written only to a private temporary folder (the readers of
:mod:`oxnet.data.io` take a file) that is removed once the request is answered; nothing from a request
is unpickled.
"""

import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import logging
import math
import os
import struct
import tempfile
import threading
import time

import numpy as np

from oxnet.deploy.phi import redact

__all__ = ["ServiceLimits", "UploadError", "create_app", "sniff_kind", "declared_size"]

logger = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: File name endings of the example images the review page can pick from.
EXAMPLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
_MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and headers around the file itself
_SUFFIX = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg"}
_MEDIA = {"dicom": "application/dicom", "png": "image/png", "jpeg": "image/jpeg"}


class ServiceLimits:
    """Bounds of the service: ``max_upload_bytes`` per upload, ``max_pixels`` per decoded image,
    ``workers`` inferences at a time and at most ``max_queue`` more requests waiting; an upload whose
    body does not arrive within ``body_timeout`` seconds between two chunks gets 408."""

    def __init__(
        self, max_upload_bytes=64 * 2**20, max_pixels=100_000_000, workers=1, max_queue=32, body_timeout=30.0
    ):
        if workers < 1 or max_queue < 0 or max_upload_bytes < 1 or max_pixels < 1 or body_timeout <= 0:
            raise ValueError("workers, the size limits and the body timeout must be positive, max_queue >= 0")
        self.body_timeout = float(body_timeout)
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_pixels = int(max_pixels)
        self.workers = int(workers)
        self.max_queue = int(max_queue)

    def as_dict(self):
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "workers": self.workers,
            "max_queue": self.max_queue,
            "body_timeout_s": self.body_timeout,
        }


class UploadError(Exception):
    """A request that cannot be answered: ``status`` (4xx) and a message for the client."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def sniff_kind(data, filename=""):
    """ "dicom", "png", "jpeg" from the upload's first bytes (a DICOM without its 128-byte preamble is
    recognised by a ``.dcm``/``.dicom`` name), else None."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if os.path.splitext(filename or "")[1].lower() in (".dcm", ".dicom"):
        return "dicom"
    return None


def declared_size(data, kind):
    """(width, height) an image declares in its header before decoding, or None when not found."""
    try:
        if kind == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if kind == "jpeg":
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    return None
                marker = data[i + 1]
                if marker == 0xFF:  # fill byte
                    i += 1
                    continue
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    i += 2
                    continue
                length = struct.unpack(">H", data[i + 2 : i + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                    return w, h
                i += 2 + length
    except struct.error:
        return None
    return None


class _Service:
    """The model, the limits, the admission counters and the inference threads behind the app."""

    def __init__(self, model, limits, model_dir=None, examples_dir=None, attention=True, caps=None):
        from oxnet.deploy.runtime import MAX_FINDINGS_PER_CLASS, MAX_FINDINGS_PER_IMAGE

        self.model = model
        self.limits = limits
        self.caps = tuple(caps) if caps else (MAX_FINDINGS_PER_CLASS, MAX_FINDINGS_PER_IMAGE)
        from oxnet.deploy.runtime import read_thresholds_info

        # how the operating points were chosen: read once, as the model's thresholds.json is
        self.thresholds_info = read_thresholds_info(model_dir)
        self.model_dir = model_dir
        self.pool = concurrent.futures.ThreadPoolExecutor(limits.workers, thread_name_prefix="oxnet-infer")
        self.semaphore = None  # created in the event loop (startup)
        self.pending = 0  # admitted requests: reading their upload, waiting or running
        self.max_pending = 0
        self.rejected = 0
        self.served = 0
        self.mean_seconds = 0.2  # running mean of one inference, for Retry-After
        self.examples = _list_examples(examples_dir)
        self._attention_lock = threading.Lock()
        # The eager detectron2 model keeps per-call state on the module (e.g. the backbone features the
        # global head reads), so its calls are serialized; exported graphs run in parallel.
        exported = (getattr(model, "info", None) or {}).get("format") in ("torchscript", "onnx")
        self.model_lock = contextlib.nullcontext() if exported else threading.Lock()
        self._attention_predictor = None
        self.attention_reason = (
            _attention_unavailable(model, model_dir)
            if attention
            else "attention maps are turned off for this service (--no-attention)"
        )

    # -- admission -------------------------------------------------------------------------------------
    def admit(self):
        limit = self.limits.workers + self.limits.max_queue
        if self.pending >= limit:
            self.rejected += 1
            waiting = self.pending - self.limits.workers + 1
            retry = max(1, math.ceil(self.mean_seconds * waiting / self.limits.workers))
            raise UploadError(
                503,
                f"the service is busy ({self.pending} requests in progress, at most "
                f"{limit}); retry in {retry} s",
                {"Retry-After": str(retry)},
            )
        self.pending += 1
        self.max_pending = max(self.max_pending, self.pending)

    def release(self):
        self.pending -= 1

    async def run(self, fn, *args):
        """Run ``fn(*args)`` in an inference thread, at most ``workers`` at a time."""
        async with self.semaphore:
            start = time.perf_counter()
            try:
                return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
            finally:
                self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * (time.perf_counter() - start)
                self.served += 1

    # -- model -----------------------------------------------------------------------------------------
    @property
    def class_names(self):
        return list(self.model.class_names)

    def model_summary(self):
        info = dict(getattr(self.model, "info", None) or {})
        from oxnet.utils.palette import class_palette

        out = {
            "classes": self.class_names,
            "colors": dict(zip(self.class_names, class_palette(len(self.class_names)))),
            "category_ids": info.get("category_ids"),
            "version": info.get("oxnet_version"),
            "format": info.get("format"),
            "config_sha1": info.get("config_sha1"),
            "input_size": info.get("input_size"),
            "score_thresh": info.get("score_thresh"),
            "has_global_head": info.get("has_global_head"),
            "training_data": info.get("training_data"),
            "thresholds": self.thresholds(),
            "attention": {"available": self.attention_reason is None, "reason": self.attention_reason},
            "limits": self.limits.as_dict(),
            "examples": sorted(self.examples),
        }
        if self.thresholds_info:
            out["thresholds_info"] = self.thresholds_info
        out["calibrated"] = bool(self.thresholds())
        out["caps"] = {"per_class": self.caps[0], "per_image": self.caps[1]}
        return out

    def operating_points(self):
        """Per class, the operating point its threshold was chosen at (``thresholds_info.json``):
        threshold, source, lesion sensitivity and false positives per image on the validation set."""
        details = self.thresholds_info
        if not details:
            return None
        keys = ("threshold", "source", "sensitivity", "fp_per_image", "lesions")
        classes = {name: {k: d.get(k) for k in keys} for name, d in details.get("classes", {}).items()}
        return {
            "target_sensitivity": details.get("sensitivity"),
            "validation_images": details.get("images"),
            "validation_set": os.path.basename(str(details.get("val", ""))) or None,
            "classes": classes,
        }

    def thresholds(self):
        t = getattr(self.model, "thresholds", None)
        return {str(k): float(v) for k, v in t.items()} if t else None

    def attention_maps(self, grey_uint8):
        """DAA maps (K, h, w) of one image from the eager model (see :mod:`oxnet.evaluation.attention`)."""
        import torch

        with self._attention_lock:
            if self._attention_predictor is None:
                self._attention_predictor = _eager_predictor(self.model, self.model_dir)
        predictor = self._attention_predictor
        x = predictor.prepare(np.ascontiguousarray(np.repeat(grey_uint8[:, :, None], 3, axis=2)))
        with self.model_lock, torch.no_grad():
            maps = predictor.model.attention_maps([x])[0]
        return np.asarray(maps["daa"], np.float32)

    # -- one request -----------------------------------------------------------------------------------
    def predict(self, data, filename, want_sr, want_preview, want_attention):
        """Decode, predict and format one upload (in an inference thread)."""
        from oxnet.data.io import ImageReadError, read_raw, scale_to_uint8

        kind = sniff_kind(data, filename)
        name = "the upload"  # a client's file name may be a patient's: never echoed
        if kind is None:
            raise UploadError(
                415,
                f"{name} is not a DICOM, PNG or JPEG image (first bytes "
                f"{data[:8]!r}); upload a chest X-ray as .dcm, .png or .jpg",
            )
        if want_sr and kind != "dicom":
            raise UploadError(
                415,
                f"format=dicom-sr needs a DICOM upload (the SR references the source "
                f"image's SOP Instance UID); {name} is a {kind.upper()} image",
            )
        size = declared_size(data, kind)
        if size is not None:
            self._check_pixels(name, *size)
        with tempfile.TemporaryDirectory(prefix="oxnet-serve-") as tmp:
            path = os.path.join(tmp, "upload" + _SUFFIX[kind])
            with open(path, "wb") as f:
                f.write(data)
            source = None
            if kind == "dicom":
                source = _dicom_header(path, name, data)
                if "Rows" in source and "Columns" in source:
                    self._check_pixels(name, int(source.Columns), int(source.Rows))
            try:
                raw = read_raw(path)
            except ImageReadError as e:
                problem = redact(str(e.problem), source)
                raise UploadError(422, f"cannot read {name} as a {kind.upper()} image: {problem}") from e
        self._check_pixels(name, raw.shape[1], raw.shape[0])
        with self.model_lock:
            result = self.model.predict(raw)
        thresholds = self.thresholds()
        kept = _apply_thresholds(result, thresholds, self.caps)
        if want_sr:
            from oxnet.deploy.sr import SRBuildError, build_sr, operating_point_parameters, sr_bytes

            points = operating_point_parameters(thresholds, self.thresholds_info)
            try:
                sr = build_sr(
                    source, kept, dict(getattr(self.model, "info", None) or {}), operating_points=points
                )
            except SRBuildError as e:
                raise UploadError(422, f"cannot write a DICOM SR for {name}: {redact(str(e), source)}") from e
            return {"sr": sr_bytes(sr), "sop_instance_uid": str(source.get("SOPInstanceUID", ""))}
        out = self._json_result(result, kept, thresholds, kind, source)
        grey = scale_to_uint8(raw) if (want_preview or want_attention) else None
        if want_preview:
            out["preview"] = _preview_png(grey)
        if want_attention:
            if self.attention_reason is not None:
                raise UploadError(409, f"attention maps are not available: {self.attention_reason}")
            daa = self.attention_maps(grey)
            out["attention"] = {
                "kind": "daa",
                "classes": self.class_names,
                "grid": list(daa.shape[1:]),
                "maps": np.round(daa, 5).tolist(),
                "range": [float(daa.min()), float(daa.max())],
                "note": "DAA map X*R (Eq. 3) on the last backbone stage's grid; the grid covers the whole "
                "image (the model resizes it to a square)",
            }
        return out

    def _check_pixels(self, name, width, height):
        if int(width) * int(height) > self.limits.max_pixels:
            raise UploadError(
                422,
                f"{name} is {width}x{height} pixels; this service accepts images of at "
                f"most {self.limits.max_pixels} pixels",
            )

    def _json_result(self, result, kept, thresholds, kind, source):
        def finding(d):
            x, y, w, h = (float(v) for v in d["bbox"])
            name = d["category_name"]
            return {
                "class": name,
                "category_id": int(d["category_id"]),
                "score": float(d["score"]),
                "box": [x, y, w, h],
                "operating_threshold": None if not thresholds else thresholds.get(name),
            }

        image = {"width": int(result["width"]), "height": int(result["height"]), "kind": kind}
        points = self.operating_points()
        if source is not None:
            image["sop_instance_uid"] = str(source.get("SOPInstanceUID", "")) or None
        scores = result.get("image_scores")
        return {
            "summary": _summary(kept["detections"], result["detections"], thresholds, scores),
            "image": image,
            "findings": [finding(d) for d in kept["detections"]],
            "detections": [finding(d) for d in result["detections"]],
            "image_scores": {str(k): float(v) for k, v in scores.items()} if scores else None,
            "thresholds": thresholds,
            # without thresholds.json the findings are every box above the model's test threshold
            # (capped): not calibrated on a validation set, and marked so
            "calibrated": bool(thresholds),
            "operating_points": points,
            "capped": int(kept.get("capped", 0)),
            "caps": {"per_class": self.caps[0], "per_image": self.caps[1]},
            "box_format": "[x, y, width, height] in the uploaded image's pixels",
            "model": {
                "version": (getattr(self.model, "info", None) or {}).get("oxnet_version"),
                "format": (getattr(self.model, "info", None) or {}).get("format"),
            },
        }


def _summary(findings, detections, thresholds, image_scores):
    """One sentence a reader can act on, saying so explicitly when nothing passes the operating points."""
    if findings:
        return f"{len(findings)} finding(s) at the operating points"
    if not detections:
        text = "no finding: no box above the model's test threshold"
    else:
        top = max(detections, key=lambda d: d["score"])
        limit = (thresholds or {}).get(top["category_name"])
        below = f", below its threshold {limit:.2f}" if limit is not None else ""
        text = (
            f"no finding at the operating points; the highest-scoring box is {top['category_name']} "
            f"{top['score']:.2f}{below}"
        )
    if image_scores:
        name, p = max(image_scores.items(), key=lambda kv: kv[1])
        text += f"; highest image-level score: {name} {p:.2f}"
    return text


def _apply_thresholds(result, thresholds, caps):
    """The findings: the operating thresholds (when the model has them), then the caps per class and
    per image (:func:`oxnet.deploy.runtime.apply_thresholds`)."""
    from oxnet.deploy.runtime import apply_thresholds

    return apply_thresholds(result, thresholds, *caps)


def _dicom_header(path, name, data=b""):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as e:  # pydicom raises many types on bad input
        # the header did not parse, so its values cannot be redacted one by one: name the error only
        raise UploadError(422, f"cannot read {name} as DICOM ({type(e).__name__})") from e


def _preview_png(grey, max_side=1024):
    """An 8-bit grey PNG data URL of the image (downscaled to ``max_side``)."""
    import cv2

    h, w = grey.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1:
        grey = cv2.resize(
            grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    ok, buf = cv2.imencode(".png", grey)
    if not ok:
        raise RuntimeError("could not encode the preview")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _list_examples(folder):
    if not folder:
        return {}
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"examples folder {folder} does not exist")
    return {
        name: os.path.join(folder, name)
        for name in sorted(os.listdir(folder))
        if name.lower().endswith(EXAMPLE_EXTENSIONS)
        and not name.startswith(".")
        and os.path.isfile(os.path.join(folder, name))
    }


def _attention_unavailable(model, model_dir):
    """None when attention maps can be computed for ``model``, else the reason."""
    from oxnet.methods import method_components

    info = getattr(model, "info", None) or {}
    fmt = info.get("format") or getattr(model, "backend", None)
    if fmt in ("torchscript", "onnx"):
        return (
            f"an exported ({fmt}) model holds the detector's outputs only; attention maps need the "
            "eager model folder (model_final.pth + config.yaml)"
        )
    method = info.get("method")
    if method is None:
        if not (model_dir and os.path.exists(os.path.join(model_dir, "model_final.pth"))):
            return "attention maps need an eager model folder (model_final.pth + config.yaml)"
        from oxnet.engine.model_files import load_model_config

        method = load_model_config(os.path.join(model_dir, "model_final.pth")).OXNET.METHOD
    if method_components(method)["global_head"] != "daa":
        return (
            f"the model ({method}) has no DAA global head; attention maps exist for daa, daa_gpa, "
            "oxnet and oxnet_plus models"
        )
    return None


def _eager_predictor(model, model_dir):
    """The eager OXnet predictor of ``model`` (the runtime's own), else one loaded from ``model_dir``."""
    from oxnet.engine.predictor import OXnetPredictor

    p = getattr(getattr(model, "_runner", None), "predictor", None)
    if isinstance(p, OXnetPredictor):
        return p
    if not (model_dir and os.path.exists(os.path.join(model_dir, "model_final.pth"))):
        raise UploadError(409, "attention maps need an eager model folder (model_final.pth + config.yaml)")
    return OXnetPredictor.from_weights(os.path.join(model_dir, "model_final.pth"))


async def _read_upload(request, limit, timeout=30.0):
    """(bytes, file name) of the request's upload: the multipart field ``file`` or the raw body.

    Raises:
        UploadError: 413 beyond ``limit`` bytes (checked while reading), 400 without an upload.
    """
    from starlette.requests import Request

    ctype = request.headers.get("content-type", "")
    multipart = ctype.startswith("multipart/form-data")
    cap = limit + (_MULTIPART_OVERHEAD if multipart else 0)
    too_big = UploadError(413, f"the upload is larger than this service's limit of {limit} bytes")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise too_big
    chunks, total = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:  # a client that stops sending must not hold its worker slot
            chunk = await asyncio.wait_for(stream.__anext__(), timeout)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise UploadError(408, f"the upload stalled: no data for {timeout:g} s") from None
        total += len(chunk)
        if total > cap:
            raise too_big
        chunks.append(chunk)
    body = b"".join(chunks)
    if not multipart:
        if not body:
            raise UploadError(
                400, "empty request: send the image as the multipart field 'file' or as the request body"
            )
        return body, request.query_params.get("filename", "")

    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError(400, "the form has no file field 'file'")
        data = await upload.read()
        if len(data) > limit:
            raise too_big
        if not data:
            raise UploadError(400, "the uploaded file is empty")
        return data, os.path.basename(upload.filename or "")
    finally:
        await form.close()


def create_app(
    model,
    model_dir=None,
    limits=None,
    examples_dir=None,
    attention=True,
    tokens=None,
    client_limits=None,
    proxies=(),
    user_header="x-forwarded-user",
    audit=None,
    caps=None,
    annotate=None,
):
    """The FastAPI app serving ``model`` (a :class:`oxnet.deploy.runtime.DeployedModel`, or a model
    folder, loaded with :func:`oxnet.deploy.runtime.load_model`).

    Args:
        model_dir: the model's folder (for attention maps from an eager folder and
            ``thresholds_info.json``); taken from ``model`` when it is a folder.
        limits: :class:`ServiceLimits`.
        examples_dir: a folder of images the review page offers to pick from.
        attention: offer DAA attention maps (eager models with the DAA head).
        tokens: an :class:`oxnet.serve.auth.TokenStore` (None: no authentication); ``proxies`` and
            ``user_header``: reverse proxies whose user header is trusted; ``client_limits``: an
            :class:`oxnet.serve.auth.ClientLimits`; ``audit``: an :class:`oxnet.serve.access.AuditLog`
            (:class:`oxnet.serve.access.AccessControl`).
        caps: (findings per class, findings per image) after the operating thresholds (default
            :data:`oxnet.deploy.runtime.MAX_FINDINGS_PER_CLASS`, ``MAX_FINDINGS_PER_IMAGE``).
        annotate: an :class:`oxnet.serve.annotate.AnnotationPool` (or the path of its pool file): adds
            the annotation view at ``/annotate`` and ``/v1/annotate/...`` (:mod:`oxnet.serve.annotate`).
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    if isinstance(model, (str, os.PathLike)):
        from oxnet.deploy.runtime import load_model

        model_dir = os.fspath(model)
        model = load_model(model_dir)
    model_dir = model_dir or getattr(model, "folder", None)
    service = _Service(model, limits or ServiceLimits(), model_dir, examples_dir, attention, caps)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        service.semaphore = asyncio.Semaphore(service.limits.workers)
        yield
        service.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="OXnet",
        summary="Thoracic disease detection on chest X-rays",
        version=str((getattr(model, "info", None) or {}).get("oxnet_version") or ""),
        lifespan=lifespan,
    )
    app.state.service = service
    from .access import AccessControl

    app.add_middleware(
        AccessControl,
        tokens=tokens,
        limits=client_limits,
        proxies=proxies,
        user_header=user_header,
        audit=audit,
    )

    def error(e):
        return JSONResponse({"detail": e.message}, status_code=e.status, headers=e.headers)

    @app.get("/healthz")
    async def healthz():
        """Liveness and load: requests in progress and the limits."""
        return {
            "status": "ok",
            "in_progress": service.pending,
            "served": service.served,
            "rejected": service.rejected,
            "limits": service.limits.as_dict(),
        }

    @app.get("/v1/model")
    async def model_info():
        """Classes, version, training data summary, operating thresholds, attention availability."""
        return service.model_summary()

    @app.post("/v1/predict")
    async def predict(request: Request, format: str = "json", preview: bool = False, attention: bool = False):
        """Findings of one DICOM, PNG or JPEG upload (multipart field ``file``, or the raw body)."""
        if format not in ("json", "dicom-sr"):
            return error(UploadError(400, f"unknown format {format!r}; use json or dicom-sr"))
        try:
            service.admit()
        except UploadError as e:
            return error(e)
        try:
            data, filename = await _read_upload(
                request, service.limits.max_upload_bytes, service.limits.body_timeout
            )
            request.scope.setdefault("state", {})["study"] = hashlib.sha256(data).hexdigest()[:16]
            out = await service.run(service.predict, data, filename, format == "dicom-sr", preview, attention)
        except UploadError as e:
            return error(e)
        finally:
            service.release()
        if format == "dicom-sr":
            uid = out["sop_instance_uid"] or "report"
            return Response(
                out["sr"],
                media_type="application/dicom",
                headers={"Content-Disposition": f'attachment; filename="oxnet_sr_{uid}.dcm"'},
            )
        return out

    @app.get("/v1/examples/{name}")
    async def example(name: str):
        """One of the example images (``--examples``), by its listed name."""
        path = service.examples.get(name)
        if path is None:
            return error(UploadError(404, f"no example image {name!r}"))
        with open(path, "rb") as f:
            kind = sniff_kind(f.read(132), name)
        return FileResponse(path, media_type=_MEDIA.get(kind, "application/octet-stream"))

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(os.path.join(STATIC_DIR, "index.html"), media_type="text/html")

    if annotate is not None:
        from .annotate import AnnotationPool, add_annotation_routes

        pool = annotate if isinstance(annotate, AnnotationPool) else AnnotationPool(annotate)
        add_annotation_routes(app, service, pool)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
