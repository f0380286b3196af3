"""EmbeddingIndex: the trained model with its catalog, ready for visual search, as one Model artifact.

After the Trainer: embeds the catalog (the run's training and validation splits, or every image of a `catalog` of its
own) with the model's `embed` signature, exports the model again with a `search` signature over those embeddings and
the items' classes (`models/catalog.py`'s search vectors; exact, in the graph: stock TF Serving answers it), and
writes beside it, in `assets.extra/search/`, the catalog's
item table (source, class, thumbnail) and a ScaNN index (`cnnpipe serve` answers `search` with it), and in
`assets.extra/transform_graph/` the Transform output the model was exported with, so that `cnnpipe index` can
index a pushed model anew over another catalog. The Evaluator, PushCheck and Pusher take this artifact as the
candidate, so a pushed version never answers with another version's index.

It measures the index with the eval split's images as queries (same class = relevant): precision@10 and mAP@100
of exact search, overall and per class; whether it finds the item itself, with 1,000 catalog items photographed
again as queries (instance recall@1 and @10, the item's median rank), and how many items tie with a query's first
result; ScaNN's recall@10 against exact search and the queries/s of both; the build time and the index's bytes per
item; and the served model's precision@10 through its own `search` signature, when it has one. Without query images
(`cnnpipe index`), catalog items are the queries of the recall and speed figures. They are the artifact's custom
properties and `retrieval.json` beside the model, with the thresholds applied (`thresholds`, for the run report) and
those the figures failed (`failures`), which the project's Evaluator turns into no blessing.
"""

import json
import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils, path_utils

from cnnpipe.components.served_model import baseline_dir
from cnnpipe.core import features
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import (CLASS_NAMES_ASSET, EMBED, EMBEDDINGS, EVAL, NEIGHBOR_CLASS_NAMES, PREDICT_IMAGE,
                                PROBABILITIES, SEARCH, SEARCH_ASSETS, TRAIN, TRANSFORM_ASSETS, VALIDATION)
from cnnpipe.models import embedding, signatures  # noqa: F401 - embedding registers CosineClassifier for loading
from cnnpipe.models.catalog import CLASS_WEIGHT, Catalog, query_vectors
from cnnpipe.models.warm_start import holds_saved_model
from cnnpipe.retrieval import index, items, metrics, rephotographs

BATCH = 1024
THUMBNAIL = 64  # pixels: larger images are shrunk to fit a square this size
PRECISION_AT, AP_AT, RECALL_AT = 10, 100, 10
RECALL_SAMPLE = 1000  # catalog items that are the queries of the recall and speed figures when there are no queries
INSTANCE_SAMPLE = 1000  # catalog items photographed again (retrieval/rephotographs.py), the instance queries
TIE = 0.001  # items scoring within this of a query's first tie with it
EXAMPLES_PER_CLASS, EXAMPLES = 2, 20  # query images the search page offers: this many of each class, at most
METRICS_FILE = "retrieval.json"  # beside the SavedModel in the artifact
_SPEC = {features.IMAGE: tf.io.FixedLenFeature([], tf.string),
         features.CLASS_NAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
         features.SOURCE: tf.io.FixedLenFeature([], tf.string, default_value=""),
         features.HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=THUMBNAIL + 1),
         features.WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=THUMBNAIL + 1)}


def _shrunk(image: tf.Tensor) -> tf.Tensor:
    """A PNG of the encoded `image` shrunk to fit a THUMBNAIL-pixel square."""
    decoded = tf.io.decode_image(image, expand_animations=False)
    return tf.io.encode_png(tf.cast(tf.image.resize(decoded, [THUMBNAIL, THUMBNAIL], preserve_aspect_ratio=True,
                                                    antialias=True), tf.uint8))


def _thumbnails(batch: dict[str, tf.Tensor]) -> np.ndarray:
    """Each image's thumbnail: its own encoded bytes when it fits THUMBNAIL pixels (Fashion-MNIST's do)."""
    images = batch[features.IMAGE].numpy()
    large = (batch[features.HEIGHT].numpy() > THUMBNAIL) | (batch[features.WIDTH].numpy() > THUMBNAIL)
    for i in np.flatnonzero(large):
        images[i] = _shrunk(images[i]).numpy()
    return images


def _split_files(examples: standard_artifacts.Examples, splits: list[str]) -> list[str]:
    return [file for split in splits for file in
            tf.io.gfile.glob(io_utils.all_files_pattern(artifact_utils.get_split_uri([examples], split)))]


def _seen(signatures, images: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings and class probabilities of a batch of encoded `images`."""
    return (signatures[EMBED](images=images)[EMBEDDINGS].numpy(),
            signatures[PREDICT_IMAGE](images=images)[PROBABILITIES].numpy())


def _read(files: list[str], name: str, signatures, thumbnails: bool) -> dict[str, np.ndarray]:
    """The embeddings, class probabilities, class names and sources (and thumbnails, or the images) of the tf.Examples
    in `files`, batch by batch through tf.data; `name` says which images they are in errors and progress."""
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(BATCH)
    columns: dict[str, list] = {EMBEDDINGS: [], PROBABILITIES: [], features.CLASS_NAME: [], features.SOURCE: [],
                                "thumbnail": [], features.IMAGE: []}
    started = time.monotonic()
    for batch in records.map(lambda r: tf.io.parse_example(r, _SPEC)):
        embeddings, probabilities = _seen(signatures, batch[features.IMAGE])
        columns[EMBEDDINGS].append(embeddings)
        columns[PROBABILITIES].append(probabilities)
        columns[features.CLASS_NAME].append(batch[features.CLASS_NAME].numpy())
        columns[features.SOURCE].append(batch[features.SOURCE].numpy())
        if thumbnails:
            columns["thumbnail"].append(_thumbnails(batch))
        else:  # queries: kept to ask the served model too
            columns[features.IMAGE].append(batch[features.IMAGE].numpy())
        if len(columns[EMBEDDINGS]) % 10 == 0:
            logging.info("EmbeddingIndex: %d %s images embedded in %.0f s", sum(map(len, columns[EMBEDDINGS])),
                         name, time.monotonic() - started)
    if not columns[EMBEDDINGS]:
        raise CnnpipeError(f"EmbeddingIndex: the {name} has no images to embed ({len(files)} files).")
    return {key: np.concatenate(value) for key, value in columns.items() if value}


def _exact_neighbours(queries: np.ndarray, catalog: np.ndarray, k: int) -> np.ndarray:
    """The ids of each query's k best-scoring catalog items (search vectors), best first."""
    found = [tf.math.top_k(tf.matmul(queries[start:start + BATCH], catalog, transpose_b=True), k=k).indices.numpy()
             for start in range(0, len(queries), BATCH)]
    return np.concatenate(found)


def _timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def _measure(searcher: index.Searcher, vectors: np.ndarray, catalog: dict, queries: Optional[dict],
             searched: Optional[np.ndarray], build_seconds: float, index_bytes: int) -> dict:
    """The retrieval figures of exact search over the items' search `vectors` and of the ScaNN index for the query
    images (`searched`: their search vectors); without them, the recall and speed of a sample of items as queries."""
    sample = np.random.default_rng(0).permutation(len(vectors))[:RECALL_SAMPLE]
    searched = searched if queries else vectors[sample]
    k = min(AP_AT, len(vectors))
    exact, _ = _timed(_exact_neighbours, searched, vectors, k)
    exact_top, exact_seconds = _timed(_exact_neighbours, searched, vectors, min(RECALL_AT, k))
    (ann_top, _), ann_seconds = _timed(searcher.search_batched, searched, min(RECALL_AT, k))
    figures = {
        "catalog_items": len(vectors),
        "queries": len(queries[EMBEDDINGS]) if queries else 0,
        "ann_recall_at_10": metrics.recall(ann_top, exact_top),
        "exact_queries_per_second": len(searched) / exact_seconds,
        "ann_queries_per_second": len(searched) / ann_seconds,
        "build_seconds": build_seconds,
        "index_bytes_per_item": index_bytes / len(vectors),
    }
    if not queries:
        return figures
    item_classes, query_classes = catalog[features.CLASS_NAME], queries[features.CLASS_NAME]
    if (item_classes == b"").any() or (query_classes == b"").any():
        return figures  # without classes on every image, relevance is unknown
    relevant = item_classes[exact] == query_classes[:, None]
    class_items = dict(zip(*np.unique(item_classes, return_counts=True)))
    precision = metrics.precision_at_k(relevant, PRECISION_AT)
    average_precision = metrics.average_precision_at_k(relevant, AP_AT,
                                                       np.array([class_items.get(c, 0) for c in query_classes]))
    figures.update(precision_at_10=float(precision.mean()), map_at_100=float(average_precision.mean()), per_class={
        name.decode(): {"queries": int((query_classes == name).sum()),
                        "precision_at_10": float(precision[query_classes == name].mean()),
                        "map_at_100": float(average_precision[query_classes == name].mean())}
        for name in np.unique(query_classes)})
    return figures


def _images_at(files: list[str], positions: np.ndarray) -> list[bytes]:
    """The encoded images of the records at `positions` in `files`, read in `_read`'s order."""
    wanted = tf.constant(np.unique(positions), tf.int64)
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").enumerate()
    found = dict(records.filter(lambda position, _: tf.reduce_any(tf.equal(position, wanted))).map(
        lambda position, record: (position, tf.io.parse_single_example(record, {features.IMAGE: _SPEC[features.IMAGE]})[
            features.IMAGE])).as_numpy_iterator())
    return [found[position] for position in positions]


def _searched(read: dict, class_weight: float) -> np.ndarray:
    """The search vectors of `_read`'s images as queries."""
    return query_vectors(read[EMBEDDINGS], read[PROBABILITIES], class_weight).numpy()


def _instance_figures(signatures, catalog_files: list[str], vectors: np.ndarray, searched: Optional[np.ndarray],
                      class_weight: float) -> dict:
    """Whether search finds the item itself: INSTANCE_SAMPLE catalog items photographed again as queries; and how many
    items tie with a query's first result (over the query images' search vectors, `searched`, else those photos)."""
    sample = np.random.default_rng(1).permutation(len(vectors))[:INSTANCE_SAMPLE]
    photos = rephotographs.second_photos(_images_at(catalog_files, sample))
    seen = [_seen(signatures, tf.constant(photos[start:start + BATCH])) for start in range(0, len(photos), BATCH)]
    photo_vectors = query_vectors(*(np.concatenate(column) for column in zip(*seen)), class_weight).numpy()
    return metrics.item_figures(vectors, photo_vectors, sample, photo_vectors if searched is None else searched, TIE)


def _examples(read: dict, chosen: int) -> items.Items:
    """Up to `chosen` of the `read` images, as the search page's examples: the first of each class, then the second,
    and so on (EXAMPLES_PER_CLASS of each, more when there are few classes)."""
    classes = read[features.CLASS_NAME]
    names = np.unique(classes)
    per_class = max(EXAMPLES_PER_CLASS, chosen // len(names))
    by_class = [np.flatnonzero(classes == name)[:per_class].tolist() for name in names]
    picked = [indices[rank] for rank in range(per_class) for indices in by_class if rank < len(indices)][:chosen]
    images = read["thumbnail"] if "thumbnail" in read else read[features.IMAGE]
    return items.Items([read[features.SOURCE][i].decode() for i in picked], [classes[i].decode() for i in picked],
                       [images[i] for i in picked])


def _served_precision(baseline, queries: Optional[dict]) -> float | None:
    """Precision@10 of the served model's own `search` (its own catalog) for the queries; None without one."""
    served = baseline_dir(baseline) if baseline is not None and queries else None
    signatures = tf.saved_model.load(served).signatures if served else {}
    if SEARCH not in signatures or (queries[features.CLASS_NAME] == b"").any():
        return None
    found = np.concatenate([signatures[SEARCH](images=tf.constant(queries[features.IMAGE][start:start + BATCH]))
                            [NEIGHBOR_CLASS_NAMES].numpy() for start in range(0, len(queries[EMBEDDINGS]), BATCH)])
    return float(metrics.precision_at_k(found == queries[features.CLASS_NAME][:, None], PRECISION_AT).mean())


def failures(figures: dict, min_precision: float, max_precision_drop: float | None,
             min_instance_recall: float = 0.0) -> list[str]:
    """The search thresholds the figures fail, each in words with its margin."""
    precision, served = figures.get("precision_at_10"), figures.get("served_precision_at_10")
    found = []
    recall = figures.get("instance_recall_at_10")
    if recall is not None and recall < min_instance_recall:
        found.append(f"search instance recall@10 {recall:.4f} is below the lower bound {min_instance_recall:.4f} "
                     f"(by {min_instance_recall - recall:.4f}).")
    if precision is None:
        return found + (["search precision@10 is unknown (images without a class): drop --min-retrieval-precision."]
                        if min_precision > 0 else [])
    if precision < min_precision:
        found.append(f"search precision@10 {precision:.4f} is below the lower bound {min_precision:.4f} "
                     f"(by {min_precision - precision:.4f}).")
    if max_precision_drop is not None and served is not None and precision < served - max_precision_drop:
        found.append(f"search precision@10 is {served - precision:.4f} below the served model's (allowed: "
                     f"{max_precision_drop:.4f}; over by {served - precision - max_precision_drop:.4f}).")
    return found


def _directory_bytes(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(directory) for name in names)


@component
def EmbeddingIndex(
    model: InputArtifact[standard_artifacts.Model],
    indexed_model: OutputArtifact[standard_artifacts.Model],
    transform_graph: InputArtifact[standard_artifacts.TransformGraph] = None,
    examples: InputArtifact[standard_artifacts.Examples] = None,
    catalog: InputArtifact[standard_artifacts.Examples] = None,
    baseline: InputArtifact[standard_artifacts.Model] = None,
    top_k: Parameter[int] = 10,
    catalog_splits: Parameter[str] = f"{TRAIN},{VALIDATION}",
    query_split: Parameter[str] = EVAL,
    min_precision: Parameter[float] = 0.0,
    max_precision_drop: Parameter[float] = None,
    min_instance_recall: Parameter[float] = 0.0,
) -> None:
    """`model` exported again with a `search` signature over the catalog's images, with their item table and ScaNN
    index, measured with `examples`' `query_split` images as queries against the thresholds and the served model
    (`baseline`, ServedModel's). The catalog is every split of `catalog`, else `examples`' `catalog_splits`; the
    Transform output is `transform_graph`'s, else the one `model` carries (a model this component exported)."""
    model_dir = path_utils.serving_model_path(model.uri)
    if not holds_saved_model(model_dir):
        raise CnnpipeError(f"{model_dir} holds no model to index: nothing is served yet. Push one with `cnnpipe run`, "
                           "then index it.")
    model_signatures = tf.saved_model.load(model_dir).signatures
    if catalog is not None:
        catalog_name = f"catalog ({catalog.uri})"
        catalog_files = _split_files(catalog, artifact_utils.decode_split_names(catalog.split_names))
    else:
        splits = catalog_splits.split(",")
        catalog_name, catalog_files = f"{' and '.join(splits)} splits", _split_files(examples, splits)
    items_read = _read(catalog_files, catalog_name, model_signatures, thumbnails=True)
    queries = _read(_split_files(examples, [query_split]), f"{query_split} split", model_signatures,
                    thumbnails=False) if examples is not None else None
    logging.info("EmbeddingIndex: %d catalog images and %d queries embedded", len(items_read[EMBEDDINGS]),
                 len(queries[EMBEDDINGS]) if queries else 0)
    class_names_of = np.char.decode(items_read[features.CLASS_NAME].astype(bytes)).tolist()
    sources = np.char.decode(items_read[features.SOURCE].astype(bytes)).tolist()

    transform_dir = transform_graph.uri if transform_graph is not None else os.path.join(model_dir, TRANSFORM_ASSETS)
    if not tf.io.gfile.isdir(transform_dir):
        raise CnnpipeError(f"{model_dir} carries no Transform output ({TRANSFORM_ASSETS}/): it was not exported by "
                           "EmbeddingIndex. Push a model with `cnnpipe run` first, then index it.")
    export_dir = path_utils.serving_model_path(indexed_model.uri)
    with open(os.path.join(model_dir, "assets", CLASS_NAMES_ASSET), encoding="utf-8") as f:
        model_classes = f.read().splitlines()
    class_weight = CLASS_WEIGHT if set(class_names_of) & set(model_classes) else 0.0  # no classes: by look alone
    catalog_items = Catalog(items_read[EMBEDDINGS], class_names_of, sources, model_classes, top_k, class_weight)
    loaded = keras.models.load_model(model_dir, compile=False)
    # The model alone, as the Trainer built it: the loaded one also holds the layers `export` tracked on it.
    model_only = keras.Model(loaded.inputs, loaded.outputs, name=loaded.name)
    signatures.export(model_only, tft.TFTransformOutput(transform_dir), model_classes, export_dir, catalog_items,
                      embedder=loaded.embedder)
    io_utils.copy_dir(transform_dir, os.path.join(export_dir, TRANSFORM_ASSETS))

    search_dir = os.path.join(export_dir, SEARCH_ASSETS)
    os.makedirs(search_dir, exist_ok=True)
    items.write(items.Items(sources, class_names_of, items_read["thumbnail"].tolist()),
                os.path.join(search_dir, items.FILE))
    items.write(_examples(queries or items_read, EXAMPLES), os.path.join(search_dir, items.EXAMPLES_FILE))
    vectors = catalog_items.vectors()
    searcher, build_seconds = _timed(index.build, vectors, top_k)
    checksum = tf.saved_model.experimental.read_fingerprint(export_dir).saved_model_checksum
    index.save(searcher, os.path.join(search_dir, index.INDEX_DIR), checksum)
    searched = _searched(queries, class_weight) if queries else None
    figures = _measure(searcher, vectors, items_read, queries, searched, build_seconds,
                       _directory_bytes(os.path.join(search_dir, index.INDEX_DIR)))
    figures.update(_instance_figures(model_signatures, catalog_files, vectors, searched, class_weight))
    figures["class_weight"] = class_weight
    served = _served_precision(baseline, queries)
    if served is not None:
        figures["served_precision_at_10"] = served
    figures["failures"] = failures(figures, min_precision, max_precision_drop, min_instance_recall)
    figures["thresholds"] = {"min_precision": min_precision, "max_precision_drop": max_precision_drop,
                             "min_instance_recall": min_instance_recall}
    with open(os.path.join(indexed_model.uri, METRICS_FILE), "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=1)
    for key, value in figures.items():
        if isinstance(value, (int, float)):
            indexed_model.set_float_custom_property(key, float(value))
    logging.info("EmbeddingIndex: %s", {k: v for k, v in figures.items() if k != "per_class"})


def retrieval_failures(model_uri: str) -> list[str]:
    """The search thresholds that the EmbeddingIndex artifact at `model_uri` failed (none for another model)."""
    path = os.path.join(model_uri, METRICS_FILE)
    if not tf.io.gfile.exists(path):
        return []
    return json.loads(tf.io.gfile.GFile(path).read()).get("failures", [])
