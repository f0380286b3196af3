"""Data sets cnnpipe knows by name: where they are installed, their classes, their curated schema."""

import dataclasses
import gzip
import os
import struct
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


def read_idx_array(path: str) -> np.ndarray:
    """A whole gzipped IDX file of unsigned bytes as an array of the shape its header gives."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dimensions = data[3]
    shape = struct.unpack(f">{dimensions}I", data[4 : 4 + 4 * dimensions])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def fashion_mnist_arrays(split: str, count: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 [N, 28, 28]) and labels of Fashion-MNIST's "train" or "t10k" split, the first `count`."""
    images = read_idx_array(os.path.join(FASHION_MNIST.path, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx_array(os.path.join(FASHION_MNIST.path, f"{split}-labels-idx1-ubyte.gz"))
    return images[:count], labels[:count]
