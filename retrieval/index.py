"""A catalog's ScaNN index: built over its items' search vectors, saved beside the model, loaded and queried.

The searcher scores by dot product, the score the exact `search` signature ranks by (`models/catalog.py`).
Small catalogs are searched by brute force; larger ones through a k-means tree of about √n leaves, a tenth of
which each query searches, scoring their items exactly. On Fashion-MNIST's 60,000 items that is faster than 4-bit
anisotropic hashing with exact re-scoring of the best 200, and finds what exact search finds, where hashing misses
many of the top 10 once training has pulled each class's embeddings close together (docs/benchmarks.md).
"""

import json
import os
import re

import numpy as np
from scann.scann_ops.py import scann_ops_pybind

Searcher = scann_ops_pybind.ScannSearcher
BRUTE_FORCE_BELOW = 5000  # items: below this the partitioned index is not worth its training
INDEX_DIR = "scann"  # in the model's assets.extra/search/
ASSETS = "scann_assets.pbtxt"
BUILT_FOR = "built_for.json"  # the SavedModel checksum of the model whose search vectors the index holds


class IndexMismatch(ValueError):
    """The index was built for another model than the one it is served with."""


def build(embeddings: np.ndarray, top_k: int) -> Searcher:
    """A searcher over `embeddings` (search vectors, float32 [items, D]) returning `top_k` neighbours by default."""
    items = len(embeddings)
    builder = scann_ops_pybind.builder(embeddings, min(top_k, items), "dot_product")
    if items >= BRUTE_FORCE_BELOW:
        leaves = int(np.sqrt(items))
        builder = builder.tree(num_leaves=leaves, num_leaves_to_search=max(leaves // 10, 1), training_sample_size=items)
    return builder.score_brute_force().build()


def save(searcher: Searcher, directory: str, model_checksum: int) -> None:
    """Saves the searcher, and the checksum of the SavedModel (fingerprint.pb) whose search vectors it holds."""
    os.makedirs(directory, exist_ok=True)
    searcher.serialize(directory)
    with open(os.path.join(directory, BUILT_FOR), "w", encoding="utf-8") as f:
        json.dump({"saved_model_checksum": model_checksum}, f)


def load(directory: str, model_checksum: int) -> Searcher:
    """The searcher saved in `directory`, wherever that directory has been copied since; an IndexMismatch when it
    was built for another model than the one whose SavedModel checksum is `model_checksum`.

    ScaNN records its files by absolute path; they are read from `directory` instead."""
    try:
        with open(os.path.join(directory, BUILT_FOR), encoding="utf-8") as f:
            built_for = json.load(f)["saved_model_checksum"]
    except (OSError, ValueError, KeyError) as error:
        raise IndexMismatch(f"{directory}: no record of the model this search index was built for ({error}); "
                            "push the model with the index EmbeddingIndex built for it") from None
    if built_for != model_checksum:
        raise IndexMismatch(f"{directory}: this search index was built for another model (SavedModel checksum "
                            f"{built_for}, this version's is {model_checksum}); push the model with the index "
                            "EmbeddingIndex built for it")
    with open(os.path.join(directory, ASSETS), encoding="utf-8") as f:
        assets = re.sub(r'asset_path: "[^"]*?([^/"]+)"', lambda m: f'asset_path: "{os.path.join(directory, m[1])}"',
                        f.read())
    return Searcher(scann_ops_pybind.scann_pybind.ScannNumpy(directory, assets))
