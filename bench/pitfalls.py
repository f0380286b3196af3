"""Training pitfalls, measured: LeNet-5 on real Fashion-MNIST with one thing changed per case (raw pixels, all-zero
weights, full-data-set batches, class-sorted batches, no biases, batch size 1).

Every case trains the same LeNet-5 with Adam for the same number of EPOCHS on the same images;
only the one thing the case names differs (so batch size 1 makes many more updates and full-batch
training very few: that is the point of those two cases). Prints a table and writes it to
docs/pitfalls.md with --write.

Run: .venv/bin/python bench/pitfalls.py [--train 10000] [--test 2000] [--epochs 5] [--write]
"""

import argparse
import dataclasses
import os
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402

import report  # noqa: E402 - bench/report.py, beside this script
from cnnpipe.models import registry  # noqa: E402



@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    why: str
    scale_inputs: bool = True
    zero_init: bool = False
    batch_size: int = 128
    shuffle: bool = True
    sort_by_class: bool = False
    use_bias: bool = True


CASES = (
    Case("standard recipe", "inputs in [-1, 1], Glorot init, batch 128, shuffled"),
    Case("raw [0, 255] inputs", "no normalization: huge activations and gradients", scale_inputs=False),
    Case("all-zero weights", "every unit of a layer gets the same gradient: symmetry never breaks", zero_init=True),
    Case("full-data-set batches", "one update per epoch", batch_size=0),
    Case("class-sorted, not shuffled", "each stretch of updates sees one class only", shuffle=False,
         sort_by_class=True),
    Case("no bias terms", "hidden layers without biases", use_bias=False),
    Case("batch size 1", "noisy gradients, one update per image", batch_size=1),
)


def load(split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Real Fashion-MNIST images as float32 [N, 28, 28, 1] in [0, 255], and labels."""
    images, labels = report.fashion_mnist_arrays(split, count)
    return images[..., None].astype("float32"), labels.astype("int64")


def run_case(case: Case, train, test, epochs: int) -> dict:
    (x, y), (x_test, y_test) = train, test
    prepare: Callable[[np.ndarray], np.ndarray] = (lambda a: a / 127.5 - 1) if case.scale_inputs else (lambda a: a)
    x, x_test = prepare(x), prepare(x_test)
    if case.sort_by_class:
        order = np.argsort(y, kind="stable")
        x, y = x[order], y[order]
    keras.utils.set_random_seed(0)
    model = registry.build("lenet5", (28, 28, 1), 10, l2=0.0, use_bias=case.use_bias)
    if case.zero_init:
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    batch_size = case.batch_size or len(y)
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=case.shuffle, verbose=0).history
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    return {
        "accuracy": accuracy,
        "losses": history["loss"],
        "updates": epochs * -(-len(y) // batch_size),
        "seconds": seconds,
    }


def verdict(accuracy: float, standard: float) -> str:
    if accuracy < 0.5:
        return "fails"
    return "fine" if accuracy >= standard - 0.02 else "worse"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000, help="training images (default 10000)")
    parser.add_argument("--test", type=int, default=2_000, help="test images (default 2000)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs for every case (default 5)")
    parser.add_argument("--write", action="store_true", help="write the table to docs/pitfalls.md")
    args = parser.parse_args()
    train, test = load("train", args.train), load("t10k", args.test)

    rows = []
    standard = None
    for case in CASES:
        print(f"training: {case.name} …", flush=True)
        result = run_case(case, train, test, args.epochs)
        standard = standard if standard is not None else result["accuracy"]
        losses = result["losses"]
        rows.append([
            case.name, case.why, f"{result['updates']:,}", f"{losses[0]:.3g} → {losses[-1]:.3g}",
            f"{100 * result['accuracy']:.1f}%", verdict(result["accuracy"], standard),
        ])
    table = report.markdown_table(
        f"LeNet-5, Adam 1e-3, {args.epochs} epochs for every case, {args.train:,} training and {args.test:,} test "
        "images of Fashion-MNIST (`bench/pitfalls.py`).",
        ["case", "what goes wrong", "updates", "training loss, first → last epoch", "test accuracy", "verdict"],
        rows,
    )
    report.publish(table, "pitfalls.md", args.write)


if __name__ == "__main__":
    main()
