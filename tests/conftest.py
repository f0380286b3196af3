"""Shared fixtures: real Fashion-MNIST slices written in each input format."""

import gzip
import io
import os
import struct

import numpy as np
import pytest
from PIL import Image

from cnnpipe.pipeline.datasets import FASHION_MNIST, fashion_mnist_arrays


def fashion_mnist(split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` real images and labels of a Fashion-MNIST split ("train" or "t10k")."""
    if not os.path.isdir(FASHION_MNIST.path):
        pytest.skip(f"Fashion-MNIST is not installed: {FASHION_MNIST.install_hint}")
    return fashion_mnist_arrays(split, count)


def write_idx(directory: str, split: str, images: np.ndarray, labels: np.ndarray) -> str:
    """Writes an IDX pair `<split>-images-idx3-ubyte.gz` / `<split>-labels-idx1-ubyte.gz`."""
    os.makedirs(directory, exist_ok=True)
    images_path = os.path.join(directory, f"{split}-images-idx3-ubyte.gz")
    with gzip.open(images_path, "wb") as f:
        f.write(struct.pack(">4B3I", 0, 0, 8, 3, *images.shape) + images.astype(np.uint8).tobytes())
    with gzip.open(os.path.join(directory, f"{split}-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">4BI", 0, 0, 8, 1, len(labels)) + labels.astype(np.uint8).tobytes())
    return images_path


def write_fashion_mnist_slice(directory: str, train: int, test: int) -> str:
    """A real Fashion-MNIST slice as IDX files with the data set's own train/t10k split."""
    write_idx(directory, "train", *fashion_mnist("train", train))
    write_idx(directory, "t10k", *fashion_mnist("t10k", test))
    return directory


def encode(pixels: np.ndarray, mode: str = "L", size=None, image_format: str = "PNG") -> bytes:
    """Real pixels as an encoded image in a colour `mode`, resized to `size` (width, height)."""
    image = Image.fromarray(pixels).convert(mode)
    if size:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()
