"""How well a ranking retrieves, from the neighbours' relevance: precision@k, average precision@k, recall."""

import numpy as np


def precision_at_k(relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query, the share of its first `k` neighbours that are relevant (`relevant`: bool [queries, ≥k])."""
    return relevant[:, :k].mean(axis=1)


def average_precision_at_k(relevant: np.ndarray, k: int, relevant_items: np.ndarray) -> np.ndarray:
    """Per query, AP@k: the sum of precision@i over the ranks i ≤ k that hold a relevant neighbour, divided by
    the most it could be, min(k, the catalog's relevant items for that query) (0 when there are none)."""
    hits = relevant[:, :k].astype(np.float64)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    most = np.minimum(k, relevant_items).astype(np.float64)
    return np.divide((precision * hits).sum(axis=1), most, out=np.zeros_like(most), where=most > 0)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """The share of the true neighbours (`truth`, ids [queries, k]) that `found` (ids [queries, k]) holds too."""
    return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)]))
