"""Inference precision of deployed models: the eager model in bfloat16 (``--precision``, OXNET.AMP.INFERENCE)
gives the float32 model's findings; exported models stay float32."""

import numpy as np
import pytest
import torch

from oxnet.deploy.runtime import load_model
from oxnet.testing import tiny_model_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_model_folder(str(tmp_path_factory.mktemp("precision_model")), score_shift=3.0)


def test_bfloat16_eager_model_gives_the_float32_findings(folder):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (80, 96), dtype=np.uint8) for _ in range(2)]
    fp32 = load_model(folder, backend="eager")
    bf16 = load_model(folder, backend="eager", precision="bfloat16")
    assert fp32._runner.predictor.model.inference_dtype is None
    assert bf16._runner.predictor.model.inference_dtype is torch.bfloat16
    for a, b in zip(fp32.predict_batch(images), bf16.predict_batch(images)):
        top_a = sorted(a["detections"], key=lambda d: -d["score"])[:5]
        top_b = sorted(b["detections"], key=lambda d: -d["score"])[:5]
        assert [d["category_id"] for d in top_a] == [d["category_id"] for d in top_b]
        for da, db in zip(top_a, top_b):
            assert np.allclose(da["bbox"], db["bbox"], atol=0.5)  # pixels of the 96 x 80 image
            assert abs(da["score"] - db["score"]) < 5e-3
        for k, v in a["image_scores"].items():
            assert abs(v - b["image_scores"][k]) < 5e-3


def test_exported_models_are_float32_only(folder, tmp_path):
    from oxnet.deploy.export import build_eager_model
    from oxnet.engine.model_files import load_model_config

    cfg = load_model_config(f"{folder}/model_final.pth", opts=["OXNET.AMP.INFERENCE", "bfloat16"])
    assert build_eager_model(cfg).inference_dtype is None
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(
        ValueError, match="the onnx model is float32; precision 'bfloat16' needs --backend eager"
    ):
        load_model(tmp_path, backend="onnx", precision="bfloat16")
