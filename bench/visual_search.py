"""Visual search, measured: how well a pushed model's `embed` signature ranks Fashion-MNIST images of the query's
class, beside raw pixels. Queries: the 10,000 test images; catalog: the 60,000 training images; relevant: an
item of the query's class. Exact search by cosine similarity. Prints, per representation, its size, the time to
embed the 70,000 images, precision@10 and mAP@100 (average precision over the top 100, divided by 100: every class
has far more than 100 catalog items).

    .venv/bin/python bench/visual_search.py [--serving-dir cnnpipe-output/serving] [--model fashion_mnist]
"""

import argparse
import os
import time

import numpy as np
import tensorflow as tf

import report  # bench/report.py, beside this script
from cnnpipe.serving.model_config import versions

TOP_K = 100
PRECISION_AT = 10
QUERY_BATCH = 500
EMBED_BATCH = 1000


def embed(model_dir: str, images: np.ndarray) -> np.ndarray:
    """The `embed` signature's output for uint8 images [N, 28, 28], sent as PNGs as clients send them."""
    signature = tf.saved_model.load(model_dir).signatures["embed"]
    batches = []
    for start in range(0, len(images), EMBED_BATCH):
        pngs = tf.map_fn(tf.io.encode_png, tf.constant(images[start:start + EMBED_BATCH, ..., None]),
                         fn_output_signature=tf.string)
        batches.append(signature(images=pngs)["embeddings"].numpy())
    return np.concatenate(batches)


def ranking_quality(queries: np.ndarray, query_labels: np.ndarray, catalog: np.ndarray,
                    catalog_labels: np.ndarray) -> tuple[float, float]:
    """Precision@10 and mAP@100 of exact cosine search of `queries` in `catalog`."""
    catalog = tf.math.l2_normalize(tf.constant(catalog, tf.float32), axis=1)
    ranks = np.arange(1, TOP_K + 1)
    precisions, average_precisions = [], []
    for start in range(0, len(queries), QUERY_BATCH):
        batch = tf.math.l2_normalize(tf.constant(queries[start:start + QUERY_BATCH], tf.float32), axis=1)
        _, nearest = tf.math.top_k(tf.matmul(batch, catalog, transpose_b=True), k=TOP_K)
        relevant = catalog_labels[nearest.numpy()] == query_labels[start:start + QUERY_BATCH, None]
        precisions.append(relevant[:, :PRECISION_AT].mean(axis=1))
        average_precisions.append((np.cumsum(relevant, axis=1) / ranks * relevant).sum(axis=1) / TOP_K)
    return float(np.concatenate(precisions).mean()), float(np.concatenate(average_precisions).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving-dir", default="cnnpipe-output/serving")
    parser.add_argument("--model", default="fashion_mnist")
    args = parser.parse_args()
    base = os.path.join(args.serving_dir, args.model)
    if not versions(base):
        raise SystemExit(f"{base}: no pushed version; run `make run` first (or pass --serving-dir and --model)")
    model_dir = os.path.join(base, str(versions(base)[-1]))
    catalog_images, catalog_labels = report.fashion_mnist_arrays("train")
    query_images, query_labels = report.fashion_mnist_arrays("t10k")
    print(f"queries: {len(query_images):,} test images; catalog: {len(catalog_images):,} training images; "
          f"model {model_dir}", flush=True)
    print(f"{'representation':<22} {'dims':>5} {'embed s':>8} {'P@10':>6} {'mAP@100':>8}")
    representations = {"raw pixels": lambda images: images.reshape(len(images), -1).astype(np.float32),
                        "embed signature": lambda images: embed(model_dir, images)}
    for name, represent in representations.items():
        start = time.perf_counter()
        catalog, queries = represent(catalog_images), represent(query_images)
        seconds = time.perf_counter() - start
        precision, average_precision = ranking_quality(queries, query_labels, catalog, catalog_labels)
        print(f"{name:<22} {catalog.shape[1]:>5} {seconds:>8.1f} {precision:>6.3f} {average_precision:>8.3f}",
              flush=True)


if __name__ == "__main__":
    main()
