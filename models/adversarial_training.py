"""Adversarial training (`--adversarial`): the model is fitted on attacked copies of each training batch.

`fgsm-rs`: one FGSM step of 1.25 ε from a uniform random start in the ε-ball (Wong, Rice and Kolter,
"Fast is better than free", 2020). `pgd`: `steps` steps of 2.5 ε / steps from a random start, each
projected back onto the ε-ball (Madry et al., 2018). `apgd-ce`: `steps` steps of Auto-PGD on cross-entropy (Croce and
Hein, 2020; attacks/apgd.py), the image of highest loss. ε is on the [0, 1] pixel scale, as in the
Evaluator's attacks; the Trainer sees transformed pixels, so the Transform graph's affine map
(attacks/affine_map.py) converts the budget and the valid pixel range into its units. The start,
steps and projection are the Evaluator's (attacks/linf_ball.py), in those units, without rounding.
"""

from typing import Optional

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from cnnpipe.attacks import apgd
from cnnpipe.attacks.affine_map import transform_as_affine_map
from cnnpipe.attacks.linf_ball import LInfBall
from cnnpipe.core import features
from cnnpipe.core.names import APGD_CE, FGSM_RS


def _uniform(shape: tf.Tensor, budget: tf.Tensor) -> tf.Tensor:
    """Uniform in [-budget, budget], drawn as [-1, 1) times the budget (as runs have always drawn it)."""
    return tf.random.uniform(shape, -1.0, 1.0) * budget


# Keras's train function is kept out of AutoGraph (models/autograph.py), and with it what train_step calls:
# APGD's loop over its steps and checkpoints is converted here.
_apgd_search = tf.autograph.to_graph(apgd.search)


def _cross_entropy(probabilities: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """The training loss, per example, in the shared step's argument order."""
    return keras.losses.sparse_categorical_crossentropy(labels, probabilities)


class AdversarialTraining(keras.Model):
    """Wraps `model`: `train_step` fits it on attacked batches; evaluation and prediction are the model's own."""

    def __init__(self, model: keras.Model, method: str, epsilon: float, steps: int, scale: tf.Tensor,
                 offset: tf.Tensor):
        super().__init__(name=f"{model.name}_{method.replace('-', '_')}")
        self.model = model
        self.method, self.epsilon = method, epsilon
        self.steps = 1 if method == FGSM_RS else steps
        # ε, black and white in transformed units (scale > 0)
        self.ball = LInfBall(budget=255.0 * epsilon * scale, low=offset, high=255.0 * scale + offset)
        self._step = (1.25 if method == FGSM_RS else 2.5 / steps) * self.ball.budget

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def attack(self, images: tf.Tensor, labels: tf.Tensor, pgd_steps: Optional[int] = None) -> tf.Tensor:
        """`images` moved within the budget to raise the model's loss, from a random start: by the training method,
        or, given `pgd_steps`, by PGD's steps of 2.5 ε / steps (the collapse check's attack)."""
        if pgd_steps is None and self.method == APGD_CE:
            found = _apgd_search(self.probabilities, _cross_entropy, self.ball, images, labels, self.steps, _uniform)
            return tf.stop_gradient(found.highest_loss)
        steps, size = (self.steps, self._step) if pgd_steps is None else (pgd_steps, 2.5 * self.ball.budget / pgd_steps)
        delta = self.ball.random_start(images, _uniform)
        for _ in range(steps):
            delta, _ = self.ball.ascend(self.probabilities, _cross_entropy, images, delta, labels, size)
        return tf.stop_gradient(images + delta)

    def probabilities(self, images: tf.Tensor) -> tf.Tensor:
        """The wrapped model's predictions for transformed images, in inference mode."""
        return self.model({features.IMAGE_XF: images}, training=False)

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
