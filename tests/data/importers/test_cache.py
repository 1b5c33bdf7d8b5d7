"""The prepared image cache: contents, original sizes, resuming, and use from worker processes."""

import pathlib
import pickle

import numpy as np
import pytest

from oxnet.data import cache as cache_module
from oxnet.data.cache import ImageCache, build_cache, decode_resized
from oxnet.data.io import ImageReadError, write_dicom, write_png

DATASETS = pathlib.Path(__file__).resolve().parents[3] / "datasets"


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i, (h, w) in enumerate([(100, 80), (64, 64), (50, 120)]):
        path = tmp_path / f"img{i}.png"
        write_png(path, rng.integers(0, 256, (h, w), dtype=np.uint8))
        files.append(path)
    dcm = tmp_path / "img3.dcm"
    write_dicom(dcm, rng.integers(0, 4096, (90, 70), dtype=np.uint16))
    files.append(dcm)
    return [{"file_name": str(f)} for f in files]


def test_build_and_read(images, tmp_path):
    cache = build_cache(images, tmp_path / "c" / "train32", size=32, progress=False)
    assert len(cache) == 4 and cache.size == 32
    for d, hw in zip(images, [(100, 80), (64, 64), (50, 120), (90, 70)]):
        assert d["file_name"] in cache
        img = cache.read(d["file_name"])
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        expected, _ = decode_resized(d["file_name"], 32)
        assert np.array_equal(img[:, :, 0], expected) and np.array_equal(img[:, :, 2], expected)
        assert cache.original_size(d["file_name"]) == hw
    sx, sy = cache.scale(images[2]["file_name"])
    assert (sx, sy) == (32 / 120, 32 / 50)
    assert str(tmp_path / "nothere.png") not in cache
    with pytest.raises(KeyError, match="not in the cache"):
        cache.read(tmp_path / "nothere.png")
    # picklable for data-loader workers, and the .npy is a plain memory-mappable array
    clone = pickle.loads(pickle.dumps(cache))
    assert np.array_equal(clone.read(images[0]["file_name"]), cache.read(images[0]["file_name"]))
    assert np.load(tmp_path / "c" / "train32.npy", mmap_mode="r").shape == (4, 32, 32)


def test_resume_after_failure(images, tmp_path, monkeypatch):
    bad = tmp_path / "img3.dcm"
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageReadError, match="img3.dcm"):
        build_cache(images, tmp_path / "r", size=16, progress=False, save_every=1)
    done = np.load(tmp_path / "r.done.npy")
    assert done.tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="incomplete"):
        ImageCache(tmp_path / "r")
    bad.write_bytes(good)
    decoded = []
    real = cache_module._work
    monkeypatch.setattr(cache_module, "_work", lambda args: decoded.append(args[0]) or real(args))
    cache = build_cache(images, tmp_path / "r", size=16, progress=False)
    assert decoded == [3] and len(cache) == 4
    first = images[0]["file_name"]
    assert np.array_equal(cache.read(first)[:, :, 0], decode_resized(first, 16)[0])


def test_workers_and_json_input(shared_data, tmp_path):
    import json

    from oxnet.data.format import write_omni_coco

    src = json.loads((shared_data / "tbx11k-tb500" / "annotations.json").read_text())
    images = src["images"][:8]
    coco = {
        "images": [dict(img, supervision="unlabeled") for img in images],
        "annotations": [],
        "categories": src["categories"],
    }
    write_omni_coco(tmp_path / "tb8.json", coco)
    cache = build_cache(
        tmp_path / "tb8.json",
        tmp_path / "tb8",
        size=64,
        workers=2,
        image_root=shared_data / "tbx11k-tb500" / "images",
        progress=False,
    )
    for img in images:
        path = shared_data / "tbx11k-tb500" / "images" / img["file_name"]
        assert np.array_equal(cache.read(path)[:, :, 1], decode_resized(str(path), 64)[0])
        assert cache.original_size(path) == (512, 512)


def test_prepare_cache_script(images, tmp_path):
    import importlib.util

    from oxnet.data.format import write_omni_coco

    coco = {
        "images": [
            {
                "id": i + 1,
                "file_name": d["file_name"].rsplit("/", 1)[1],
                "width": 1,
                "height": 1,
                "supervision": "unlabeled",
            }
            for i, d in enumerate(images)
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "x"}],
    }
    write_omni_coco(tmp_path / "set.json", coco)
    spec = importlib.util.spec_from_file_location("prepare_cache_script", f"{DATASETS}/prepare_cache.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cache = script.main(
        ["--json", str(tmp_path / "set.json"), "--out", str(tmp_path / "cache" / "s24"), "--size", "24"]
    )
    assert len(cache) == 4 and cache.read(tmp_path / "img1.png").shape == (24, 24, 3)
