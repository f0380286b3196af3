"""Robust accuracy by attack budget: the pipeline's attacks at its default steps and at AutoAttack's (APGD with 100
iterations), beside ART's AutoProjectedGradientDescent at the same steps, on the first Fashion-MNIST test images.

AutoAttack runs APGD-CE and targeted APGD-DLR for 100 iterations each, then FAB and Square; the 100-step rows here
are its APGD budget with one random start, untargeted, not the whole suite.

Run: .venv/bin/python bench/attack_budget.py [--model SAVED_MODEL_DIR] [--images 1000] [--epsilons 0.05,0.1]
     [--steps 20,100]
(default model: the newest version pushed by `make run`, under cnnpipe-output/serving/fashion_mnist)
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import report  # noqa: E402 - bench/report.py, beside this script
from cnnpipe.attacks import eight_bit  # noqa: E402
from cnnpipe.core.names import APGD_CE, APGD_DLR  # noqa: E402
from cnnpipe.core.options import numbers  # noqa: E402
from cnnpipe.pipeline.datasets import FASHION_MNIST  # noqa: E402
from cnnpipe.robustness.pixel_model import PixelModel  # noqa: E402

ART_LOSSES = {APGD_CE: "cross_entropy", APGD_DLR: "difference_logits_ratio"}


def art_apgd(model: PixelModel, pixels: tf.Tensor, labels: tf.Tensor, epsilon: float, loss: str, steps: int
             ) -> np.ndarray:
    """ART's APGD at the pipeline's 8-bit budget, one random start; DLR on the log-probabilities (the logits up to a
    shift per example)."""
    from art.attacks.evasion import AutoProjectedGradientDescent  # noqa: PLC0415 - a bench-only dependency
    from art.estimators.classification import TensorFlowV2Classifier  # noqa: PLC0415

    logits, num_classes = loss == APGD_DLR, len(FASHION_MNIST.class_names)
    classifier = TensorFlowV2Classifier(
        model=lambda x, training=False: tf.math.log(model.probabilities(x)) if logits else model.probabilities(x),
        nb_classes=num_classes, input_shape=model.input_shape, clip_values=(0.0, 255.0),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=logits))
    budget = float(eight_bit.pixel_budget(epsilon))
    attack = AutoProjectedGradientDescent(classifier, eps=budget, eps_step=2 * budget, max_iter=steps,
                                          nb_random_init=1, batch_size=256, loss_type=ART_LOSSES[loss], verbose=False)
    return attack.generate(pixels.numpy(), tf.one_hot(labels, num_classes).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=f"an exported model (default: the newest under {report.SERVED})")
    parser.add_argument("--images", type=int, default=1000, help="the first N test images")
    parser.add_argument("--epsilons", type=numbers, default=(0.05, 0.1))
    parser.add_argument("--steps", type=lambda text: tuple(int(n) for n in text.split(",")), default=(20, 100))
    args = parser.parse_args()
    model = PixelModel(args.model or report.newest_version())
    images, labels = report.fashion_mnist_arrays("t10k", args.images)
    pixels, labels = tf.constant(images[..., None], tf.float32), tf.constant(labels, tf.int64)

    def fooled(attacked) -> np.ndarray:
        return np.argmax(model.probabilities(tf.constant(attacked, tf.float32)), axis=1) != labels.numpy()

    print(f"model {model.model_dir}; first {args.images:,} test images; clean accuracy "
          f"{1 - fooled(pixels).mean():.2%}")
    rows = []
    for epsilon in args.epsilons:
        (fgsm,) = eight_bit.fgsm(model.probabilities, pixels, labels, [epsilon])
        for steps in args.steps:
            start = time.perf_counter()
            (pgd,) = eight_bit.pgd(model.probabilities, pixels, labels, [epsilon], steps)
            ours = {loss: eight_bit.apgd(model.probabilities, pixels, labels, [epsilon], loss, steps)[0]
                    for loss in (APGD_CE, APGD_DLR)}
            seconds = time.perf_counter() - start
            theirs = {loss: art_apgd(model, pixels, labels, epsilon, loss, steps) for loss in (APGD_CE, APGD_DLR)}
            worst = np.any([fooled(fgsm), fooled(pgd), *(fooled(x) for x in ours.values())], axis=0)
            rows.append([f"{epsilon:g}", str(steps), f"{1 - fooled(pgd).mean():.2%}",
                         *(f"{1 - fooled(ours[loss]).mean():.2%} ({1 - fooled(theirs[loss]).mean():.2%})"
                           for loss in (APGD_CE, APGD_DLR)), f"{1 - worst.mean():.2%}", f"{seconds:.0f}"])
    print("\n" + report.markdown_table(
        f"Accuracy left on the first {args.images:,} test images by steps (ART's APGD at the same steps in brackets)",
        ["ε", "steps", "PGD", "APGD-CE (ART)", "APGD-DLR (ART)", "worst case with FGSM", "ours, s"], rows))


if __name__ == "__main__":
    main()
