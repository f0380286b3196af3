"""The L-inf ball that every gradient attack moves in: a random start, signed-gradient steps and the projection.

The caller gives its units and its loss: `eight_bit`'s attacks step in 8-bit pixels in [0, 255], rounded to whole
levels, on the margin-like `attack_loss`; adversarial training (models/adversarial_training.py) in the Trainer's
transformed pixels on cross-entropy. An attack carries the perturbation `delta`; its images are `source + delta`.
"""

import dataclasses
from typing import Callable, Union

import tensorflow as tf

Probabilities = Callable[[tf.Tensor], tf.Tensor]  # images [N, H, W, C] -> probabilities [N, classes]
Loss = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # probabilities, labels -> one loss per example
Bound = Union[float, tf.Tensor]  # a scalar or one value per pixel, broadcast over the batch
Uniform = Callable[[tf.Tensor, Bound], tf.Tensor]  # (shape, budget) -> uniform draws in [-budget, budget]


def loss_gradient(model: Probabilities, loss: Loss, images: tf.Tensor,
                  labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """d loss / d images per example, the model's probabilities of `images`, and the loss per example."""
    with tf.GradientTape() as tape:
        tape.watch(images)
        probabilities = model(images)
        value = loss(probabilities, labels)
    return tape.gradient(value, images), probabilities, value


@dataclasses.dataclass(frozen=True)
class LInfBall:
    """The images within `budget` of their source and within [`low`, `high`], in the caller's units;
    with `whole_levels`, whole numbers only (the 8-bit images a client could send)."""

    budget: Bound
    low: Bound
    high: Bound
    whole_levels: bool = False

    def project(self, source: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
        """`delta` moved into the ball: rounded to whole levels if asked, then within the budget and the pixel range.

        Both clips apply to `delta` itself at every step: clipping only the attacked image would leave a
        pixel whose delta points past black or white without a gradient, stuck for good (half of
        Fashion-MNIST's black background: a weaker attack).
        """
        if self.whole_levels:
            delta = tf.round(source + delta) - source
        within_budget = tf.clip_by_value(delta, -self.budget, self.budget)
        return tf.clip_by_value(source + within_budget, self.low, self.high) - source

    def random_start(self, source: tf.Tensor, uniform: Uniform) -> tf.Tensor:
        """A uniform random point of the ball, drawn by the caller's `uniform` (its generator and seed)."""
        return self.project(source, uniform(tf.shape(source), self.budget))

    def step(self, source: tf.Tensor, delta: tf.Tensor, gradient: tf.Tensor, size: Bound) -> tf.Tensor:
        """`delta` moved `size` along the sign of `gradient`, projected back into the ball."""
        return self.project(source, delta + size * tf.sign(gradient))

    def ascend(self, model: Probabilities, loss: Loss, source: tf.Tensor, delta: tf.Tensor, labels: tf.Tensor,
               size: Bound) -> tuple[tf.Tensor, tf.Tensor]:
        """One step of `size` up `loss` from `source + delta`, and the model's probabilities before it."""
        gradient, probabilities, _ = loss_gradient(model, loss, source + delta, labels)
        return self.step(source, delta, gradient, size), probabilities
