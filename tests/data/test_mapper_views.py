import numpy as np
import pytest
import torch

from oxnet.data import load_omni_coco
from oxnet.data.mapper import OmniDatasetMapper
from oxnet.testing import tiny_cfg, write_toy_dataset


@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_views")
    json_file = write_toy_dataset(str(root), n_full=1, n_weak=0, n_unlabeled=1, size=64)
    dicts, _ = load_omni_coco(json_file, str(root / "images"))
    return next(d for d in dicts if d["supervision"] == "unlabeled")


def _mapper(method):
    cfg = tiny_cfg(method, size=32)
    cfg.OXNET.AUG.NOISE_STD = 10.0
    return OmniDatasetMapper(cfg, is_train=True)


def test_pi_model_gets_two_independent_strong_views(unlabeled):
    np.random.seed(0)
    pi = _mapper("pi_model")(unlabeled)
    np.random.seed(0)
    mt = _mapper("mean_teacher")(unlabeled)
    # same student view for the same draw; the teacher's view is the clean image, the Pi model's is
    # a second photometric draw (noise: differs from both)
    assert torch.equal(pi["image"], mt["image"])
    assert not torch.equal(pi["image_weak"], pi["image"])
    assert not torch.equal(pi["image_weak"], mt["image_weak"])
    clean = OmniDatasetMapper(tiny_cfg("pi_model", size=32), is_train=False)(unlabeled)["image"]
    assert torch.equal(mt["image_weak"], clean)
    assert (pi["image_weak"] - clean).abs().mean() > 1.0
    assert "image_weak" not in _mapper("retinanet")(unlabeled)
