"""The annotation view of the service (``python -m oxnet.serve --annotate POOL_JSON``): a radiologist
turns the model's proposals into boxes for the images of a pool, and each save writes the image as fully
supervised into an OXnet-COCO annotations file that ``train_net.py`` trains on directly.

The pool is an OXnet-COCO file of weak and/or unlabeled images (full images in it are not queued); its
file names are relative to the pool's folder or to ``image_root``. An advice file (``python -m
oxnet.advise``: a JSON object whose ``"images"`` list has, per image, ``"image_id"`` or ``"file_name"``
and ``"rank"``, ``"score"``, ``"reason"``) makes the queue the advised images in rank order.

Routes (behind the service's access control; :func:`add_annotation_routes`):

* ``GET /annotate``: the page (``static/annotate.html``; it asks for the API token as the review page does).
* ``GET /v1/annotate/queue``: the categories and the queued images: id, file name, weak labels, advice
  (rank, score, reason), whether and by whom it was saved, and its revision.
* ``GET /v1/annotate/images/{id}``: the image as an 8-bit grey PNG.
* ``GET /v1/annotate/images/{id}/proposals``: the model's boxes at its operating points (after the caps).
* ``GET /v1/annotate/images/{id}/annotation``: the saved boxes and revision (revision 0: never saved).
* ``POST /v1/annotate/images/{id}``: save ``{"boxes": [{"category": NAME or ID, "box": [x, y, w, h],
  "source": "proposal" | "drawn"}, ...], "no_finding": bool, "base_revision": N}``. Boxes are in the
  image's pixels. A save whose ``base_revision`` is not the image's current revision gets 409 naming who
  saved it and when; bad boxes get 422 naming the image and the problem; a service that cannot name its
  user (no authentication) refuses saves with 403.
* ``GET /v1/annotate/export.coco``: the saved images and boxes as a plain COCO file (images, annotations,
  categories) for other annotation tools.

The annotations file (default ``<pool>.annotations.json`` beside the pool) holds the pool's categories and
one ``"supervision": "full"`` entry per saved image (the pool's entry with its image labels derived from
the boxes: 1 for a class with a box, 0 otherwise; "no finding" is a full image without boxes) and
``"review": {"by", "at", "revision", "no_finding"}``. It is rewritten atomically under a file lock, and
validated (:func:`oxnet.data.format.validate_omni_coco`) before every write.
"""

import asyncio
import copy
import json
import logging
import math
import os
import threading
from datetime import datetime, timezone

from oxnet.data.format import (
    BOX_TOLERANCE,
    OmniFormatError,
    is_finite_number,
    read_omni_coco,
    validate_omni_coco,
    write_omni_coco,
)
from oxnet.utils.atomic import locked

__all__ = ["AnnotationError", "AnnotationPool", "add_annotation_routes", "default_annotations_path"]

logger = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: Where a box of the annotations file came from.
BOX_SOURCES = ("proposal", "drawn")
#: Most boxes one save may carry.
MAX_BOXES = 200


class AnnotationError(Exception):
    """A request the annotation view refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def default_annotations_path(pool_json):
    """``<pool>.annotations.json`` beside the pool file (``pool.json`` -> ``pool.annotations.json``)."""
    base, ext = os.path.splitext(os.fspath(pool_json))
    return base + ".annotations" + (ext or ".json")


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_advice(path, images, by_file):
    """``{image key: {"rank", "score", "reason"}}`` of an advice file, checked against the pool."""
    try:
        with open(path, encoding="utf-8") as f:
            advice = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"advice file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({e})") from None
    entries = advice.get("images") if isinstance(advice, dict) else None
    if not isinstance(entries, list):
        raise ValueError(
            f"{path}: expected a JSON object with a list under 'images' (python -m oxnet.advise)"
        )
    out = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: images[{i}] must be an object, got {type(entry).__name__}")
        if "image_id" in entry:
            key = str(entry["image_id"])
            if key not in images:
                raise ValueError(f"{path}: images[{i}]: image_id {entry['image_id']!r} is not in the pool")
        elif "file_name" in entry:
            key = by_file.get(entry["file_name"])
            if key is None:
                raise ValueError(f"{path}: images[{i}]: file_name {entry['file_name']!r} is not in the pool")
        else:
            raise ValueError(f"{path}: images[{i}] has neither 'image_id' nor 'file_name'")
        rank = entry.get("rank", i + 1)
        if not is_finite_number(rank):
            raise ValueError(f"{path}: images[{i}]: 'rank' must be a number, got {rank!r}")
        score = entry.get("score")
        out.setdefault(
            key,
            {
                "rank": rank,
                "score": float(score) if is_finite_number(score) else None,
                "reason": str(entry.get("reason") or ""),
            },
        )
    return out


class AnnotationPool:
    """The pool, its queue (advice order or pool order) and the annotations file.

    Args:
        pool_json: an OXnet-COCO file of weak and/or unlabeled images.
        image_root: the folder its file names are relative to (default: the pool's folder).
        advice: an advice JSON (``python -m oxnet.advise``) ordering the queue, or None.
        out: the annotations file (default :func:`default_annotations_path`).
    """

    def __init__(self, pool_json, image_root=None, advice=None, out=None):
        self.pool_json = os.path.abspath(os.fspath(pool_json))
        folder = os.path.dirname(self.pool_json)
        self.image_root = os.path.abspath(os.fspath(image_root)) if image_root else folder
        self.out = os.path.abspath(os.fspath(out)) if out else default_annotations_path(self.pool_json)
        if os.path.abspath(self.out) == self.pool_json:
            raise ValueError(f"the annotations file must not be the pool itself ({self.pool_json})")
        pool = read_omni_coco(self.pool_json)
        validate_omni_coco(pool, self.pool_json, self.image_root, check_files=True)
        self.categories = sorted(
            ({"id": c["id"], "name": c["name"]} for c in pool["categories"]), key=lambda c: c["id"]
        )
        self.category_by_name = {c["name"]: c for c in self.categories}
        self.category_by_id = {c["id"]: c for c in self.categories}
        self.images, self.order = {}, {}
        for i, img in enumerate(pool["images"]):
            key = str(img["id"])
            if key in self.images:
                raise ValueError(
                    f"{self.pool_json}: image ids {img['id']!r} and {self.images[key]['id']!r} read the same"
                )
            self.images[key] = img
            self.order[key] = i
        by_file = {img["file_name"]: key for key, img in self.images.items()}
        self.advice = _read_advice(advice, self.images, by_file) if advice else None
        queued = [k for k, img in self.images.items() if img["supervision"] != "full"]
        if self.advice is not None:
            skipped = [k for k in self.advice if self.images[k]["supervision"] == "full"]
            if skipped:
                logger.warning(
                    "%d advised image(s) already have boxes in the pool and are not queued (ids %s)",
                    len(skipped),
                    ", ".join(skipped[:5]),
                )
            queued = sorted(
                (k for k in self.advice if k not in skipped),
                key=lambda k: (self.advice[k]["rank"], self.order[k]),
            )
        self.queue = queued
        self.queued = set(queued)
        self.skipped_full = sum(img["supervision"] == "full" for img in self.images.values())
        self._lock = threading.Lock()
        if os.path.exists(self.out):
            self._check_saved(self.read_saved())

    # -- the annotations file ------------------------------------------------------------------------
    def _empty(self):
        return {"images": [], "annotations": [], "categories": copy.deepcopy(self.categories)}

    def read_saved(self):
        """The annotations file as a dict (an empty one while nothing was saved)."""
        if not os.path.exists(self.out):
            return self._empty()
        return read_omni_coco(self.out)

    def _check_saved(self, saved):
        validate_omni_coco(saved, self.out, self.image_root, check_files=False)
        cats = sorted((c["id"], c["name"]) for c in saved["categories"])
        if cats != [(c["id"], c["name"]) for c in self.categories]:
            raise ValueError(
                f"{self.out}: its categories {cats} are not the pool's "
                f"{[(c['id'], c['name']) for c in self.categories]}; give another --annotations-out"
            )

    def saved_images(self, saved=None):
        """``{image key: (image entry, [annotations])}`` of the annotations file."""
        saved = saved if saved is not None else self.read_saved()
        out = {str(img["id"]): (img, []) for img in saved["images"]}
        for ann in saved["annotations"]:
            entry = out.get(str(ann["image_id"]))
            if entry is not None:
                entry[1].append(ann)
        return out

    # -- requests ------------------------------------------------------------------------------------
    def image(self, key):
        """The pool entry of a queued image, else 404."""
        img = self.images.get(key)
        if img is None:
            raise AnnotationError(
                404, f"no image with id {key!r} in the pool {os.path.basename(self.pool_json)}"
            )
        return img

    def image_path(self, key):
        return os.path.join(self.image_root, self.image(key)["file_name"])

    @staticmethod
    def _where(img):
        return f"image {img['id']} ({img['file_name']})"

    def annotation(self, key):
        """The saved state of one image: revision (0: never saved), who, when, boxes, no finding."""
        img = self.image(key)
        entry = self.saved_images().get(key)
        if entry is None:
            return {
                "image_id": img["id"],
                "revision": 0,
                "by": None,
                "at": None,
                "no_finding": False,
                "boxes": [],
            }
        saved, anns = entry
        review = saved.get("review") or {}
        return {
            "image_id": img["id"],
            "revision": int(review.get("revision", 1)),
            "by": review.get("by"),
            "at": review.get("at"),
            "no_finding": not anns,
            "boxes": [
                {
                    "category": self.category_by_id[a["category_id"]]["name"],
                    "category_id": a["category_id"],
                    "box": [float(v) for v in a["bbox"]],
                    "source": a.get("source", "drawn"),
                }
                for a in anns
            ],
        }

    def queue_items(self):
        saved = self.saved_images()
        items = []
        for key in self.queue:
            img = self.images[key]
            entry = saved.get(key)
            review = (entry[0].get("review") or {}) if entry else {}
            advice = (self.advice or {}).get(key, {})
            items.append(
                {
                    "id": img["id"],
                    "file_name": img["file_name"],
                    "width": img["width"],
                    "height": img["height"],
                    "supervision": img["supervision"],
                    "image_labels": img.get("image_labels", {}),
                    "rank": advice.get("rank"),
                    "score": advice.get("score"),
                    "reason": advice.get("reason"),
                    "status": "reviewed" if entry else "not reviewed",
                    "revision": int(review.get("revision", 1)) if entry else 0,
                    "reviewed_by": review.get("by"),
                    "reviewed_at": review.get("at"),
                    "boxes": len(entry[1]) if entry else 0,
                }
            )
        return items

    def check_save(self, key, body):
        """The boxes of a save request as ``[(category entry, [x, y, w, h], source)]``, the no-finding flag
        and the base revision; 422 naming the image and the problem."""
        img = self.image(key)
        where = self._where(img)
        if not isinstance(body, dict):
            raise AnnotationError(
                422, f"{where}: the request must be a JSON object with 'boxes' or 'no_finding'"
            )
        base = body.get("base_revision")
        if not isinstance(base, int) or isinstance(base, bool) or base < 0:
            raise AnnotationError(
                422,
                f"{where}: 'base_revision' must be the revision you loaded (0 for an image not saved "
                f"before), got {base!r}",
            )
        no_finding = body.get("no_finding", False)
        if not isinstance(no_finding, bool):
            raise AnnotationError(422, f"{where}: 'no_finding' must be true or false, got {no_finding!r}")
        boxes = body.get("boxes", [])
        if not isinstance(boxes, list):
            raise AnnotationError(422, f"{where}: 'boxes' must be a list, got {type(boxes).__name__}")
        if no_finding and boxes:
            raise AnnotationError(
                422, f"{where}: marked 'no finding' but {len(boxes)} box(es) given; send one or the other"
            )
        if not no_finding and not boxes:
            raise AnnotationError(
                422, f"{where}: no boxes: draw the findings, or mark the image 'no finding' (no_finding=true)"
            )
        if len(boxes) > MAX_BOXES:
            raise AnnotationError(422, f"{where}: {len(boxes)} boxes; at most {MAX_BOXES} per image")
        W, H, t = img["width"], img["height"], BOX_TOLERANCE
        out = []
        for i, b in enumerate(boxes, 1):
            if not isinstance(b, dict):
                raise AnnotationError(422, f"{where}: box {i} must be an object with 'category' and 'box'")
            name = b.get("category", b.get("category_id"))
            cat = (
                self.category_by_name.get(name)
                if isinstance(name, str)
                else self.category_by_id.get(name)
                if isinstance(name, int) and not isinstance(name, bool)
                else None
            )
            if cat is None:
                known = ", ".join(c["name"] for c in self.categories)
                raise AnnotationError(
                    422, f"{where}: box {i} has unknown category {name!r} (the pool's: {known})"
                )
            xywh = b.get("box")
            if not isinstance(xywh, list) or len(xywh) != 4 or not all(is_finite_number(v) for v in xywh):
                raise AnnotationError(
                    422, f"{where}: box {i} must be 4 finite numbers [x, y, w, h], got {xywh!r}"
                )
            x, y, w, h = (float(v) for v in xywh)
            if w <= 0 or h <= 0:
                raise AnnotationError(422, f"{where}: box {i} {xywh} has a non-positive width or height")
            if x < -t or y < -t or x + w > W + t or y + h > H + t:
                raise AnnotationError(
                    422, f"{where}: box {i} {xywh} lies outside the {W:g}x{H:g} image by more than {t:g} px"
                )
            # within the tolerance: clip to the image
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(float(W), x + w), min(float(H), y + h)
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                raise AnnotationError(422, f"{where}: box {i} {xywh} has no area inside the image")
            source = b.get("source", "drawn")
            if source not in BOX_SOURCES:
                raise AnnotationError(
                    422, f"{where}: box {i} has unknown source {source!r} (proposal or drawn)"
                )
            box = [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)]
            out.append((cat, box, source))
        return out, no_finding, base

    def save(self, key, body, user, now=None):
        """Write one image as fully supervised (see the module doc); returns its new revision, who and when.

        Raises:
            AnnotationError: 403 without a user, 404, 409 on a stale ``base_revision``, 422 on bad boxes.
        """
        img = self.image(key)
        if not user:
            raise AnnotationError(403, "saving needs a known user")
        boxes, no_finding, base = self.check_save(key, body)
        now = now or _now()
        with self._lock, locked(self.out, timeout=30):
            saved = self.read_saved()
            self._check_saved(saved)
            current = self.saved_images(saved).get(key)
            review = (current[0].get("review") or {}) if current else {}
            revision = int(review.get("revision", 1)) if current else 0
            if base != revision:
                if current:
                    who = f"saved by {review.get('by', '?')} at {review.get('at', '?')} (revision {revision})"
                else:
                    who = "not saved yet (revision 0)"
                raise AnnotationError(
                    409,
                    f"conflict: {self._where(img)} was {who}, but your boxes start from revision {base}; "
                    "nothing was overwritten: reload the image to see the saved boxes, then save again",
                )
            names = {cat["name"] for cat, _, _ in boxes}
            entry = copy.deepcopy(img)
            entry["supervision"] = "full"
            entry["image_labels"] = {c["name"]: int(c["name"] in names) for c in self.categories}
            entry["review"] = {"by": user, "at": now, "revision": revision + 1, "no_finding": no_finding}
            images = [e for e in saved["images"] if str(e["id"]) != key] + [entry]
            images.sort(key=lambda e: (self.order.get(str(e["id"]), math.inf), str(e["id"])))
            kept = [a for a in saved["annotations"] if str(a["image_id"]) != key]
            next_id = max((a["id"] for a in saved["annotations"] if isinstance(a["id"], int)), default=0) + 1
            for i, (cat, box, source) in enumerate(boxes):
                kept.append(
                    {
                        "id": next_id + i,
                        "image_id": img["id"],
                        "category_id": cat["id"],
                        "bbox": box,
                        "area": round(box[2] * box[3], 2),
                        "iscrowd": 0,
                        "source": source,
                    }
                )
            saved.update(images=images, annotations=kept, categories=copy.deepcopy(self.categories))
            try:
                write_omni_coco(self.out, saved, image_root=self.image_root)
            except OmniFormatError as e:  # the checks above should make this unreachable
                raise AnnotationError(
                    422, f"{self._where(img)}: the annotations file would be invalid: {e}"
                ) from e
        return {"image_id": img["id"], "revision": revision + 1, "by": user, "at": now, "boxes": len(boxes)}

    def export_coco(self):
        """The saved images and boxes as a plain COCO dict (images, annotations, categories)."""
        saved = self.read_saved()
        keys = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
        return {
            "images": [
                {"id": e["id"], "file_name": e["file_name"], "width": e["width"], "height": e["height"]}
                for e in saved["images"]
            ],
            "annotations": [{k: a[k] for k in keys if k in a} for a in saved["annotations"]],
            "categories": [{"id": c["id"], "name": c["name"], "supercategory": ""} for c in self.categories],
        }


def _user(request):
    """The authenticated user of a request (token name or proxy user), else None: without authentication
    the access control names a client by its address only."""
    client = (request.scope.get("state") or {}).get("client")
    if not client or client == "open" or client.startswith("address:"):
        return None
    return client


NO_USER = (
    "saving boxes needs a known user, to record who saved each image: this service runs without "
    "authentication. Start it with --token-file (python -m oxnet.serve.tokens add NAME --file FILE) or "
    "behind a --trusted-proxy that names the user"
)


def add_annotation_routes(app, service, pool):
    """Add the annotation view's routes (see the module doc) for ``pool`` (an :class:`AnnotationPool`)
    to ``app``; ``service`` is the app's model service (its model, operating points, caps and
    inference threads give the proposals)."""
    from fastapi import Request
    from fastapi.responses import FileResponse, JSONResponse, Response

    from oxnet.utils.palette import class_palette

    app.state.annotation_pool = pool
    proposals_cache = {}

    def error(e):
        return JSONResponse({"detail": e.message}, status_code=e.status)

    model_colors = dict(zip(service.class_names, class_palette(len(service.class_names))))
    extra = class_palette(len(service.class_names) + len(pool.categories))[len(service.class_names) :]
    colors, spare = {}, iter(extra)
    for c in pool.categories:
        colors[c["name"]] = model_colors.get(c["name"]) or next(spare)

    def key_of(image_id):
        key = str(image_id)
        pool.image(key)
        return key

    @app.get("/annotate", include_in_schema=False)
    async def page():
        """The annotation view (open like the review page: it holds nothing private and asks for the
        API token; :data:`oxnet.serve.access.OPEN_PATHS`)."""
        return FileResponse(os.path.join(STATIC_DIR, "annotate.html"), media_type="text/html")

    @app.get("/v1/annotate/queue")
    async def queue(request: Request):
        """The categories and the queued images with their advice and review status."""
        items = await asyncio.to_thread(pool.queue_items)
        user = _user(request)
        return {
            "pool": os.path.basename(pool.pool_json),
            "annotations_file": os.path.basename(pool.out),
            "categories": [dict(c, color=colors[c["name"]]) for c in pool.categories],
            "advised": pool.advice is not None,
            "images": items,
            "reviewed": sum(i["status"] == "reviewed" for i in items),
            "skipped_full": pool.skipped_full,
            "user": user,
            "can_save": user is not None,
            "save_refusal": None if user else NO_USER,
        }

    @app.get("/v1/annotate/images/{image_id}")
    async def image(image_id: str):
        """The image as an 8-bit grey PNG."""
        try:
            key = key_of(image_id)
            data = await asyncio.to_thread(_png_of, pool.image_path(key), pool._where(pool.image(key)))
        except AnnotationError as e:
            return error(e)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/v1/annotate/images/{image_id}/annotation")
    async def annotation(image_id: str):
        """The saved boxes of the image and its revision (0: not saved yet)."""
        try:
            return await asyncio.to_thread(pool.annotation, key_of(image_id))
        except AnnotationError as e:
            return error(e)

    @app.get("/v1/annotate/images/{image_id}/proposals")
    async def proposals(image_id: str):
        """The model's boxes for the image at its operating points (after the caps)."""
        try:
            key = key_of(image_id)
            if key not in proposals_cache:
                service.admit()
                try:
                    proposals_cache[key] = await service.run(_propose, service, pool, key)
                finally:
                    service.release()
        except Exception as e:  # AnnotationError, or the service's UploadError (busy: 503)
            if not hasattr(e, "status"):
                raise
            return JSONResponse(
                {"detail": e.message}, status_code=e.status, headers=getattr(e, "headers", {})
            )
        return proposals_cache[key]

    @app.post("/v1/annotate/images/{image_id}")
    async def save(image_id: str, request: Request):
        """Save the image's boxes (or no finding) as fully supervised, with who and when."""
        user = _user(request)
        try:
            key = key_of(image_id)
            if user is None:
                raise AnnotationError(403, NO_USER)
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise AnnotationError(
                    422, f"{pool._where(pool.image(key))}: the request body is not JSON"
                ) from None
            return await asyncio.to_thread(pool.save, key, body, user)
        except AnnotationError as e:
            return error(e)

    @app.get("/v1/annotate/export.coco")
    async def export():
        """The saved boxes as a plain COCO file (CVAT, Label Studio)."""
        coco = await asyncio.to_thread(pool.export_coco)
        name = os.path.splitext(os.path.basename(pool.out))[0] + ".coco.json"
        return JSONResponse(coco, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _png_of(path, where):
    import cv2

    from oxnet.data.io import ImageReadError, read_raw, scale_to_uint8

    try:
        grey = scale_to_uint8(read_raw(path))
    except ImageReadError as e:
        raise AnnotationError(422, f"cannot read {where}: {e.problem}") from e
    ok, buf = cv2.imencode(".png", grey)
    if not ok:
        raise AnnotationError(500, f"could not encode {where} as PNG")
    return buf.tobytes()


def _propose(service, pool, key):
    """The proposals of one pool image (in an inference thread)."""
    from oxnet.data.io import ImageReadError, read_raw

    img = pool.image(key)
    try:
        raw = read_raw(pool.image_path(key))
    except ImageReadError as e:
        raise AnnotationError(422, f"cannot read {pool._where(img)}: {e.problem}") from e
    with service.model_lock:
        result = service.model.predict(raw)
    from oxnet.deploy.runtime import apply_thresholds

    thresholds = service.thresholds()
    kept = apply_thresholds(result, thresholds, *service.caps)
    out, dropped = [], set()
    for d in kept["detections"]:
        cat = pool.category_by_name.get(d["category_name"])
        if cat is None:
            dropped.add(d["category_name"])
            continue
        out.append(
            {
                "category": cat["name"],
                "category_id": cat["id"],
                "score": round(float(d["score"]), 4),
                "box": [round(float(v), 2) for v in d["bbox"]],
                "operating_threshold": (thresholds or {}).get(d["category_name"]),
            }
        )
    return {
        "image_id": img["id"],
        "proposals": out,
        "calibrated": bool(thresholds),
        "dropped_classes": sorted(dropped),
        "note": None
        if not dropped
        else f"the model's classes {sorted(dropped)} are not categories of the pool: no proposals of them",
    }
