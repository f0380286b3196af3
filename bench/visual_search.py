"""Visual search, measured on the newest pushed version: how well it ranks, and its ScaNN index against exact search.

Queries: the 10,000 Fashion-MNIST test images; catalog: the 60,000 training images; relevant: an item of the query's
class. Prints, side by side in one run:
- precision@10 and mAP@100 of exact cosine search over raw pixels, over the model's `embed` signature (and that of
  each `--beside` model, e.g. one trained with `--embedding-dim 0`), and of the pushed `search` signature itself
  (its catalog is the run's training split: the same 60,000 images), with each model's accuracy on the queries;
  beside them, whether each finds the item itself: 1,000 catalog images photographed again (retrieval/rephotographs:
  moved a pixel, a tenth brighter or darker) as queries, the item's recall@1 and @10 and median rank, and the median
  number of catalog items within 0.001 of a test query's first score (EmbeddingIndex's figures);
- the ScaNN index built as the pipeline builds it (`retrieval/index.py`) over the `embed` catalog, and ScaNN's
  set-up for large catalogs (anisotropic hashing, re-scoring) beside it: build time, bytes per item, recall@10
  against exact search, and the queries/s against exact search's for the 10,000 queries in one batch, and one
  query at a time (median latency);
- what search adds to the run that pushed the model: EmbeddingIndex's wall time against the whole run's (ML
  Metadata of --output).

    .venv/bin/python bench/visual_search.py [--output cnnpipe-output] [--serving-dir OUTPUT/serving]
        [--model fashion_mnist] [--beside MODEL_DIR …]
"""

import argparse
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from scann.scann_ops.py import scann_ops_pybind

import report  # bench/report.py, beside this script
from cnnpipe.models.catalog import normalized
from cnnpipe.pipeline import metadata
from cnnpipe.pipeline.output_dir import metadata_path
from cnnpipe.components.embedding_index import INSTANCE_SAMPLE, TIE
from cnnpipe.retrieval import index, metrics, rephotographs
from cnnpipe.serving.model_config import versions

TOP_K, PRECISION_AT = 100, 10
BATCH = 1000
SINGLE_QUERIES = 200


def pngs(images: np.ndarray) -> tf.Tensor:
    return tf.map_fn(tf.io.encode_png, tf.constant(images[..., None]), fn_output_signature=tf.string)


def batched(signature, images: np.ndarray, output: str) -> np.ndarray:
    """`output` of `signature` for uint8 images [N, 28, 28], sent as PNGs as clients send them."""
    return np.concatenate([signature(images=pngs(images[start:start + BATCH]))[output].numpy()
                           for start in range(0, len(images), BATCH)])


def encode(pixels: np.ndarray) -> bytes:
    return tf.io.encode_png(pixels[..., None]).numpy()


def flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32)


def item_columns(figures: dict) -> str:
    return (f"{figures['instance_recall_at_1']:>8.3f} {figures['instance_recall_at_10']:>6.3f} "
            f"{figures['instance_median_rank']:>6,.0f} {figures['ties_with_first']:>6,.0f}")


def exact_top(queries: np.ndarray, catalog: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k most similar catalog rows (unit rows: cosine), best first."""
    return np.concatenate([tf.math.top_k(tf.matmul(queries[s:s + BATCH], catalog, transpose_b=True), k=k).indices
                           for s in range(0, len(queries), BATCH)])


def ranking(found: np.ndarray, catalog_labels: np.ndarray, query_labels: np.ndarray) -> tuple[float, float]:
    relevant = catalog_labels[found] == query_labels[:, None]
    per_class = np.bincount(catalog_labels)[query_labels]
    return (float(metrics.precision_at_k(relevant, PRECISION_AT).mean()),
            float(metrics.average_precision_at_k(relevant, TOP_K, per_class).mean()))


def hashed(catalog: np.ndarray) -> index.Searcher:
    """ScaNN's set-up for large catalogs, for comparison: the same tree, 4-bit anisotropic hashing in the searched
    leaves, the best 200 candidates re-scored exactly."""
    leaves = int(np.sqrt(len(catalog)))
    return (scann_ops_pybind.builder(catalog, PRECISION_AT, "dot_product")
            .tree(num_leaves=leaves, num_leaves_to_search=leaves // 10, training_sample_size=len(catalog))
            .score_ah(2, anisotropic_quantization_threshold=0.2).reorder(200).build())


def seconds(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="cnnpipe-output", help="the run's --output (its metadata.sqlite)")
    parser.add_argument("--serving-dir", help="default OUTPUT/serving")
    parser.add_argument("--model", default="fashion_mnist")
    parser.add_argument("--beside", action="append", default=[], metavar="MODEL_DIR",
                        help="another exported model whose embed signature to rank beside (repeatable)")
    args = parser.parse_args()
    base = os.path.join(args.serving_dir or os.path.join(args.output, "serving"), args.model)
    if not versions(base):
        raise SystemExit(f"{base}: no pushed version; run `make run` first (or pass --serving-dir and --model)")
    model_dir = os.path.join(base, str(versions(base)[-1]))
    loaded = tf.saved_model.load(model_dir).signatures
    if "search" not in loaded:
        raise SystemExit(f"{model_dir} has no search signature: it was pushed with --no-search or before search")
    catalog_images, catalog_labels = report.fashion_mnist_arrays("train")
    query_images, query_labels = report.fashion_mnist_arrays("t10k")
    print(f"queries: {len(query_images):,} test images; catalog: {len(catalog_images):,} training images; "
          f"model {model_dir}", flush=True)
    for number, path in enumerate(args.beside, start=1):
        print(f"--beside {number}: {path}")

    sample = np.random.default_rng(1).permutation(len(catalog_images))[:INSTANCE_SAMPLE]
    photos = rephotographs.second_photos([encode(catalog_images[i]) for i in sample])
    print(f"\n{'ranking':<28} {'dims':>5} {'P@10':>6} {'mAP@100':>8} {'accuracy':>9} {'item R@1':>8} {'R@10':>6} "
          f"{'rank':>6} {'ties':>6}")
    pixels = normalized(flat(catalog_images))
    pixel_queries = normalized(flat(query_images))
    precision, average_precision = ranking(exact_top(pixel_queries, pixels, TOP_K), catalog_labels, query_labels)
    photo_pixels = normalized(flat(np.stack([tf.io.decode_png(photo).numpy()[..., 0] for photo in photos])))
    print(f"{'raw pixels, exact':<28} {pixels.shape[1]:>5} {precision:>6.3f} {average_precision:>8.3f} {'-':>9} "
          + item_columns(metrics.item_figures(pixels, photo_pixels, sample, pixel_queries, TIE)), flush=True)
    for name, signatures in ([(f"embed of --beside {number}", tf.saved_model.load(path).signatures)
                              for number, path in enumerate(args.beside, start=1)]
                             + [("embed signature, exact", loaded)]):
        catalog = normalized(batched(signatures["embed"], catalog_images, "embeddings"))
        queries = normalized(batched(signatures["embed"], query_images, "embeddings"))
        precision, average_precision = ranking(exact_top(queries, catalog, TOP_K), catalog_labels, query_labels)
        accuracy = float((batched(signatures["predict_image"], query_images, "class_ids") == query_labels).mean())
        photo_vectors = normalized(np.concatenate([signatures["embed"](images=tf.constant(photos[s:s + BATCH]))
                                                   ["embeddings"].numpy() for s in range(0, len(photos), BATCH)]))
        print(f"{name:<28} {catalog.shape[1]:>5} {precision:>6.3f} {average_precision:>8.3f} {accuracy:>9.2%} "
              + item_columns(metrics.item_figures(catalog, photo_vectors, sample, queries, TIE)), flush=True)
    item_labels = {source: label for source, label in zip(
        (f"train-images-idx3-ubyte.gz:{i}" for i in range(len(catalog_labels))), catalog_labels)}
    sources = batched(loaded["search"], query_images, "neighbor_sources")
    searched = np.vectorize(lambda s: item_labels[s.decode()])(sources)
    precision = float((searched[:, :PRECISION_AT] == query_labels[:, None]).mean())
    print(f"{'search signature (pushed)':<28} {catalog.shape[1]:>5} {precision:>6.3f} {'-':>8}  "
          f"(its top {searched.shape[1]})")

    truth = exact_top(queries, catalog, PRECISION_AT)
    exact_batch = seconds(exact_top, queries, catalog, PRECISION_AT)
    exact_single = np.median([seconds(lambda q: tf.math.top_k(tf.matmul(q, catalog, transpose_b=True), k=10).indices
                                      .numpy(), queries[i:i + 1]) for i in range(SINGLE_QUERIES)])
    print(f"\nOver {len(catalog):,} items, {len(queries):,} queries: recall@10 against exact search, queries/s in one "
          "batch, median ms one query at a time")
    print(f"{'search':<40} {'build s':>7} {'B/item':>7} {'recall@10':>9} {'queries/s':>10} {'ms':>6} {'vs exact':>9}")
    print(f"{'exact (matmul, top_k)':<40} {'-':>7} {4 * catalog.shape[1]:>7} {1:>9.3f} "
          f"{len(queries) / exact_batch:>10,.0f} {1000 * exact_single:>6.2f} {1:>8.1f}x")
    for name, build in [("ScaNN as pushed (retrieval/index.py)", lambda: index.build(catalog, PRECISION_AT)),
                        ("ScaNN tree, 4-bit AH, re-score 200", lambda: hashed(catalog))]:
        started = time.perf_counter()
        searcher = build()
        build_seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as scratch:
            index.save(searcher, scratch, 0)
            size = sum(os.path.getsize(os.path.join(scratch, f)) for f in os.listdir(scratch))
        found = searcher.search_batched(queries)[0]
        batch = seconds(searcher.search_batched, queries)
        single = np.median([seconds(searcher.search, queries[i]) for i in range(SINGLE_QUERIES)])
        print(f"{name:<40} {build_seconds:>7.1f} {size / len(catalog):>7,.0f} {metrics.recall(found, truth):>9.3f} "
              f"{len(queries) / batch:>10,.0f} {1000 * single:>6.2f} {exact_batch / batch:>8.1f}x", flush=True)
    if os.path.isfile(metadata_path(args.output)):
        times = metadata.wall_times(metadata_path(args.output), args.model)
        print(f"\nWhat search adds to the newest run of {args.model} in {args.output}: EmbeddingIndex "
              f"{times.get('EmbeddingIndex', 0):.1f} s of the run's {times['run']:.1f} s "
              f"({times.get('EmbeddingIndex', 0) / times['run']:.1%}; cached components count 0)")


if __name__ == "__main__":
    main()
