"""Visual search, measured on the newest pushed version: how well it ranks, and its ScaNN index against exact search.

Search scores an item by its look and its class (`models/catalog.py`): (1 - w) x the cosine of the `embed`
embeddings + w x the query's class probabilities (scaled to unit length) at the item's class. Prints, side by side in
one run:
- the class weight w chosen on the validation split: the run's validation images as queries against its training
  split, for each of `--class-weights`, precision@10 and mAP@100 (relevant: an item of the query's class), and
  whether search finds the item itself: 1,000 catalog images photographed again (retrieval/rephotographs: moved a
  pixel, a tenth brighter or darker) as queries, the item's recall@1 and @10 and median rank; the median number of
  catalog items within 0.001 of a query's first score; on the test split also from harder photos (as well 5% larger
  or smaller, 10% more or less contrast);
- on the test split (queries: the 10,000 Fashion-MNIST test images; catalog: the 60,000 training images), the same
  figures for raw pixels, for the pushed model's look alone (w = 0, and each `--beside` model's, e.g. one trained
  with `--instance-weight 0`) and for its search as pushed (its w), with each model's accuracy; and the pushed
  `search` signature's own precision@10 (its catalog is the run's training data: the same 60,000 images);
- the ScaNN index built as the pipeline builds it (`retrieval/index.py`) over the pushed search vectors, and ScaNN's
  set-up for large catalogs (anisotropic hashing, re-scoring) beside it: build time, bytes per item, recall@10
  against exact search, and the queries/s against exact search's for the 10,000 queries in one batch, and one
  query at a time (median latency);
- what search adds to the run that pushed the model: EmbeddingIndex's wall time against the whole run's (ML
  Metadata of --output).

    .venv/bin/python bench/visual_search.py [--output cnnpipe-output] [--serving-dir OUTPUT/serving]
        [--model fashion_mnist] [--beside MODEL_DIR …] [--class-weights 0,0.02,0.05,0.1,0.2]
"""

import argparse
import dataclasses
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from scann.scann_ops.py import scann_ops_pybind
from tfx.utils import io_utils

import report  # bench/report.py, beside this script
from cnnpipe.core import features
from cnnpipe.core.names import CLASS_NAMES_ASSET
from cnnpipe.models.catalog import item_vectors, normalized, query_vectors
from cnnpipe.pipeline import metadata
from cnnpipe.pipeline.output_dir import metadata_path
from cnnpipe.components.embedding_index import INSTANCE_SAMPLE, TIE
from cnnpipe.retrieval import index, metrics, rephotographs
from cnnpipe.serving.model_config import versions

TOP_K, PRECISION_AT = 100, 10
BATCH = 1000
SINGLE_QUERIES = 200


def pngs(images: np.ndarray) -> tf.Tensor:
    """uint8 images [N, 28, 28] as PNGs, as clients send them."""
    return tf.map_fn(tf.io.encode_png, tf.constant(images[..., None]), fn_output_signature=tf.string)


def encode(pixels: np.ndarray) -> bytes:
    return tf.io.encode_png(pixels[..., None]).numpy()


@dataclasses.dataclass
class Seen:
    """What a model makes of some images: its look embeddings and class probabilities, and the images' labels."""
    looks: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, signatures, images: tf.Tensor, labels: np.ndarray) -> "Seen":
        """`images` (encoded) through the `embed` and `predict_image` signatures."""
        batches = [images[start:start + BATCH] for start in range(0, len(images), BATCH)]
        return cls(np.concatenate([signatures["embed"](images=b)["embeddings"].numpy() for b in batches]),
                   np.concatenate([signatures["predict_image"](images=b)["probabilities"].numpy() for b in batches]),
                   labels)

    def queries(self, class_weight: float) -> np.ndarray:
        return query_vectors(self.looks, self.probabilities, class_weight).numpy()

    def items(self, class_weight: float) -> np.ndarray:
        return item_vectors(self.looks, self.labels, self.probabilities.shape[1], class_weight)


def searched(catalog: Seen, queries: Seen, photos: Seen, sample: np.ndarray, class_weight: float) -> dict:
    """P@10, mAP@100, the item figures and ties of exact search with `class_weight`."""
    items, vectors = catalog.items(class_weight), queries.queries(class_weight)
    precision, average_precision = ranking(exact_top(vectors, items, TOP_K), catalog.labels, queries.labels)
    return {"precision_at_10": precision, "map_at_100": average_precision,
            **metrics.item_figures(items, photos.queries(class_weight), sample, vectors, TIE)}


def columns(figures: dict) -> str:
    return f"{figures['precision_at_10']:>6.3f} {figures['map_at_100']:>8.3f} " + item_columns(figures)


def hard_columns(catalog: np.ndarray, photos: np.ndarray, sample: np.ndarray) -> str:
    """The item's recall@1 and @10 from the harder photos (`photos`: their search vectors)."""
    figures = metrics.item_figures(catalog, photos, sample, photos[:1], TIE)
    return f" {figures['instance_recall_at_1']:>8.3f} {figures['instance_recall_at_10']:>6.3f}"


def split_of(output: str, model: str, split: str, classes: list[str]) -> tuple[tf.Tensor, np.ndarray]:
    """The encoded images and labels of the newest run's `split` (ImageExampleGen's examples under --output)."""
    examples = metadata.run_outputs(metadata_path(output), model)[1]["examples"].uri
    files = tf.io.gfile.glob(io_utils.all_files_pattern(os.path.join(examples, f"Split-{split}")))
    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in (features.IMAGE, features.CLASS_NAME)}
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(BATCH).map(
        lambda r: tf.io.parse_example(r, spec))
    images, names = zip(*((batch[features.IMAGE], batch[features.CLASS_NAME].numpy()) for batch in records))
    return tf.concat(images, 0), np.array([classes.index(name.decode()) for name in np.concatenate(names)])


def photographed(images: tf.Tensor, harder: bool = False) -> tuple[np.ndarray, tf.Tensor]:
    """The ids of INSTANCE_SAMPLE of the catalog's encoded `images`, and those images photographed again (`harder`:
    also rescaled and given another contrast)."""
    sample = np.random.default_rng(1).permutation(len(images))[:INSTANCE_SAMPLE]
    photos = (rephotographs.harder_photos if harder else rephotographs.second_photos)([images[i].numpy()
                                                                                       for i in sample])
    return sample, tf.constant(photos)


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
                        help="another exported model whose look alone to rank beside (repeatable)")
    parser.add_argument("--class-weights", default="0,0.02,0.05,0.1,0.2",
                        help="the class weights to compare on the validation split")
    args = parser.parse_args()
    base = os.path.join(args.serving_dir or os.path.join(args.output, "serving"), args.model)
    if not versions(base):
        raise SystemExit(f"{base}: no pushed version; run `make run` first (or pass --serving-dir and --model)")
    model_dir = os.path.join(base, str(versions(base)[-1]))
    loaded = tf.saved_model.load(model_dir).signatures
    if "search_vector" not in loaded:
        raise SystemExit(f"{model_dir} has no search_vector signature: it was pushed with --no-search or before it")
    with open(os.path.join(model_dir, "assets", CLASS_NAMES_ASSET), encoding="utf-8") as f:
        classes = f.read().splitlines()
    test_images, test_labels = report.fashion_mnist_arrays("t10k")
    test_queries = pngs(test_images)
    # search_vector's vectors end with √w x the unit class probabilities
    class_weight = round(float(np.square(loaded["search_vector"](images=test_queries[:1])["search_vectors"].numpy()[
        0, -len(classes):]).sum()), 6)
    print(f"model {model_dir}, pushed with class weight {class_weight}", flush=True)
    for number, path in enumerate(args.beside, start=1):
        print(f"--beside {number}: {path}")

    print(f"\nThe class weight, on the validation split of {args.output}: its images as queries, its training split as "
          "the catalog")
    catalog_images, catalog_labels = split_of(args.output, args.model, "train", classes)
    query_images, query_labels = split_of(args.output, args.model, "validation", classes)
    catalog, queries = Seen.of(loaded, catalog_images, catalog_labels), Seen.of(loaded, query_images, query_labels)
    sample, photos = photographed(catalog_images)
    photos = Seen.of(loaded, photos, catalog_labels[sample])
    print(f"{len(query_labels):,} queries, {len(catalog_labels):,} items")
    print(f"{'class weight':<28} {'P@10':>6} {'mAP@100':>8} {'item R@1':>8} {'R@10':>6} {'rank':>6} {'ties':>6}")
    swept = {}
    for weight in (float(w) for w in args.class_weights.split(",")):
        swept[weight] = searched(catalog, queries, photos, sample, weight)
        print(f"{weight:<28} " + columns(swept[weight]), flush=True)
    best = max(swept, key=lambda w: (round(swept[w]["precision_at_10"] + swept[w]["instance_recall_at_10"], 3), -w))
    print(f"chosen: {best}, the highest precision@10 + item recall@10 (the smaller weight of a tie); "
          f"the pushed model's: {class_weight}")

    print(f"\nOn the test split: {len(test_labels):,} test images as queries, the training images as the catalog")
    train_images, train_labels = report.fashion_mnist_arrays("train")
    train_pngs = pngs(train_images)
    sample, photos = photographed(train_pngs)
    _, hard = photographed(train_pngs, harder=True)
    print(f"\n{'ranking':<34} {'dims':>5} {'P@10':>6} {'mAP@100':>8} {'item R@1':>8} {'R@10':>6} {'rank':>6} "
          f"{'ties':>6} {'accuracy':>9} {'hard R@1':>8} {'R@10':>6}")
    pixels = normalized(flat(train_images))
    pixel_queries = normalized(flat(test_images))
    precision, average_precision = ranking(exact_top(pixel_queries, pixels, TOP_K), train_labels, test_labels)
    photo_pixels, hard_pixels = (normalized(flat(np.stack([tf.io.decode_png(photo).numpy()[..., 0]
                                                           for photo in taken.numpy()]))) for taken in (photos, hard))
    print(f"{'raw pixels':<34} {pixels.shape[1]:>5} {precision:>6.3f} {average_precision:>8.3f} "
          + item_columns(metrics.item_figures(pixels, photo_pixels, sample, pixel_queries, TIE)) + f" {'-':>9}"
          + hard_columns(pixels, hard_pixels, sample), flush=True)
    for name, signatures, weights in ([(f"--beside {n}", tf.saved_model.load(path).signatures, (0.0,))
                                       for n, path in enumerate(args.beside, start=1)]
                                      + [("pushed", loaded, (0.0, class_weight))]):
        catalog, queries = Seen.of(signatures, train_pngs, train_labels), Seen.of(signatures, test_queries, test_labels)
        seen_photos = Seen.of(signatures, photos, train_labels[sample])
        seen_hard = Seen.of(signatures, hard, train_labels[sample])
        accuracy = float((queries.probabilities.argmax(axis=1) == test_labels).mean())
        for weight in weights:
            label = f"{name}, look alone" if weight == 0 else f"{name}, class weight {weight}"
            dims = catalog.looks.shape[1] + (catalog.probabilities.shape[1] if weight else 0)
            print(f"{label:<34} {dims:>5} "
                  + columns(searched(catalog, queries, seen_photos, sample, weight)) + f" {accuracy:>9.2%}"
                  + hard_columns(catalog.items(weight), seen_hard.queries(weight), sample), flush=True)
    item_labels = {f"train-images-idx3-ubyte.gz:{i}": label for i, label in enumerate(train_labels)}
    sources = np.concatenate([loaded["search"](images=test_queries[start:start + BATCH])["neighbor_sources"].numpy()
                              for start in range(0, len(test_labels), BATCH)])
    found = np.vectorize(lambda source: item_labels[source.decode()])(sources)
    precision = float((found[:, :PRECISION_AT] == test_labels[:, None]).mean())
    print(f"{'search signature (pushed)':<34} {'':>5} {precision:>6.3f}  (its top {found.shape[1]})")

    items, searched_vectors = catalog.items(class_weight), queries.queries(class_weight)
    truth = exact_top(searched_vectors, items, PRECISION_AT)
    exact_batch = seconds(exact_top, searched_vectors, items, PRECISION_AT)
    exact_single = np.median([seconds(lambda q: tf.math.top_k(tf.matmul(q, items, transpose_b=True), k=10).indices
                                      .numpy(), searched_vectors[i:i + 1]) for i in range(SINGLE_QUERIES)])
    print(f"\nOver {len(items):,} items, {len(searched_vectors):,} queries: recall@10 against exact search, queries/s "
          "in one batch, median ms one query at a time")
    print(f"{'search':<40} {'build s':>7} {'B/item':>7} {'recall@10':>9} {'queries/s':>10} {'ms':>6} {'vs exact':>9}")
    print(f"{'exact (matmul, top_k)':<40} {'-':>7} {4 * items.shape[1]:>7} {1:>9.3f} "
          f"{len(searched_vectors) / exact_batch:>10,.0f} {1000 * exact_single:>6.2f} {1:>8.1f}x")
    for name, build in [("ScaNN as pushed (retrieval/index.py)", lambda: index.build(items, PRECISION_AT)),
                        ("ScaNN tree, 4-bit AH, re-score 200", lambda: hashed(items))]:
        started = time.perf_counter()
        searcher = build()
        build_seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as scratch:
            index.save(searcher, scratch, 0)
            size = sum(os.path.getsize(os.path.join(scratch, f)) for f in os.listdir(scratch))
        found = searcher.search_batched(searched_vectors)[0]
        batch = seconds(searcher.search_batched, searched_vectors)
        single = np.median([seconds(searcher.search, searched_vectors[i]) for i in range(SINGLE_QUERIES)])
        print(f"{name:<40} {build_seconds:>7.1f} {size / len(items):>7,.0f} {metrics.recall(found, truth):>9.3f} "
              f"{len(searched_vectors) / batch:>10,.0f} {1000 * single:>6.2f} {exact_batch / batch:>8.1f}x", flush=True)
    if os.path.isfile(metadata_path(args.output)):
        times = metadata.wall_times(metadata_path(args.output), args.model)
        print(f"\nWhat search adds to the newest run of {args.model} in {args.output}: EmbeddingIndex "
              f"{times.get('EmbeddingIndex', 0):.1f} s of the run's {times['run']:.1f} s "
              f"({times.get('EmbeddingIndex', 0) / times['run']:.1%}; cached components count 0)")


if __name__ == "__main__":
    main()
