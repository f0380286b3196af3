"""Adversarial training (`--adversarial`): the model is fitted on attacked copies of each training batch.

`fgsm-rs`: one FGSM step of 1.25 ε from a uniform random start in the ε-ball (Wong, Rice and Kolter,
"Fast is better than free", 2020). `pgd`: `steps` steps of 2.5 ε / steps from a random start, each
projected back onto the ε-ball (Madry et al., 2018). ε is on the [0, 1] pixel scale, as in the
Evaluator's attacks; the Trainer sees transformed pixels, so the Transform graph's affine map
(robustness.pixel_model) converts the budget and the valid pixel range into its units.
"""

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from cnnpipe.models import features
from cnnpipe.models.training_config import FGSM_RS
from cnnpipe.robustness.pixel_model import transform_as_affine_map


class AdversarialTraining(keras.Model):
    """Wraps `model`: `train_step` fits it on attacked batches; evaluation and prediction are the model's own."""

    def __init__(self, model: keras.Model, method: str, epsilon: float, steps: int, scale: tf.Tensor,
                 offset: tf.Tensor):
        super().__init__(name=f"{model.name}_{method.replace('-', '_')}")
        self.model = model
        self.steps = 1 if method == FGSM_RS else steps
        self._budget = 255.0 * epsilon * scale  # per transformed pixel; scale > 0
        self._step = (1.25 if method == FGSM_RS else 2.5 / steps) * self._budget
        self._low, self._high = offset, 255.0 * scale + offset  # black and white, transformed

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def attack(self, images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """`images` moved within the budget to raise the model's loss, from a random start."""
        delta = self._project(images, tf.random.uniform(tf.shape(images), -1.0, 1.0) * self._budget)
        for _ in range(self.steps):
            with tf.GradientTape() as tape:
                tape.watch(delta)
                loss = keras.losses.sparse_categorical_crossentropy(
                    labels, self.model({features.IMAGE_XF: images + delta}, training=False))
            delta = self._project(images, delta + self._step * tf.sign(tape.gradient(loss, delta)))
        return tf.stop_gradient(images + delta)

    def _project(self, images: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
        """`delta` within the budget and `images + delta` within black and white, at every step.

        Clipping only the attacked image would leave a pixel whose delta points past black or white
        without a gradient, stuck for good: half of Fashion-MNIST's black background, a weaker attack.
        """
        return tf.clip_by_value(images + tf.clip_by_value(delta, -self._budget, self._budget), self._low, self._high) - images

    def train_step(self, data):
        inputs, labels = data
        return super().train_step(({features.IMAGE_XF: self.attack(inputs[features.IMAGE_XF], labels)}, labels))


def wrap(model: keras.Model, method: str, epsilon: float, steps: int, tft_output: tft.TFTransformOutput,
         input_shape: tuple[int, int, int]) -> AdversarialTraining:
    """`model` for adversarial training by `method`, the pixel scale read from the Transform graph."""
    image_shape = tft_output.raw_feature_spec()[features.IMAGE].shape
    scale, offset = transform_as_affine_map(tft_output.transform_features_layer(), input_shape, image_shape,
                                            tft_output.transform_savedmodel_dir)
    return AdversarialTraining(model, method, epsilon, steps, scale, offset)
