"""Attention-map figures (global CAM, local attention, DAA map) from arrays and from a model."""

import cv2
import numpy as np
import pytest
import torch

from oxnet.evaluation.attention import draw_attention_maps, write_attention_report


def _maps(n=3, h=8, w=8, peak=(2, 5)):
    cam = np.zeros((n, h, w), np.float32)
    cam[1, peak[0], peak[1]] = 1.0
    local = np.random.default_rng(0).random((n, h, w)).astype(np.float32)
    return {"cam": cam, "local": local, "daa": cam * local}


def test_draw_attention_maps(tmp_path):
    image = np.full((128, 160, 3), 90, np.uint8)
    path = tmp_path / "att.png"
    drawn = draw_attention_maps(image, _maps(), ["a", "b", "c"], str(path), max_classes=2)
    assert drawn[0] == 1  # the class with the highest DAA peak comes first
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 100 and img.std() > 1
    with pytest.raises(KeyError, match="daa"):
        two = {"cam": np.zeros((3, 4, 4)), "local": np.zeros((3, 4, 4))}
        draw_attention_maps(image, two, "abc", str(path))
    with pytest.raises(ValueError, match="N = 2 classes"):
        draw_attention_maps(image, _maps(), ["a", "b"], str(path))


def test_write_attention_report_uses_the_model(tmp_path):
    grey = (np.arange(64 * 80) % 251).reshape(64, 80).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "x.png"), grey)

    class FakeOXNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def attention_maps(self, batched_inputs):
            assert not self.training and batched_inputs[0]["image"].shape == (3, 64, 80)
            self.calls += 1
            return [_maps() for _ in batched_inputs]

    model = FakeOXNet().train()
    dicts = [
        {"image_id": i, "file_name": str(tmp_path / "x.png"), "image_labels": {0: 1, 1: 0, 2: -1}}
        for i in (1, 2)
    ]
    mapper = lambda d: dict(d, image=torch.zeros(3, 64, 80))  # noqa: E731
    paths = write_attention_report(
        model, dicts, mapper, str(tmp_path / "out"), n_images=1, class_names=["a", "b", "c"]
    )
    assert model.calls == 1 and model.training  # training mode restored
    assert [p.endswith("attention_1.png") for p in paths] == [True]
    assert cv2.imread(paths[0]).std() > 1
