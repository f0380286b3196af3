"""Exact nearest-neighbour search in the graph: the `search` signature's catalog and its top-k.

A search score is mostly the cosine between the look embeddings of the query and an item, and partly how probable
the model finds the item's class for the query: (1 - w) x cosine + w x the query's class probabilities, scaled to
unit length, at the item's class. Both are one dot product of search vectors (`item_vectors`, `query_vectors`), so
exact search and a ScaNN index over the item vectors rank alike. The class term uses what a catalog knows, its
items' classes, and keeps results in the query's class where looks alone stray; the look term orders them, and
finds the item itself (docs/search.md measures both).

Stock TensorFlow Serving answers it with no custom op: the catalog's search vectors, class names and sources are
variables of the SavedModel, and a query is one matmul and `tf.math.top_k`.
"""

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from cnnpipe.core.names import NEIGHBOR_CLASS_NAMES, NEIGHBOR_IDS, NEIGHBOR_SOURCES, SCORES

CLASS_WEIGHT = 0.05  # w, the class term's share of a search score: chosen on the validation split (docs/search.md)


@dataclasses.dataclass(frozen=True)
class Catalog:
    """The items search answers with: row i is item i (its id), with its embedding, class name and source; `classes`
    are the model's, in the order of its probabilities."""

    embeddings: np.ndarray  # float32 [items, D]
    class_names: Sequence[str]  # "" (or a class the model does not know) for an item without a class term
    sources: Sequence[str]
    classes: Sequence[str]
    top_k: int = 10  # neighbours the signature returns per query (fewer when the catalog is smaller)
    class_weight: float = CLASS_WEIGHT

    def __post_init__(self):
        if not len(self.embeddings):
            raise ValueError("the catalog is empty: search needs at least one item")
        if not len(self.embeddings) == len(self.class_names) == len(self.sources):
            raise ValueError("a catalog needs one class name and one source per embedding")
        if not 0.0 <= self.class_weight < 1.0:
            raise ValueError(f"the class weight is a share of the score, in [0, 1), not {self.class_weight}")

    def vectors(self) -> np.ndarray:
        """The items' search vectors."""
        column = {name: i for i, name in enumerate(self.classes)}
        return item_vectors(self.embeddings, np.array([column.get(name, -1) for name in self.class_names]),
                            len(self.classes), self.class_weight)


def normalized(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), so that a dot product is the cosine."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)


def item_vectors(embeddings: np.ndarray, class_ids: np.ndarray, classes: int, class_weight: float) -> np.ndarray:
    """Search vectors of catalog items [items, D + classes]: √(1 - w) x the unit embedding beside √w x the one-hot
    class (zeros for a class id of -1)."""
    one_hot = (class_ids[:, None] == np.arange(classes)).astype(np.float32)
    return np.concatenate([np.sqrt(1 - class_weight) * normalized(embeddings), np.sqrt(class_weight) * one_hot],
                          axis=1).astype(np.float32)


def query_vectors(embeddings: tf.Tensor, probabilities: tf.Tensor, class_weight: float) -> tf.Tensor:
    """Search vectors of queries [N, D + classes], of unit length: √(1 - w) x the unit embedding beside √w x the class
    probabilities scaled to unit length. (NumPy arrays in, a tensor out.)"""
    return tf.concat([np.sqrt(1 - class_weight) * tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=-1),
                      np.sqrt(class_weight) * tf.math.l2_normalize(tf.cast(probabilities, tf.float32), axis=-1)],
                     axis=-1)


class CatalogTable(tf.Module):
    """The catalog as SavedModel variables, and its exact top-k by search score."""

    def __init__(self, catalog: Catalog):
        super().__init__(name="catalog")
        self.vectors = tf.Variable(catalog.vectors(), trainable=False, name="vectors")
        self.class_weight = catalog.class_weight
        self.class_names = tf.Variable(list(catalog.class_names), trainable=False, name="class_names")
        self.sources = tf.Variable(list(catalog.sources), trainable=False, name="sources")
        self.top_k = min(catalog.top_k, len(catalog.embeddings))

    def nearest(self, queries: tf.Tensor) -> dict[str, tf.Tensor]:
        """The `top_k` items scoring highest for each query (`query_vectors`), best first."""
        scores, ids = tf.math.top_k(tf.matmul(queries, self.vectors, transpose_b=True), k=self.top_k)
        return {
            NEIGHBOR_IDS: tf.cast(ids, tf.int64),
            SCORES: scores,
            NEIGHBOR_CLASS_NAMES: tf.gather(self.class_names, ids),
            NEIGHBOR_SOURCES: tf.gather(self.sources, ids),
        }
