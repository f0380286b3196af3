"""How well a ranking retrieves, from the neighbours' relevance: precision@k, average precision@k, recall; where an
item's own second photo ranks it, and how many items tie with the first."""

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


def ranks(similarity: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per query, the rank of its `targets` item by `similarity` [queries, items]: 1 + how many items score higher."""
    target_scores = similarity[np.arange(len(targets)), targets]
    return 1 + (similarity > target_scores[:, None]).sum(axis=1)


def ties_with_first(similarity: np.ndarray, within: float) -> np.ndarray:
    """Per query, how many items score within `within` of its best (1: the first stands apart)."""
    return (similarity >= similarity.max(axis=1, keepdims=True) - within).sum(axis=1)


def item_figures(catalog: np.ndarray, photos: np.ndarray, items: np.ndarray, queries: np.ndarray, within: float,
                 batch: int = 256) -> dict[str, float]:
    """Whether exact search over `catalog` (unit rows) finds the item itself from a second photo of it (`photos`,
    unit rows, of the catalog rows `items`): recall@1, recall@10 and the median rank; and the median number of items
    tied with the first result (within `within`) for `queries`."""
    def by_batch(function, rows: np.ndarray, *per_row: np.ndarray) -> np.ndarray:
        return np.concatenate([function(rows[start:start + batch] @ catalog.T,
                                        *(values[start:start + batch] for values in per_row))
                               for start in range(0, len(rows), batch)])

    found_at = by_batch(ranks, photos, items)
    return {"instance_queries": len(items), "instance_recall_at_1": float(np.mean(found_at == 1)),
            "instance_recall_at_10": float(np.mean(found_at <= 10)), "instance_median_rank": float(np.median(found_at)),
            "ties_with_first": float(np.median(by_batch(lambda similarity: ties_with_first(similarity, within),
                                                        queries)))}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """The share of the true neighbours (`truth`, ids [queries, k]) that `found` (ids [queries, k]) holds too."""
    return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)]))
