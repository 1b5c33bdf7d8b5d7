"""Benchmark data: a fully labeled training pool and test set, and the supervision mixes drawn from it.

Every mix (full, weak, unlabeled) comes from the same pool with :func:`oxnet.data.omni.make_omni` and
the same seed, so all rows share their box-labeled images and differ only in how the rest is used.
Data of kind "omni" also has real weakly labeled images (``weak_pool.json``), which fill a mix's weak
count first and then its unlabeled count, and an image-level test set (``test_image.json``).
"""

import hashlib
import json
import logging
import os

import numpy as np

from oxnet.data.format import read_omni_coco, write_omni_coco
from oxnet.utils.atomic import atomic_write_json, locked

__all__ = ["BenchData", "prepare_data"]

logger = logging.getLogger(__name__)


class BenchData:
    """The prepared pool (``train_pool.json``, all images fully labeled) and ``test.json`` in
    ``folder``, with their image root; :meth:`mix` writes and registers one supervision mix.

    Optional files: ``weak_pool.json`` (real weakly labeled training images, ``n_extra`` of them) and
    ``test_image.json`` (an image-level test set of weak images, :meth:`image_test_dataset`)."""

    def __init__(self, folder, image_root, seed=0):
        from oxnet.evaluation.inputs import load_ground_truth
        from oxnet.evaluation.normals import image_kinds

        self.folder, self.image_root, self.seed = folder, image_root, seed
        self.pool_json = os.path.join(folder, "train_pool.json")
        self.test_json = os.path.join(folder, "test.json")
        self.weak_json = os.path.join(folder, "weak_pool.json")
        self.image_test_json = os.path.join(folder, "test_image.json")
        self.n_train = len(read_omni_coco(self.pool_json)["images"])
        test = read_omni_coco(self.test_json)
        self.n_test = len(test["images"])
        normal, lesion = image_kinds(load_ground_truth(test))
        #: test images with a lesion box, and normal ones (fully labeled, no box, no positive label)
        self.n_test_lesion, self.n_test_normal = int(lesion.sum()), int(normal.sum())
        self.weak_images = read_omni_coco(self.weak_json)["images"] if os.path.exists(self.weak_json) else []
        self.n_extra = len(self.weak_images)
        self.n_extra_normal = sum(
            1
            for img in self.weak_images
            if img.get("image_labels") and set(img["image_labels"].values()) == {0}
        )
        self.n_image_test = self.n_image_test_positive = 0
        if os.path.exists(self.image_test_json):
            images = read_omni_coco(self.image_test_json)["images"]
            self.n_image_test = len(images)
            self.n_image_test_positive = sum(1 in img.get("image_labels", {}).values() for img in images)
        digest = hashlib.sha1(os.path.abspath(folder).encode()).hexdigest()[:10]
        self._key = f"oxbench_{digest}"

    def test_dataset(self):
        """Register the test set; return its dataset name."""
        from oxnet.data import register_omni_coco

        name = f"{self._key}_test"
        register_omni_coco(name, self.test_json, self.image_root)
        return name

    def image_test_dataset(self):
        """Register the image-level test set; return its dataset name (None when there is none)."""
        from oxnet.data import register_omni_coco

        if not os.path.exists(self.image_test_json):
            return None
        name = f"{self._key}_test_image"
        register_omni_coco(name, self.image_test_json, self.image_root)
        return name

    def mix(self, full, weak, unlabeled):
        """Write (once) and register the training set with these image counts; return its name.

        The real weak images (``weak_pool.json``) fill ``weak`` first, then ``unlabeled`` (without
        their labels), in a seeded order; :func:`oxnet.data.omni.make_omni` draws the rest from the
        box pool."""
        from oxnet.data import register_omni_coco
        from oxnet.data.omni import make_omni

        tag = f"f{full}_w{weak}_u{unlabeled}"
        path = os.path.join(self.folder, f"train_{tag}.json")
        if not os.path.exists(path):
            real_weak = min(weak, self.n_extra)
            real_unlabeled = min(unlabeled, self.n_extra - real_weak)
            coco, report = make_omni(
                read_omni_coco(self.pool_json),
                full,
                weak - real_weak,
                unlabeled - real_unlabeled,
                seed=self.seed,
                json_file=self.pool_json,
            )
            if real_weak or real_unlabeled:
                order = np.random.default_rng(self.seed).permutation(self.n_extra)
                extra = [dict(self.weak_images[j]) for j in order[:real_weak]]
                for j in order[real_weak : real_weak + real_unlabeled]:
                    img = dict(self.weak_images[j], supervision="unlabeled")
                    img.pop("image_labels", None)
                    extra.append(img)
                coco = dict(coco, images=coco["images"] + extra)
                report.update(real_weak=real_weak, real_weak_as_unlabeled=real_unlabeled)
            write_omni_coco(path, coco)
            logger.info(f"training set {tag}: {report}")
        name = f"{self._key}_train_{tag}"
        register_omni_coco(name, path, self.image_root)
        return name


def _split_coco(d, folder):
    from oxnet.data.importers import load_coco
    from oxnet.data.split import split_by_patient

    coco, _ = load_coco(d["json"], images=d["images"])
    n_train, n_test = int(d["n_train"]), int(d["n_test"])
    if n_train + n_test > len(coco["images"]):
        raise ValueError(
            f"{d['json']}: n_train + n_test = {n_train + n_test} but the file has "
            f"{len(coco['images'])} images"
        )
    if n_train + n_test < len(coco["images"]):  # a seeded subset, then the split
        import numpy as np

        keep = set(
            np.random.default_rng(d.get("seed", 0))
            .permutation([img["id"] for img in coco["images"]])[: n_train + n_test]
            .tolist()
        )
        coco = dict(
            coco,
            images=[i for i in coco["images"] if i["id"] in keep],
            annotations=[a for a in coco["annotations"] if a["image_id"] in keep],
        )
    has_patients = all(img.get("patient_id") for img in coco["images"])
    splits, report = split_by_patient(
        coco,
        (n_train, n_test),
        ("train", "test"),
        seed=d.get("seed", 0),
        image_as_patient=not has_patients,
        json_file=d["json"],
    )
    logger.info(f"split of {d['json']}: {report}")
    return splits["train"], splits["test"], d["images"]


def _label_table_header(csv_file):
    import csv

    from oxnet.data.importers.common import open_text

    with open_text(csv_file) as f:
        return [h.strip() for h in next(csv.reader(f), [])]


def _largest_remainder(n, sizes):
    """Split ``n`` over groups of ``sizes`` in proportion (largest remainder; ties: the earlier group)."""
    sizes = np.asarray(sizes, np.float64)
    exact = n * sizes / sizes.sum()
    counts = np.floor(exact).astype(int)
    for i in sorted(range(len(sizes)), key=lambda i: -(exact[i] - counts[i]))[: n - counts.sum()]:
        counts[i] += 1
    return counts


def _hold_out(images, n, strata, rng, what):
    """Draw ``n`` of ``images`` at random, stratified by ``strata`` (a value per image)."""
    if n > len(images):
        raise ValueError(f"{what}: {n} test images asked for but only {len(images)} are there")
    groups = {}
    for img, s in zip(images, strata):
        groups.setdefault(s, []).append(img)
    keys = sorted(groups, key=str)
    picked = []
    for key, k in zip(keys, _largest_remainder(n, [len(groups[key]) for key in keys])):
        members = groups[key]
        picked += [members[j] for j in sorted(rng.permutation(len(members))[:k])]
    return picked


def _load_weak_table(w, i, classes, seed):
    """One ``weak`` entry of an omni spec: (training images, held-out normal, held-out positive,
    report), images as :func:`load_labels_csv` returns them with labels in the classes' names."""
    from oxnet.data.importers.class_map import ClassMap, apply_class_map
    from oxnet.data.importers.common import read_csv_table
    from oxnet.data.importers.labels_csv import load_labels_csv

    what = f"data.weak[{i}] ({w['csv']})"
    path_column = w.get("path_column", "file_name")
    columns = w.get("label_columns")
    if columns is None:
        header = _label_table_header(w["csv"])
        columns = [c for c in classes if c in header]
        if not columns:
            raise ValueError(
                f"{what}: no column is named like a class ({', '.join(classes)}); "
                "name them with label_columns"
            )
    mapping = dict(columns) if isinstance(columns, dict) else {c: c for c in columns}
    unknown = sorted(set(mapping.values()) - set(classes))
    if unknown:
        raise ValueError(
            f"{what}: label classes {unknown} are not classes of the boxes ({', '.join(classes)})"
        )
    coco, report = load_labels_csv(
        w["csv"],
        w["images"],
        path_column=path_column,
        label_columns=list(mapping),
        patient_column=w.get("patient_column"),
    )
    renamed = {c: t for c, t in mapping.items() if c != t}
    if renamed:
        coco, _ = apply_class_map(coco, ClassMap(renamed, path=what))
    images = coco["images"]
    if w.get("stratify"):
        table = read_csv_table(w["csv"], {"path": [path_column], "group": [w["stratify"]]})
        group_of = dict(zip(table["path"], table["group"]))
        strata = [group_of[img["file_name"]] for img in images]
    else:
        strata = [""] * len(images)
    n_normal, n_positive = int(w.get("test_normal", 0)), int(w.get("test_positive", 0))
    if n_normal and sorted(set(mapping.values())) != sorted(classes):
        raise ValueError(
            f"{what}: test_normal needs a label column for every class ({', '.join(classes)}), "
            "or a normal image could have a lesion of a class the table does not name"
        )
    normal = [
        j
        for j, img in enumerate(images)
        if len(img["image_labels"]) == len(classes) and set(img["image_labels"].values()) == {0}
    ]
    positive = [j for j, img in enumerate(images) if 1 in img["image_labels"].values()]
    rng = np.random.default_rng(w.get("seed", seed))
    held_normal = _hold_out(normal, n_normal, [strata[j] for j in normal], rng, f"{what} normal")
    held_positive = _hold_out(positive, n_positive, [strata[j] for j in positive], rng, f"{what} positive")
    held = set(held_normal) | set(held_positive)
    held_patients = {images[j].get("patient_id") for j in held} - {None}
    train = [
        j
        for j in range(len(images))
        if j not in held and images[j].get("patient_id", None) not in held_patients
    ]
    report = {
        "csv": w["csv"],
        "rows": report["rows"],
        "normal": len(normal),
        "positive": len(positive),
        "test_normal": len(held_normal),
        "test_positive": len(held_positive),
        "dropped_same_patient_as_test": len(images) - len(held) - len(train),
        "train": len(train),
        "train_normal": len(set(train) & set(normal)),
        "train_positive": len(set(train) & set(positive)),
    }
    if w.get("stratify"):
        report["test_by_" + w["stratify"]] = {
            str(s): [sum(strata[j] == s for j in held_normal), sum(strata[j] == s for j in held_positive)]
            for s in sorted(set(strata), key=str)
        }
    return (
        [images[j] for j in train],
        [images[j] for j in held_normal],
        [images[j] for j in held_positive],
        report,
    )


def _prepare_omni(d, folder):
    """Kind "omni" (see :mod:`oxnet.bench.presets`): (train, test, image test, weak pool, image root,
    report)."""
    from oxnet.data.importers.class_map import ClassMap, apply_class_map

    seed = int(d.get("seed", 0))
    train, test, box_images = _split_coco(d["boxes"], folder)
    names = [c["name"] for c in sorted(train["categories"], key=lambda c: c["id"])]
    mapping = (
        {n: d["merge_classes"] for n in names} if d.get("merge_classes") else dict(d.get("class_map") or {})
    )
    if mapping:
        class_map = ClassMap(mapping, path="data.class_map")
        train, test = (apply_class_map(part, class_map)[0] for part in (train, test))
    classes = [c["name"] for c in sorted(train["categories"], key=lambda c: c["id"])]
    without_boxes = d["boxes"].get("without_boxes", "normal")
    if without_boxes not in ("normal", "uncertain"):
        raise ValueError(f"data.boxes.without_boxes must be 'normal' or 'uncertain', got {without_boxes!r}")
    n_uncertain = 0
    if without_boxes == "uncertain":  # a box image without a box is not a normal image
        for part in (train, test):
            boxed = {a["image_id"] for a in part["annotations"]}
            part["images"] = [
                img if img["id"] in boxed else dict(img, image_labels={c: -1 for c in classes})
                for img in part["images"]
            ]
            n_uncertain += sum(img["id"] not in boxed for img in part["images"])
    root = os.path.commonpath(
        [os.path.abspath(box_images)] + [os.path.abspath(w["images"]) for w in d["weak"]]
    )

    def relative(images, file_name):
        return os.path.relpath(os.path.join(os.path.abspath(images), file_name), root)

    for part in (train, test):
        part["images"] = [
            dict(img, file_name=relative(box_images, img["file_name"])) for img in part["images"]
        ]
    box_files = {img["file_name"] for part in (train, test) for img in part["images"]}
    next_id = max(img["id"] for part in (train, test) for img in part["images"]) + 1
    weak, held_normal, held_positive, reports = [], [], [], []
    for i, w in enumerate(d["weak"]):
        t, n, p, report = _load_weak_table(w, i, classes, seed)
        for group, out in ((t, weak), (n, held_normal), (p, held_positive)):
            for img in group:
                img = dict(img, id=next_id, file_name=relative(w["images"], img["file_name"]))
                if img["file_name"] in box_files:
                    raise ValueError(f"data.weak[{i}]: image {img['file_name']} is also a box-labeled image")
                next_id += 1
                out.append(img)
        reports.append(report)
    seen = {}
    for img in weak + held_normal + held_positive:
        if img["file_name"] in seen:
            raise ValueError(f"image {img['file_name']} is in two weak label tables")
        seen[img["file_name"]] = img
    categories = train["categories"]
    normals_full = []
    for img in held_normal:  # a healthy chest: fully labeled, no box
        img = dict(img, supervision="full")
        img.pop("image_labels", None)
        normals_full.append(img)
    n_box_test = len(test["images"])
    test = dict(test, images=test["images"] + normals_full)
    image_test = {
        "info": {"description": "held-out images with image labels only (image-level test set)"},
        "images": held_normal + held_positive,
        "annotations": [],
        "categories": categories,
    }
    weak_pool = {
        "info": {"description": "weakly labeled training images"},
        "images": weak,
        "annotations": [],
        "categories": categories,
    }
    report = {
        "classes": classes,
        "box_train": len(train["images"]),
        "box_test": n_box_test,
        "test_normal": len(normals_full),
        "image_test": len(image_test["images"]),
        "image_test_positive": len(held_positive),
        "weak_train": len(weak),
        "box_images_without_boxes_uncertain": n_uncertain,
        "weak_tables": reports,
    }
    logger.info(f"omni data: {report}")
    return train, test, image_test, weak_pool, root, report


def prepare_data(spec, out_dir):
    """Build (or reuse) the pool and test set of a spec under ``out_dir/data``; return :class:`BenchData`.
    Processes sharing ``out_dir`` (``--shard``) build it once, in turn."""
    os.makedirs(out_dir, exist_ok=True)
    with locked(os.path.join(out_dir, "data")):
        return _prepare_data(spec, out_dir)


def _prepare_data(spec, out_dir):
    d = spec["data"]
    folder = os.path.join(out_dir, "data")
    stamp = os.path.join(folder, "spec.json")
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            done = json.load(f)
        if done["data"] != d:
            raise ValueError(
                f"{out_dir} holds benchmark data made from {done['data']}, not {d}; use another --out"
            )
        return BenchData(folder, done["image_root"], d.get("seed", 0))
    os.makedirs(folder, exist_ok=True)
    kind, seed = d["kind"], int(d.get("seed", 0))
    if kind == "synthetic":
        from oxnet.data.synthetic import generate_split

        n_train, n_test, size = int(d["n_train"]), int(d["n_test"]), int(d.get("size", 512))
        train = generate_split(folder, "train", n_full=n_train, size=size, seed=seed)
        test = generate_split(folder, "test", n_full=n_test, size=size, seed=seed, start_index=n_train)
        image_root = os.path.join(folder, "images")
    elif kind == "toy":
        from oxnet.data.toy import write_toy_dataset

        n_train, n_test = int(d["n_train"]), int(d["n_test"])
        toy = read_omni_coco(
            write_toy_dataset(
                folder,
                n_full=n_train + n_test,
                n_weak=0,
                n_unlabeled=0,
                size=int(d.get("size", 64)),
                num_classes=int(d.get("num_classes", 3)),
                seed=seed,
            )
        )
        ids = [img["id"] for img in toy["images"]]
        train_ids, test_ids = set(ids[:n_train]), set(ids[n_train:])
        train, test = (
            {
                **toy,
                "images": [i for i in toy["images"] if i["id"] in keep],
                "annotations": [a for a in toy["annotations"] if a["image_id"] in keep],
            }
            for keep in (train_ids, test_ids)
        )
        image_root = os.path.join(folder, "images")
    elif kind == "omni":
        train, test, image_test, weak_pool, image_root, report = _prepare_omni(d, folder)
        write_omni_coco(os.path.join(folder, "weak_pool.json"), weak_pool)
        if image_test["images"]:
            write_omni_coco(os.path.join(folder, "test_image.json"), image_test)
    else:
        train, test, image_root = _split_coco(d, folder)
    write_omni_coco(os.path.join(folder, "train_pool.json"), train)
    write_omni_coco(os.path.join(folder, "test.json"), test)
    stamp_data = {"data": d, "image_root": os.path.abspath(image_root)}
    if kind == "omni":
        stamp_data["report"] = report
    atomic_write_json(stamp, stamp_data, indent=2)
    return BenchData(folder, os.path.abspath(image_root), seed)
