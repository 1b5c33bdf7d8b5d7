"""Benchmark data: a fully labeled training pool and test set, and the supervision mixes drawn from it.

Every mix (full, weak, unlabeled) comes from the same pool with :func:`oxnet.data.omni.make_omni` and
the same seed, so all rows share their box-labeled images and differ only in how the rest is used.
"""
import hashlib
import json
import logging
import os

from oxnet.data.format import read_omni_coco, write_omni_coco
from oxnet.utils.atomic import atomic_write_json, locked

__all__ = ["BenchData", "prepare_data"]

logger = logging.getLogger(__name__)


class BenchData:
    """The prepared pool (``train_pool.json``, all images fully labeled) and ``test.json`` in
    ``folder``, with their image root; :meth:`mix` writes and registers one supervision mix."""

    def __init__(self, folder, image_root, seed=0):
        self.folder, self.image_root, self.seed = folder, image_root, seed
        self.pool_json = os.path.join(folder, "train_pool.json")
        self.test_json = os.path.join(folder, "test.json")
        self.n_train = len(read_omni_coco(self.pool_json)["images"])
        self.n_test = len(read_omni_coco(self.test_json)["images"])
        digest = hashlib.sha1(os.path.abspath(folder).encode()).hexdigest()[:10]
        self._key = f"oxbench_{digest}"

    def test_dataset(self):
        """Register the test set; return its dataset name."""
        from oxnet.data import register_omni_coco

        name = f"{self._key}_test"
        register_omni_coco(name, self.test_json, self.image_root)
        return name

    def mix(self, full, weak, unlabeled):
        """Write (once) and register the training set with these image counts; return its name."""
        from oxnet.data import register_omni_coco
        from oxnet.data.omni import make_omni

        tag = f"f{full}_w{weak}_u{unlabeled}"
        path = os.path.join(self.folder, f"train_{tag}.json")
        if not os.path.exists(path):
            coco, report = make_omni(read_omni_coco(self.pool_json), full, weak, unlabeled, seed=self.seed,
                                     json_file=self.pool_json)
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
        raise ValueError(f"{d['json']}: n_train + n_test = {n_train + n_test} but the file has "
                         f"{len(coco['images'])} images")
    if n_train + n_test < len(coco["images"]):  # a seeded subset, then the split
        import numpy as np

        keep = set(np.random.default_rng(d.get("seed", 0)).permutation(
            [img["id"] for img in coco["images"]])[: n_train + n_test].tolist())
        coco = dict(coco, images=[i for i in coco["images"] if i["id"] in keep],
                    annotations=[a for a in coco["annotations"] if a["image_id"] in keep])
    has_patients = all(img.get("patient_id") for img in coco["images"])
    splits, report = split_by_patient(coco, (n_train, n_test), ("train", "test"), seed=d.get("seed", 0),
                                      image_as_patient=not has_patients, json_file=d["json"])
    logger.info(f"split of {d['json']}: {report}")
    return splits["train"], splits["test"], d["images"]


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
            raise ValueError(f"{out_dir} holds benchmark data made from {done['data']}, not {d}; "
                             "use another --out")
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
        from oxnet.utils.testing import write_toy_dataset

        n_train, n_test = int(d["n_train"]), int(d["n_test"])
        toy = read_omni_coco(write_toy_dataset(folder, n_full=n_train + n_test, n_weak=0, n_unlabeled=0,
                                               size=int(d.get("size", 64)),
                                               num_classes=int(d.get("num_classes", 3)), seed=seed))
        ids = [img["id"] for img in toy["images"]]
        train_ids, test_ids = set(ids[:n_train]), set(ids[n_train:])
        train, test = ({**toy, "images": [i for i in toy["images"] if i["id"] in keep],
                        "annotations": [a for a in toy["annotations"] if a["image_id"] in keep]}
                       for keep in (train_ids, test_ids))
        image_root = os.path.join(folder, "images")
    else:
        train, test, image_root = _split_coco(d, folder)
    write_omni_coco(os.path.join(folder, "train_pool.json"), train)
    write_omni_coco(os.path.join(folder, "test.json"), test)
    atomic_write_json(stamp, {"data": d, "image_root": os.path.abspath(image_root)}, indent=2)
    return BenchData(folder, os.path.abspath(image_root), seed)
