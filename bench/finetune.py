"""Fine-tuning vs training from scratch: scikit-learn's 8x8 digits on the Fashion-MNIST LeNet-5.

The digits (real scans, bundled with scikit-learn) go through the pipeline's own preprocessing:
encoded as PNG, decoded and resized to 28x28 by `preprocessing.decode_images`, scaled to
[-1, 1]. With 10, 50 and all training images per class, LeNet-5 is trained three ways for the
same number of epochs: from scratch, fine-tuned from the pushed Fashion-MNIST model (all layers),
and fine-tuned with the features frozen (head only). Test accuracy is the mean over --seeds.

Run after `make run`: .venv/bin/python bench/finetune.py [--base cnnpipe-output/serving/fashion_mnist] [--write]
"""

import argparse
import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import report  # noqa: E402 - bench/report.py, beside this script
from cnnpipe.models import preprocessing, registry, warm_start  # noqa: E402

SHAPE = (28, 28, 1)
WAYS = ("scratch", "fine-tuned", "frozen features")


def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Train pool and test set (stratified, 40% test) as pipeline-preprocessed images."""
    data = load_digits()
    pngs = []
    for image in data.images:  # 0..16 grey levels
        buffer = io.BytesIO()
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    pixels = preprocessing.decode_images(tf.constant(pngs), SHAPE)
    images = preprocessing.normalize(pixels, "scale").numpy()
    x_train, x_test, y_train, y_test = train_test_split(
        images, data.target, test_size=0.4, stratify=data.target, random_state=0
    )
    return (x_train, y_train), (x_test, y_test)


def per_class(x: np.ndarray, y: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` training images of each class (all when count is 0)."""
    if not count:
        return x, y
    keep = np.concatenate([np.flatnonzero(y == label)[:count] for label in np.unique(y)])
    return x[keep], y[keep]


def accuracy(way: str, base: str, train, test, epochs: int, seed: int) -> float:
    keras.utils.set_random_seed(seed)
    model = registry.build("lenet5", SHAPE, 10)
    if way != "scratch":
        warm_start.initialize(model, base, freeze_features=way == "frozen features")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(*train, batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    return model.evaluate(*test, verbose=0)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="cnnpipe-output/serving/fashion_mnist",
                        help="the pushed Fashion-MNIST model (a version or the model base path)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write the table to docs/finetune.md")
    args = parser.parse_args()
    (x_pool, y_pool), test = digits()
    base = warm_start.saved_model_dir(args.base)

    rows = []
    for count in (10, 50, 0):
        train = per_class(x_pool, y_pool, count)
        scores = {way: np.mean([accuracy(way, base, train, test, args.epochs, s) for s in range(args.seeds)])
                  for way in WAYS}
        label = f"{count} per class" if count else f"all ({len(train[1])})"
        print(f"{label:>18}: " + ", ".join(f"{way} {100 * score:.1f}%" for way, score in scores.items()), flush=True)
        rows.append([label, str(len(train[1]))] + [f"{100 * scores[way]:.1f}%" for way in WAYS])
    table = report.markdown_table(
        f"scikit-learn digits, {len(test[1])} test images; LeNet-5, Adam 1e-3, batch 32, {args.epochs} epochs, "
        f"mean of {args.seeds} seeds; base model `{base}` (`bench/finetune.py`).",
        ["training images", "count", "from scratch", "fine-tuned (all layers)", "fine-tuned (frozen features)"],
        rows,
    )
    report.publish(table, "finetune.md", args.write)


if __name__ == "__main__":
    main()
