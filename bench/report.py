"""What the benches share: real Fashion-MNIST as arrays, and printing a measured table (and, when asked,
writing it under the marker of its page in docs/)."""

import functools
import os
from typing import Optional

import numpy as np

from cnnpipe.components.ingestion.formats import read_idx_array
from cnnpipe.pipeline.datasets import FASHION_MNIST
from cnnpipe.serving.model_config import versions

MARKER = "<!-- table -->"
SERVED = os.path.join("cnnpipe-output", "serving", FASHION_MNIST.name)  # where `make run` pushes
DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")


def newest_version(base: str = SERVED) -> str:
    """The newest version pushed under the model base path `base`."""
    pushed = versions(base)
    if not pushed:
        raise SystemExit(f"no pushed model under {base}: run `make run` first, or pass --model SAVED_MODEL_DIR")
    return os.path.join(base, str(pushed[-1]))


@functools.lru_cache(maxsize=None)
def _fashion_mnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    path = os.path.join(FASHION_MNIST.path, f"{split}-{{}}-idx{{}}-ubyte.gz")
    return read_idx_array(path.format("images", 3), 3), read_idx_array(path.format("labels", 1), 1)


def fashion_mnist_arrays(split: str, count: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 [N, 28, 28]) and labels of Fashion-MNIST's "train" or "t10k" split, the first `count`."""
    images, labels = _fashion_mnist_split(split)  # read once per process, read-only
    return images[:count], labels[:count]


def markdown_table(caption: str, columns: list[str], rows: list[list[str]]) -> str:
    """`caption`, a blank line, then a Markdown table."""
    lines = [caption, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def publish(table: str, doc_name: str, write: bool) -> None:
    """Prints `table`; with `write`, replaces what follows the marker in docs/`doc_name`."""
    print("\n" + table)
    if not write:
        return
    path = os.path.normpath(os.path.join(DOCS, doc_name))
    with open(path) as f:
        head = f.read().split(MARKER)[0]
    with open(path, "w") as f:
        f.write(f"{head}{MARKER}\n{table}\n")
    print(f"\nwrote {path}")
