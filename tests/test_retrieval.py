"""The retrieval figures and the ScaNN index on their own: hand-worked rankings, and an index that still loads
after it was copied elsewhere (as a push copies it)."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import encode, fashion_mnist

from cnnpipe.components import embedding_index
from cnnpipe.core import features
from cnnpipe.core.names import EMBEDDINGS, PROBABILITIES
from cnnpipe.models.catalog import Catalog, normalized, query_vectors
from cnnpipe.report import summary
from cnnpipe.retrieval import index, metrics, rephotographs


def test_precision_and_average_precision_of_hand_worked_rankings():
    relevant = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    np.testing.assert_allclose(metrics.precision_at_k(relevant, 2), [0.5, 0.0, 1.0])
    # query 0: hits at ranks 1 and 3 -> (1/1 + 2/3) / min(4, 5 relevant in the catalog)
    np.testing.assert_allclose(metrics.average_precision_at_k(relevant, 4, np.array([5, 0, 2])),
                               [(1 + 2 / 3) / 4, 0.0, 4 / 2])
    assert metrics.recall(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 9], [4, 5, 6]])) == pytest.approx(5 / 6)


def test_ranks_and_ties_of_hand_worked_scores():
    similarity = np.array([[0.9, 0.95, 0.2, 0.9995], [0.1, 0.3, 0.5, 0.5], [0.7, 0.7, 0.7, 0.7]])
    np.testing.assert_array_equal(metrics.ranks(similarity, np.array([0, 2, 3])), [3, 1, 1])  # ties are not above
    np.testing.assert_array_equal(metrics.ties_with_first(similarity, 0.001), [1, 2, 4])


def test_a_search_score_is_mostly_the_cosine_and_partly_the_query_s_probability_of_the_item_s_class():
    looks = np.array([[3.0, 4.0], [4.0, 3.0], [0.0, 2.0]])  # unit: (0.6, 0.8), (0.8, 0.6), (0, 1)
    catalog = Catalog(looks, ["Coat", "Bag", "Hat"], ["a", "b", "c"], classes=["Bag", "Coat"], class_weight=0.2)
    query = query_vectors(np.array([[6.0, 8.0]]), np.array([[0.3, 0.4]]), 0.2).numpy()  # probabilities: (0.6, 0.8)
    scores = query @ catalog.vectors().T
    # 0.8 x the cosine + 0.2 x the unit probabilities at the item's class (none for a class the model does not know)
    np.testing.assert_allclose(scores, [[0.8 * 1.0 + 0.2 * 0.8, 0.8 * 0.96 + 0.2 * 0.6, 0.8 * 0.8]], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(query, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="share of the score"):
        Catalog(looks, ["Coat"] * 3, ["a", "b", "c"], ["Coat"], class_weight=1.0)


def test_a_second_photo_is_the_image_moved_a_pixel_with_its_edge_repeated_and_a_tenth_brighter():
    pixels = fashion_mnist("t10k", 1)[0][0]
    photo = rephotographs.rephotographed(tf.constant(encode(pixels)), (1, -1), 0.1)
    moved = np.pad(pixels, 1, mode="symmetric")[0:28, 2:30]  # down one row, left one column
    expected = np.clip(np.round(moved.astype(np.float32) * 1.1), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(tf.io.decode_png(photo).numpy()[..., 0], expected)
    photos = rephotographs.second_photos([encode(pixels)] * 50)
    assert len(set(photos)) > 8 and all(photo != encode(pixels) for photo in photos)  # 8 shifts × 2 brightnesses


def test_a_harder_photo_is_also_rescaled_about_its_centre_and_given_more_or_less_contrast():
    pixels = fashion_mnist("t10k", 1)[0][0]
    same = rephotographs.restyled(tf.constant(encode(pixels)), 0.0, 0.0)
    np.testing.assert_array_equal(tf.io.decode_png(same).numpy()[..., 0], pixels)
    contrasted = tf.io.decode_png(rephotographs.restyled(tf.constant(encode(pixels)), 0.0, 0.1)).numpy()[..., 0]
    mean = pixels.astype(np.float32).mean()
    np.testing.assert_allclose(contrasted, np.clip(np.round(mean + (pixels - mean) * 1.1), 0, 255), atol=1)
    larger = tf.io.decode_png(rephotographs.restyled(tf.constant(encode(pixels)), 0.05, 0.0)).numpy()[..., 0]
    assert larger.shape == pixels.shape and (larger != pixels).any()
    photos = rephotographs.harder_photos([encode(pixels)] * 20)
    assert len(set(photos)) > 8 and encode(pixels) not in photos


@pytest.mark.parametrize("items", [300, 6000], ids=["brute force", "k-means tree"])
def test_an_index_copied_elsewhere_loads_and_finds_each_item_itself(tmp_path, items):
    rng = np.random.default_rng(0)
    embeddings = normalized(rng.normal(size=(items, 16)))
    index.save(index.build(embeddings, 10), str(tmp_path / "built"), model_checksum=7)
    copied = shutil.move(str(tmp_path / "built"), str(tmp_path / "pushed"))
    searcher = index.load(copied, model_checksum=7)
    ids, scores = searcher.search_batched(embeddings[:200])
    assert ids.shape == (200, 10)
    assert (ids[:, 0] == np.arange(200)).mean() >= 0.95
    np.testing.assert_allclose(scores[ids[:, 0] == np.arange(200), 0], 1.0, atol=1e-2)
    with pytest.raises(index.IndexMismatch, match="built for another model"):
        index.load(copied, model_checksum=8)


def test_a_catalog_without_classes_is_measured_for_speed_and_recall_and_its_precision_is_unknown():
    rng = np.random.default_rng(0)
    catalog = Catalog(rng.normal(size=(300, 16)), [""] * 300, [f"item {i}" for i in range(300)], ["Bag", "Coat"])
    read = {EMBEDDINGS: catalog.embeddings, features.CLASS_NAME: np.full(300, b"")}
    queries = {EMBEDDINGS: rng.normal(size=(20, 16)), PROBABILITIES: rng.uniform(size=(20, 2)),
               features.CLASS_NAME: np.full(20, b"Bag")}
    vectors = catalog.vectors()
    figures = embedding_index._measure(index.build(vectors, 10), vectors, read, queries,
                                       embedding_index._searched(queries, catalog.class_weight), 0.5, 30_000)
    assert "precision_at_10" not in figures and figures["queries"] == 20 and figures["ann_recall_at_10"] == 1.0
    assert embedding_index.failures(figures, 0.0, 0.01) == []
    assert "unknown" in embedding_index.failures(figures, 0.5, None)[0]
    assert summary.retrieval_lines(figures)[1] == (
        "  precision@10 and mAP@100 unknown: images without a class among the catalog or the queries")
