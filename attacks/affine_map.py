"""A Transform graph read as the elementwise affine map of the pixels it is after decoding (transformed = scale *
pixels + offset, for images of the model's own size), so that gradients reach raw pixels: adversarial training
(models/adversarial_training.py) converts ε and the pixel range with it, and robustness/pixel_model.py puts it
in front of an exported model."""

import numpy as np
import tensorflow as tf

from cnnpipe.core.errors import RobustnessError
from cnnpipe.core import features

AFFINE_TOLERANCE = 1e-4  # relative to the largest transformed value


def transform_as_affine_map(tft_layer, input_shape: tuple[int, int, int], image_shape,
                            where: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Each pixel's scale and offset in the Transform graph `tft_layer` (as transformed = scale * pixels +
    offset for 8-bit images of `input_shape`), checked on a third, varied image; `where` names the graph."""

    def transform(images: np.ndarray) -> np.ndarray:  # PNG-encoded, as a client sends them
        encoded = tf.stack([tf.io.encode_png(image) for image in images])
        return tft_layer({features.IMAGE: tf.reshape(encoded, [-1, *image_shape])})[features.IMAGE_XF].numpy()

    size = int(np.prod(input_shape))
    pattern = (np.arange(size) * 37 % 256).reshape(input_shape)  # every level, no smooth regions
    probes = np.stack([np.zeros(input_shape), np.full(input_shape, 255), pattern]).astype(np.uint8)
    black, white, transformed = transform(probes)
    scale, offset = (white - black) / 255.0, black
    error = np.max(np.abs(pattern * scale + offset - transformed))
    if error > AFFINE_TOLERANCE * max(1.0, np.max(np.abs(transformed))):
        raise RobustnessError(
            f"{where}: its Transform graph is not an elementwise affine map of the pixels (off by "
            f"{error:.3g} on a probe image), so attacks cannot take gradients through it. Gradient attacks "
            "need preprocessing_fn to decode, resize and normalize only (models/preprocessing.py)."
        )
    return tf.constant(scale, tf.float32), tf.constant(offset, tf.float32)
