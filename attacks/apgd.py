"""Auto-PGD's search (Croce and Hein, 2020) in any L-inf ball: `eight_bit.apgd` runs it on 8-bit pixels and
`--adversarial apgd-ce` training (models/adversarial_training.py) on transformed pixels.

From a random start, `steps` sign-gradient steps with momentum 0.75 whose size, 2ε at first, is halved at
checkpoints where the loss rose in at most 75% of the steps since the last one, or where the best loss did not
improve since a checkpoint that kept the size; a halving restarts from the best point so far.
"""

import dataclasses

import tensorflow as tf

from cnnpipe.attacks.linf_ball import LInfBall, Loss, Probabilities, Uniform, loss_gradient

MOMENTUM = 0.75  # the share of a step that follows the gradient; the rest keeps the last step's direction
INCREASE = 0.75  # ρ: below this share of steps raising the loss between checkpoints, the step size halves


@dataclasses.dataclass(frozen=True)
class Found:
    """Per source image: the image of highest loss, the first image that fooled the model, and whether one did
    (`first_fooling` holds the source where none did)."""

    highest_loss: tf.Tensor
    first_fooling: tf.Tensor
    fooled: tf.Tensor

    def adversarial(self) -> tf.Tensor:
        """What an evaluation reports: the first fooling image, else the one of highest loss."""
        return tf.where(_per_image(self.fooled), self.first_fooling, self.highest_loss)


def _per_image(values: tf.Tensor) -> tf.Tensor:
    return tf.reshape(values, [-1, 1, 1, 1])


def search(probabilities: Probabilities, loss: Loss, ball: LInfBall, source: tf.Tensor, labels: tf.Tensor,
           steps: int, uniform: Uniform) -> Found:
    """APGD on `loss` within `ball` around `source` (images [N, H, W, C]), from a start drawn by `uniform`."""

    def ascent(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The loss's gradient, whether the model is fooled, and the loss, per image."""
        gradient, predicted, value = loss_gradient(probabilities, loss, images, labels)
        return gradient, tf.argmax(predicted, axis=-1, output_type=labels.dtype) != labels, value

    x = source + ball.random_start(source, uniform)
    gradient, fooled, value = ascent(x)
    found = tf.where(_per_image(fooled), x, source)
    best, best_gradient, best_value = x, gradient, value
    previous, last_value = x, value
    eta = tf.fill(tf.shape(value), 2.0)  # each image's step size, in budgets
    check_every = tf.maximum(steps * 22 // 100, 1)  # the steps between checkpoints, shrinking from 22% to 6%
    since_check, increases = 0, tf.zeros_like(value)
    halved_at_last_check, best_at_last_check = tf.ones_like(fooled), best_value
    for index in tf.range(steps):
        momentum = tf.where(index > 0, MOMENTUM, 1.0)  # the first step follows the gradient alone
        target = source + ball.step(source, x - source, gradient, _per_image(eta) * ball.budget)
        moved = x + momentum * (target - x) + (1.0 - momentum) * (x - previous)
        previous, x = x, source + ball.project(source, moved - source)
        gradient, newly_fooled, value = ascent(x)
        found = tf.where(_per_image(newly_fooled & ~fooled), x, found)
        fooled |= newly_fooled
        increases += tf.cast(value > last_value, increases.dtype)
        improved = value > best_value
        best = tf.where(_per_image(improved), x, best)
        best_gradient = tf.where(_per_image(improved), gradient, best_gradient)
        best_value, last_value = tf.maximum(value, best_value), value
        since_check += 1
        if since_check == check_every:  # halve η where the loss oscillates or stalled, and go back to the best point
            halve = (increases <= INCREASE * tf.cast(check_every, increases.dtype)) | (
                ~halved_at_last_check & (best_value <= best_at_last_check))
            eta = tf.where(halve, eta / 2.0, eta)
            x, gradient = tf.where(_per_image(halve), best, x), tf.where(_per_image(halve), best_gradient, gradient)
            halved_at_last_check, best_at_last_check = halve, best_value
            since_check, increases = 0, tf.zeros_like(increases)
            check_every = tf.maximum(check_every - tf.maximum(steps * 3 // 100, 1), tf.maximum(steps * 6 // 100, 1))
    return Found(best, found, fooled)
