"""Data sets cnnpipe knows by name: where they are installed, their classes, their curated schema."""

import dataclasses
import functools
import os
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    path: str
    class_names: tuple[str, ...]
    schema: str  # name of the curated schema in schemas/
    install_hint: str


FASHION_MNIST = Dataset(
    name="fashion_mnist",
    path="/usr/share/datasets/fashion-mnist",
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    schema="fashion_mnist",
    install_hint="apt-get install dataset-fashion-mnist (as root, after apt-get update)",
)

DATASETS = {dataset.name: dataset for dataset in (FASHION_MNIST,)}


@functools.lru_cache(maxsize=None)
def _fashion_mnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    from cnnpipe.components.ingestion import formats  # noqa: PLC0415 - TensorFlow, not needed to name data sets

    images = formats.read_idx_array(os.path.join(FASHION_MNIST.path, f"{split}-images-idx3-ubyte.gz"), 3)
    labels = formats.read_idx_array(os.path.join(FASHION_MNIST.path, f"{split}-labels-idx1-ubyte.gz"), 1)
    return images, labels


def fashion_mnist_arrays(split: str, count: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 [N, 28, 28]) and labels of Fashion-MNIST's "train" or "t10k" split, the first `count`."""
    images, labels = _fashion_mnist_split(split)  # read once per process, read-only
    return images[:count], labels[:count]
