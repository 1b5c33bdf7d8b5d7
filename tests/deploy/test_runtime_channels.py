"""The exported runtime feeds a 1-channel model (OXNET.BACKBONE.PRETRAINED with grey stems) the first
channel of a colour image, as the eager model's preprocess_image does, and 3-channel models all three."""

import numpy as np

from oxnet.deploy.runtime import prepare_images


def _info(channels):
    return {
        "input_size": 8,
        "padded_size": 8,
        "input_channels": channels,
        "pixel_mean": [10.0] * channels,
        "pixel_std": [2.0] * channels,
    }


def test_one_channel_model_takes_the_first_channel_of_a_colour_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    (batch, sizes) = prepare_images([image], _info(1))
    assert batch.shape == (1, 1, 8, 8) and sizes == [(8, 8)]
    np.testing.assert_allclose(batch[0, 0], (image[:, :, 0].astype(np.float32) - 10.0) / 2.0)
    batch3, _ = prepare_images([image], _info(3))
    np.testing.assert_allclose(batch3[0], (image.transpose(2, 0, 1).astype(np.float32) - 10.0) / 2.0)
