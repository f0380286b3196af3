"""An exported cnnpipe model as a differentiable function of raw pixels, for gradient attacks.

The exported SavedModel (models/signatures.py) takes encoded images: its Transform graph decodes
them, resizes them to the model's input size and normalizes them, then the Keras model returns
probabilities. Decoding has no gradient, so no serving signature (not even `predict_pixels`, which
encodes the pixels first) can be differentiated. Everything after decoding is an elementwise affine
map of the pixels for images of the model's own size: the resize leaves them unchanged and both
normalizations are affine. `PixelModel` reads that map out of the model's own Transform graph (a
black and a white probe image give each pixel's scale and offset, a third image checks that the map
is affine) and composes it with the exported Keras model:

    probabilities(pixels) = model(scale * pixels + offset)

On 8-bit pixels this is what the model serves; its gradient reaches the raw pixels.
"""

import tensorflow as tf

from cnnpipe.core.errors import RobustnessError
from cnnpipe.core import features
from cnnpipe.attacks.affine_map import transform_as_affine_map


def _first_input_spec(function) -> object:
    """The first argument's spec of a restored function (a TensorSpec or a dict of them)."""
    return function.concrete_functions[0].structured_input_signature[0][0]


class PixelModel:
    """Loads an exported model; `probabilities` (a tf.function) maps float32 pixels [N, H, W, C] in
    [0, 255] to probabilities [N, classes]; `input_shape` is (H, W, C)."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self._saved = tf.saved_model.load(model_dir)
        if not hasattr(self._saved, "tft_layer"):
            raise RobustnessError(
                f"{model_dir}: this SavedModel has no Transform layer (`tft_layer`), so it is not a model cnnpipe "
                "exported. Attack a model written by cnnpipe's Trainer (its Format-Serving directory)."
            )
        self.input_shape: tuple[int, int, int] = tuple(_first_input_spec(self._saved.__call__).shape[1:])
        image_shape = _first_input_spec(self._saved.tft_layer.__call__)[features.IMAGE].shape[1:]
        self._scale, self._offset = transform_as_affine_map(self._saved.tft_layer, self.input_shape, image_shape,
                                                            model_dir)
        # One tf.function for the model's lifetime, so attacks trace it once.
        self.probabilities = tf.function(
            self._probabilities, input_signature=[tf.TensorSpec([None, *self.input_shape], tf.float32)]
        )

    def _probabilities(self, pixels: tf.Tensor) -> tf.Tensor:
        """Class probabilities of float32 pixels [N, H, W, C] in [0, 255], H, W, C the model's input shape."""
        return self._saved(pixels * self._scale + self._offset, training=False)
