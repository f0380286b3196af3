"""preprocessing_fn: encoded image bytes to the normalized pixel tensor the models take.

Transform runs it over the data with TFT (the mean and std analyzers see the training split);
the resulting graph ships inside every exported model, so serving repeats it exactly.
"""

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from cnnpipe.core import features
from cnnpipe.models.training_config import NORMALIZATIONS


def decode_image(encoded: tf.Tensor, height: int, width: int, channels: int) -> tf.Tensor:
    """One PNG/JPEG of any size and colour mode to float32 [height, width, channels] in [0, 255]."""
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    image = tf.image.resize(image, [height, width], antialias=True)
    return tf.ensure_shape(image, [height, width, channels])


def decode_images(encoded: tf.Tensor, input_shape: tuple[int, int, int]) -> tf.Tensor:
    """A batch of encoded images (any shape of strings) to float32 [batch, H, W, C] in [0, 255]."""
    return tf.map_fn(
        lambda image: decode_image(image, *input_shape),
        tf.reshape(encoded, [-1]),
        fn_output_signature=tf.TensorSpec(input_shape, tf.float32),
    )


def encode_images(pixels: tf.Tensor) -> tf.Tensor:
    """float32 [batch, H, W, C] pixels in [0, 255] (C of 1-4) to PNG bytes [batch], rounded to 8 bits.

    Serving sends raw pixels through the same decode, resize and normalization as training.
    """
    return tf.map_fn(
        lambda image: tf.io.encode_png(tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)),
        pixels,
        fn_output_signature=tf.TensorSpec([], tf.string),
    )


def normalize(pixels: tf.Tensor, normalization: str) -> tf.Tensor:
    """[0, 255] pixels to [-1, 1] ("scale") or to zero mean, unit variance ("standardize").

    "standardize" uses TFT's mean/variance analyzers over every pixel of the training split.
    """
    if normalization == "scale":
        return pixels / 127.5 - 1.0
    if normalization == "standardize":
        return tft.scale_to_z_score(pixels)
    raise ValueError(f"unknown normalization '{normalization}'; choose one of {NORMALIZATIONS}")


def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config: dict[str, Any]) -> dict[str, tf.Tensor]:
    """TFT preprocessing: `custom_config` has `input_shape` [H, W, C] and `normalization`."""
    input_shape = tuple(custom_config["input_shape"])
    pixels = decode_images(inputs[features.IMAGE], input_shape)
    return {
        features.IMAGE_XF: normalize(pixels, custom_config["normalization"]),
        features.LABEL_XF: tf.reshape(inputs[features.LABEL], [-1]),
    }
