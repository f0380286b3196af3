"""FGSM and PGD (L-inf) on raw pixels, white box: the gradient of the attacked model itself.

Pixels are float32 [N, H, W, C] holding 8-bit values (whole numbers in [0, 255]); ε is on the
[0, 1] scale. Every attack returns 8-bit images again: clipped to [0, 255], rounded, and within
`pixel_budget(ε)` = round(255 ε) levels of the source pixels, so each one is a real image a client
could send.
"""

from typing import Callable, Sequence

import tensorflow as tf

Probabilities = Callable[[tf.Tensor], tf.Tensor]  # pixels [N, H, W, C] -> probabilities [N, classes]


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


def _gradient_and_correct(probabilities: Probabilities, pixels: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """d attack_loss / d pixels per example, and whether the model classifies each example correctly."""
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        predicted = probabilities(pixels)
        loss = attack_loss(predicted, labels)
    return tape.gradient(loss, pixels), tf.argmax(predicted, axis=-1, output_type=labels.dtype) == labels


@tf.function(reduce_retracing=True)
def loss_gradient(probabilities: Probabilities, pixels: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """d attack_loss / d pixels, one gradient per example."""
    return _gradient_and_correct(probabilities, pixels, labels)[0]


def to_8bit(adversarial: tf.Tensor, pixels: tf.Tensor, budget: tf.Tensor) -> tf.Tensor:
    """Rounded, within `budget` levels of `pixels` and in [0, 255]."""
    within = tf.clip_by_value(tf.round(adversarial), pixels - budget, pixels + budget)
    return tf.clip_by_value(within, 0.0, 255.0)


def fgsm(probabilities: Probabilities, pixels: tf.Tensor, labels: tf.Tensor, epsilons: Sequence[float]) -> list[tf.Tensor]:
    """Fast gradient sign method: x + ε sign(∇x loss), one batch per ε from one gradient."""
    direction = tf.sign(loss_gradient(probabilities, pixels, labels))
    return [to_8bit(pixels + pixel_budget(e) * direction, pixels, float(pixel_budget(e))) for e in epsilons]


@tf.function(reduce_retracing=True)
def _pgd(probabilities: Probabilities, pixels: tf.Tensor, labels: tf.Tensor, budget: tf.Tensor, step: tf.Tensor,
         steps: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    start = tf.random.stateless_uniform(tf.shape(pixels), seed, -budget, budget)
    adversarial = to_8bit(pixels + start, pixels, budget)
    active = tf.range(tf.shape(pixels)[0])  # the examples whose current image the model still classifies correctly
    for _ in tf.range(steps):
        tf.autograph.experimental.set_loop_options(shape_invariants=[(active, tf.TensorShape([None]))])
        if tf.size(active) == 0:  # every image broken; an empty batch would also fail in oneDNN's convolutions
            break
        source, current, current_labels = (tf.gather(t, active) for t in (pixels, adversarial, labels))
        gradient, correct = _gradient_and_correct(probabilities, current, current_labels)
        stepped = to_8bit(current + step * tf.sign(gradient), source, budget)
        active = tf.boolean_mask(active, correct)
        adversarial = tf.tensor_scatter_nd_update(adversarial, active[:, tf.newaxis], tf.boolean_mask(stepped, correct))
    return adversarial


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
