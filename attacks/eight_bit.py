"""FGSM, PGD and APGD (L-inf) on raw pixels, white box: the gradient of the attacked model itself.

Pixels are float32 [N, H, W, C] holding 8-bit values (whole numbers in [0, 255]); ε is on the
[0, 1] scale. Every attack returns 8-bit images again: clipped to [0, 255], rounded, and within
`pixel_budget(ε)` = round(255 ε) levels of the source pixels, so each one is a real image a client
could send. The start, steps and projection are linf_ball.py's, shared with adversarial training.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf

from cnnpipe.core.names import APGD_CE, APGD_DLR
from cnnpipe.attacks import apgd as apgd_search, linf_ball
from cnnpipe.attacks.linf_ball import Probabilities


TINY = 1e-30  # the smallest probability APGD's losses take the log of


def pixel_budget(epsilon: float) -> int:
    """ε on the [0, 1] scale as a whole number of 8-bit levels."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon {epsilon} is outside [0, 1]; it is measured on the [0, 1] pixel scale")
    return round(epsilon * 255)


def attack_loss(probabilities: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Per example, the probability of the wrong classes, 1 - p(label).

    Its gradient points where cross-entropy's does (both fall with p(label) alone), but it is summed
    from the other classes' probabilities, so it does not vanish when a confident model's p(label)
    rounds to 1 in float32 (cross-entropy on clipped probabilities does: gradient masking).
    """
    wrong = 1.0 - tf.one_hot(labels, tf.shape(probabilities)[-1], dtype=probabilities.dtype)
    return tf.reduce_sum(probabilities * wrong, axis=-1)


@tf.function(reduce_retracing=True)
def loss_gradient(probabilities: Probabilities, pixels: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """d attack_loss / d pixels, one gradient per example."""
    return linf_ball.loss_gradient(probabilities, attack_loss, pixels, labels)[0]


def eight_bit_ball(budget: linf_ball.Bound) -> linf_ball.LInfBall:
    """The 8-bit images within `budget` levels of their source."""
    return linf_ball.LInfBall(budget, 0.0, 255.0, whole_levels=True)


def fgsm(probabilities: Probabilities, pixels: tf.Tensor, labels: tf.Tensor,
         epsilons: Sequence[float]) -> list[tf.Tensor]:
    """Fast gradient sign method: x + ε sign(∇x loss), one batch per ε from one gradient."""
    gradient = loss_gradient(probabilities, pixels, labels)
    budgets = [float(pixel_budget(e)) for e in epsilons]
    no_start = tf.zeros_like(pixels)
    return [pixels + eight_bit_ball(b).step(pixels, no_start, gradient, b) for b in budgets]


@tf.function(reduce_retracing=True)
def _pgd(probabilities: Probabilities, pixels: tf.Tensor, labels: tf.Tensor, budget: tf.Tensor, step: tf.Tensor,
         steps: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    ball = eight_bit_ball(budget)
    delta = ball.random_start(pixels, lambda shape, limit: tf.random.stateless_uniform(shape, seed, -limit, limit))
    active = tf.range(tf.shape(pixels)[0])  # the examples whose current image the model still classifies correctly
    for _ in tf.range(steps):
        tf.autograph.experimental.set_loop_options(shape_invariants=[(active, tf.TensorShape([None]))])
        if tf.size(active) == 0:  # every image broken; an empty batch would also fail in oneDNN's convolutions
            break
        source, current, current_labels = (tf.gather(t, active) for t in (pixels, delta, labels))
        stepped, predicted = ball.ascend(probabilities, attack_loss, source, current, current_labels, step)
        correct = tf.argmax(predicted, axis=-1, output_type=labels.dtype) == current_labels
        active = tf.boolean_mask(active, correct)
        delta = tf.tensor_scatter_nd_update(delta, active[:, tf.newaxis], tf.boolean_mask(stepped, correct))
    return pixels + delta


def pgd(
    probabilities: Probabilities,
    pixels: tf.Tensor,
    labels: tf.Tensor,
    epsilons: Sequence[float],
    steps: int = 10,
    step_fraction: float = 0.25,
    seed: tuple[int, int] = (0, 0),
) -> list[tf.Tensor]:
    """Projected gradient descent (Madry et al.): a uniform random start in the ε-ball, then `steps`
    sign-gradient steps of `step_fraction` ε (at least one 8-bit level), each projected back onto the
    8-bit images of the ε-ball, the images a client could send.

    An example leaves the loop once its image is misclassified, and keeps that image: accuracy
    counts it as broken either way, and the remaining steps go to the examples still standing.
    One batch per ε; `seed` makes the random start reproducible.
    """
    if steps < 1 or step_fraction <= 0:
        raise ValueError(f"PGD needs at least one step ({steps}) and a positive step size ({step_fraction} of ε)")
    results = []
    for epsilon in epsilons:
        budget = float(pixel_budget(epsilon))
        step = max(step_fraction * budget, 1.0)  # a smaller step would round back to the same image
        results.append(_pgd(probabilities, pixels, labels, tf.constant(budget), tf.constant(step),
                            tf.constant(steps), tf.constant(seed, tf.int64)))
    return results


def cross_entropy(probabilities: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Per example, -log p(label): APGD-CE's loss."""
    label_probability = tf.reduce_sum(probabilities * tf.one_hot(labels, tf.shape(probabilities)[-1]), axis=-1)
    return -tf.math.log(tf.maximum(label_probability, TINY))


def difference_of_logits_ratio(probabilities: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Per example, Croce and Hein's DLR loss, -(z_label - max_other z) / (z_1st - z_3rd): invariant to the logits'
    shift and scale, so a confident model's saturated softmax does not flatten it. The logits are the
    log-probabilities (the logits up to a shift per example, which DLR's differences cancel)."""
    logits = tf.math.log(tf.maximum(probabilities, TINY))
    is_label = tf.one_hot(labels, tf.shape(logits)[-1]) > 0
    label_logit = tf.reduce_max(tf.where(is_label, logits, -np.inf), axis=-1)
    best_other = tf.reduce_max(tf.where(is_label, -np.inf, logits), axis=-1)
    ranked = tf.sort(logits, axis=-1, direction="DESCENDING")
    return -(label_logit - best_other) / (ranked[:, 0] - ranked[:, 2] + 1e-12)


APGD_LOSSES = {APGD_CE: cross_entropy, APGD_DLR: difference_of_logits_ratio}


@tf.function(reduce_retracing=True)
def _apgd(probabilities: Probabilities, loss: linf_ball.Loss, pixels: tf.Tensor, labels: tf.Tensor,
          budget: tf.Tensor, steps: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """`apgd` at one budget, over one batch."""
    return apgd_search.search(
        probabilities, loss, eight_bit_ball(budget), pixels, labels, steps,
        lambda shape, limit: tf.random.stateless_uniform(shape, seed, -limit, limit)).adversarial()


def apgd(
    probabilities: Probabilities,
    pixels: tf.Tensor,
    labels: tf.Tensor,
    epsilons: Sequence[float],
    loss: str = APGD_CE,
    steps: int = 20,
    seed: tuple[int, int] = (0, 0),
) -> list[tf.Tensor]:
    """Auto-PGD (Croce and Hein, 2020; apgd.py) with `loss` (apgd-ce: cross-entropy; apgd-dlr: the difference
    of logits ratio), `steps` steps from a uniform random start.

    Each image is the first one that fooled the model, else the one of highest loss: 8-bit images within the
    ε-ball, as PGD's. One batch per ε; `seed` makes the random start reproducible.
    """
    if steps < 1 or loss not in APGD_LOSSES:
        raise ValueError(f"APGD needs at least one step ({steps}) and a loss among {', '.join(APGD_LOSSES)} ({loss})")
    return [_apgd(probabilities, APGD_LOSSES[loss], pixels, labels, tf.constant(float(pixel_budget(epsilon))),
                  tf.constant(steps), tf.constant(seed, tf.int64)) for epsilon in epsilons]
