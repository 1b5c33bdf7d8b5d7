import numpy as np
import pytest
import torch

from oxnet.data import load_omni_coco
from oxnet.data.cache import build_cache
from oxnet.data.mapper import OmniDatasetMapper
from oxnet.testing import tiny_cfg, write_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    json_file = write_toy_dataset(str(root), n_full=3, n_weak=2, n_unlabeled=2, size=64)
    dicts, _ = load_omni_coco(json_file, str(root / "images"))
    return root, json_file, dicts


def _cfg(size=32, method="oxnet"):
    cfg = tiny_cfg(method, size=size)
    cfg.OXNET.AUG.NOISE_STD = 10.0
    return cfg


def test_training_views_share_geometry_and_differ_photometrically(toy):
    _, _, dicts = toy
    mapper = OmniDatasetMapper(_cfg(), is_train=True)
    np.random.seed(0)
    full = mapper(next(d for d in dicts if d["supervision"] == "full"))
    weak = mapper(next(d for d in dicts if d["supervision"] == "weak"))
    unl = mapper(next(d for d in dicts if d["supervision"] == "unlabeled"))
    assert full["image"].shape == (3, 32, 32) and "image_weak" not in full
    assert full["instances"].gt_boxes.tensor.max() <= 32  # boxes scaled with the image (64 -> 32)
    for x in (weak, unl):
        assert x["image_weak"].shape == x["image"].shape
        assert not torch.equal(x["image_weak"], x["image"])  # strong view differs
        assert "instances" not in x
    assert (full["height"], full["width"]) == (64, 64)  # original size for post-processing
    assert weak["image_labels"].tolist() in (
        [0, 1, 0],
        [1, 0, 0],
        [0, 0, 1],
        [1, 1, 0],
        [1, 0, 1],
        [0, 1, 1],
        [1, 1, 1],
    )
    assert torch.all(unl["image_labels"] == -1)


def test_teacher_view_only_for_methods_with_a_teacher_and_none_at_test_time(toy):
    _, _, dicts = toy
    weak = next(d for d in dicts if d["supervision"] == "weak")
    assert "image_weak" not in OmniDatasetMapper(_cfg(method="daa"), is_train=True)(weak)
    test = OmniDatasetMapper(_cfg(), is_train=False)(weak)
    assert "image_weak" not in test and "instances" not in test


def test_size_mismatch_names_the_file(toy):
    _, _, dicts = toy
    d = dict(dicts[0], height=100)
    with pytest.raises(ValueError, match=r"toy_0000\.png.*64x64.*64x100"):
        OmniDatasetMapper(_cfg(), is_train=False)(d)


def test_cached_images_give_the_same_inputs_as_files(toy, tmp_path):
    root, json_file, dicts = toy
    cache = build_cache(json_file, str(tmp_path / "cache"), size=32, image_root=str(root / "images"))
    cfg = _cfg()
    cfg.OXNET.DATA.CACHE = str(tmp_path / "cache")
    from_cache = OmniDatasetMapper(cfg, is_train=False)
    from_files = OmniDatasetMapper(_cfg(), is_train=False)
    full = next(d for d in dicts if d["supervision"] == "full")
    a, b = from_cache(full), from_files(full)
    assert (a["height"], a["width"]) == (b["height"], b["width"]) == (64, 64)
    # same picture (the two resize implementations differ in detail)
    assert np.corrcoef(a["image"].flatten().numpy(), b["image"].flatten().numpy())[0, 1] > 0.9
    train_cache, train_files = OmniDatasetMapper(cfg, is_train=True), OmniDatasetMapper(_cfg(), is_train=True)
    assert torch.allclose(
        train_cache(full)["instances"].gt_boxes.tensor, train_files(full)["instances"].gt_boxes.tensor
    )
    assert len(cache) == len(dicts)
    cfg.OXNET.INPUT_SIZE = 48
    with pytest.raises(ValueError, match="32 px"):
        OmniDatasetMapper(cfg, is_train=False)


def _full_with_boxes(dicts):
    full = next(d for d in dicts if d["supervision"] == "full" and len(d["annotations"]) >= 2)
    xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in full["annotations"])], float)
    return full, xyxy


def test_scale_jitter_down_pads_at_right_and_bottom_and_scales_the_boxes(toy):
    _, _, dicts = toy
    full, xyxy = _full_with_boxes(dicts)
    cfg = _cfg()  # 64 px images, 32 px input
    cfg.OXNET.AUG.SCALE_RANGE = (0.5, 0.5)
    out = OmniDatasetMapper(cfg, is_train=True)(full)
    assert out["image"].shape == (3, 32, 32)
    assert torch.all(out["image"][:, 16:, :] == 0) and torch.all(out["image"][:, :, 16:] == 0)
    assert out["image"][:, :16, :16].std() > 0  # the picture, at half the input size
    assert np.allclose(out["instances"].gt_boxes.tensor.numpy(), xyxy * 16 / 64, atol=1e-4)


def test_scale_jitter_up_crops_and_keeps_only_the_boxes_left_in_view(toy):
    _, _, dicts = toy
    full, xyxy = _full_with_boxes(dicts)
    cfg = _cfg()
    cfg.OXNET.AUG.SCALE_RANGE = (2.0, 2.0)  # 64 px images at 2 x 32 px: a random 32 px crop of the original
    mapper = OmniDatasetMapper(cfg, is_train=True)
    original = OmniDatasetMapper(_cfg(size=64), is_train=False)(full)["image"]
    dropped = 0
    for seed in range(12):
        np.random.seed(seed)
        out = mapper(full)
        err = {
            (oy, ox): (original[:, oy : oy + 32, ox : ox + 32] - out["image"]).abs().max().item()
            for oy in range(33)
            for ox in range(33)
        }
        oy, ox = min(err, key=err.get)
        assert err[(oy, ox)] < 1e-3, "the input is not a crop of the original image"
        expected = (xyxy - [ox, oy, ox, oy]).clip(0, 32)
        expected = expected[(expected[:, 2] > expected[:, 0]) & (expected[:, 3] > expected[:, 1])]
        assert np.allclose(out["instances"].gt_boxes.tensor.numpy(), expected, atol=1e-4)
        dropped += len(expected) < len(xyxy)
    assert dropped > 0  # some crops leave a box outside, and it is dropped rather than kept empty


def test_scale_jitter_range_is_checked():
    cfg = _cfg()
    cfg.OXNET.AUG.SCALE_RANGE = (1.2, 0.8)
    with pytest.raises(ValueError, match="SCALE_RANGE"):
        OmniDatasetMapper(cfg, is_train=True)
