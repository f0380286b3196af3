"""Exact nearest-neighbour search in the graph: the `search` signature's catalog and its top-k.

Stock TensorFlow Serving answers it with no custom op: the catalog's normalized embeddings, class names and
sources are variables of the SavedModel, and a query is one matmul and `tf.math.top_k`.
"""

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from cnnpipe.core.names import NEIGHBOR_CLASS_NAMES, NEIGHBOR_IDS, NEIGHBOR_SOURCES, SCORES


@dataclasses.dataclass(frozen=True)
class Catalog:
    """The items search answers with: row i is item i (its id), with its embedding, class name and source."""

    embeddings: np.ndarray  # float32 [items, D]
    class_names: Sequence[str]  # "" for an item without a class
    sources: Sequence[str]
    top_k: int = 10  # neighbours the signature returns per query (fewer when the catalog is smaller)

    def __post_init__(self):
        if not len(self.embeddings):
            raise ValueError("the catalog is empty: search needs at least one item")
        if not len(self.embeddings) == len(self.class_names) == len(self.sources):
            raise ValueError("a catalog needs one class name and one source per embedding")


def normalized(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), so that a dot product is the cosine."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)


class CatalogTable(tf.Module):
    """The catalog as SavedModel variables, and its exact top-k by cosine similarity."""

    def __init__(self, catalog: Catalog):
        super().__init__(name="catalog")
        self.embeddings = tf.Variable(normalized(catalog.embeddings), trainable=False, name="embeddings")
        self.class_names = tf.Variable(list(catalog.class_names), trainable=False, name="class_names")
        self.sources = tf.Variable(list(catalog.sources), trainable=False, name="sources")
        self.top_k = min(catalog.top_k, len(catalog.embeddings))

    def nearest(self, embeddings: tf.Tensor) -> dict[str, tf.Tensor]:
        """The `top_k` items most similar to each of `embeddings` [N, D], best first."""
        queries = tf.math.l2_normalize(embeddings, axis=-1)
        scores, ids = tf.math.top_k(tf.matmul(queries, self.embeddings, transpose_b=True), k=self.top_k)
        return {
            NEIGHBOR_IDS: tf.cast(ids, tf.int64),
            SCORES: scores,
            NEIGHBOR_CLASS_NAMES: tf.gather(self.class_names, ids),
            NEIGHBOR_SOURCES: tf.gather(self.sources, ids),
        }
