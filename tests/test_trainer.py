"""The Trainer's pieces: augmentation on real images, strategy selection."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import fashion_mnist
from cnnpipe.components.errors import TrainingError
from cnnpipe.models import trainer


def real_batch(count: int = 64) -> tf.Tensor:
    images, _ = fashion_mnist("train", count)
    return tf.constant(images[..., None].astype("float32") / 127.5 - 1)


def test_no_augmentation_by_default():
    assert trainer.augmentation(0.0, False) is None


def test_flips_mirror_some_images_and_leave_the_others():
    batch = real_batch()
    tf.keras.utils.set_random_seed(1)
    flipped = trainer.augmentation(0.0, True)(batch, training=True).numpy()
    mirrored = [np.array_equal(out, np.flip(image, axis=1)) for out, image in zip(flipped, batch.numpy())]
    unchanged = [np.array_equal(out, image) for out, image in zip(flipped, batch.numpy())]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 0 < sum(mirrored) < len(mirrored)


def test_translation_moves_images_within_their_pixel_range():
    batch = real_batch()
    shifted = trainer.augmentation(0.1, False)(batch, training=True).numpy()
    assert shifted.shape == batch.shape
    assert shifted.min() >= -1.0 - 1e-6 and shifted.max() <= 1.0 + 1e-6
    moved = [not np.allclose(out, image) for out, image in zip(shifted, batch.numpy())]
    assert sum(moved) > len(moved) // 2


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ValueError, match="mirrored, multi_worker, one_device"):
        trainer.make_strategy("tpu")


def test_raw_pixels_stop_training_and_normalized_ones_pass():
    images, _ = fashion_mnist("train", 32)
    raw = tf.constant(images[..., None].astype("float32"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not normalized"):
        trainer.require_normalized(raw)
    np.testing.assert_array_equal(trainer.require_normalized(raw / 127.5 - 1), raw / 127.5 - 1)


@pytest.mark.parametrize("settings, message", [
    ({"shuffle_buffer": 256}, "shuffle buffer 256 is too small"),
    ({"batch_size": 0}, "must be positive"),
    ({"strategy": "tpu"}, "unknown strategy 'tpu'"),
])
def test_training_settings_that_break_a_cnn_are_refused(settings, message):
    with pytest.raises(TrainingError, match=message):
        trainer.TrainingConfig(model="lenet5", input_shape=(28, 28, 1), class_names=("a", "b"), **settings)
