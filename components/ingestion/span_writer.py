"""A new span of labelled images written as the data's other spans are laid out (format and split), so that
ingestion reads it with them (`cnnpipe retrain`). Used by `cnnpipe skew --to-span` (monitoring/logged_span.py)."""

import dataclasses
import io
import os
import shutil

import numpy as np
import tensorflow as tf
from PIL import Image

from cnnpipe.components.ingestion import formats
from cnnpipe.components.ingestion.source import SPAN_DIRECTORY, detect, spans
from cnnpipe.core import features
from cnnpipe.core.errors import IngestionError
from cnnpipe.core.names import EVAL, TRAIN

EVAL_SHARE = 10  # with an own train/eval split, one image in EVAL_SHARE goes to eval


@dataclasses.dataclass(frozen=True)
class LabelledImage:
    key: str  # a stable id, the file name's stem
    image: bytes  # encoded PNG or JPEG
    class_name: str


def _splits(items: list[LabelledImage], split_names: list[str]) -> dict[str, list[LabelledImage]]:
    """The items of each split: with an own train/eval split, every EVAL_SHARE-th by key to eval (so that two items
    make both splits), the rest to train."""
    if set(split_names) != {TRAIN, EVAL}:
        return {name: items for name in split_names}
    if len(items) < 2:
        raise IngestionError(f"{len(items)} labelled image(s): the spans have a train and an eval split, which need "
                             "two at least. Label more.")
    ordered = sorted(items, key=lambda item: item.key)
    return {EVAL: ordered[::EVAL_SHARE], TRAIN: [item for i, item in enumerate(ordered) if i % EVAL_SHARE]}


def _suffix(image: bytes) -> str:
    return ".png" if image.startswith(b"\x89PNG") else ".jpg"


def _write_folders(directory: str, pattern: str, items: list[LabelledImage]) -> None:
    """Class folders under the split's folder of `pattern` ("train/*/*"; "*/*": the span itself)."""
    root = os.path.join(directory, os.path.dirname(os.path.dirname(pattern)))
    for item in items:
        os.makedirs(os.path.join(root, item.class_name), exist_ok=True)
        with open(os.path.join(root, item.class_name, item.key + _suffix(item.image)), "wb") as file:
            file.write(item.image)


def _prefix(pattern: str) -> str:
    """The file name start a split's pattern asks for ("train*-images-idx3-ubyte*" -> "train"), else "logged"."""
    return pattern.split("*")[0] or "logged"


def _write_idx(directory: str, pattern: str, items: list[LabelledImage], labels: list[int]) -> None:
    """An IDX pair: every image decoded to 8-bit gray, all of one size."""
    pixels = [np.asarray(Image.open(io.BytesIO(item.image)).convert("L")) for item in items]
    for item, image in zip(items, pixels):
        if image.shape != pixels[0].shape:
            raise IngestionError(f"image {item.key} is {image.shape[0]}x{image.shape[1]}, others {pixels[0].shape[0]}x"
                                 f"{pixels[0].shape[1]}: IDX holds images of one size. Clear its class_name (or "
                                 "keep the data as class folders or TFRecords).")
    formats.write_idx(os.path.join(directory, _prefix(pattern)), np.stack(pixels), np.asarray(labels))


def _write_tfrecord(directory: str, pattern: str, items: list[LabelledImage], labels: list[int]) -> None:
    """tf.Examples with the image, its label and its source; ingestion completes the rest."""
    path = os.path.join(directory, _prefix(pattern) + "-logged.tfrecord.gz")
    with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for item, label in zip(items, labels):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                features.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[item.image])),
                features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                features.SOURCE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"logged:{item.key}".encode()])),
            })).SerializeToString())


def write_next_span(data_dir: str, items: list[LabelledImage]) -> str:
    """Writes `items` as `data_dir`'s next span, whole or not at all; returns its directory. Every class must be one
    of the data's classes."""
    numbers = spans(data_dir)
    if not numbers:
        raise IngestionError(f"{data_dir}: holds no spans (span-1/, span-2/, ...); give the --data directory that "
                             "`cnnpipe retrain` reads.")
    source = detect(data_dir)
    unknown = sorted({item.class_name for item in items} - set(source.class_names))
    if unknown:
        raise IngestionError(f"classes {unknown} are not among the data's classes {list(source.class_names)}; fix "
                             "those class_names.")
    span_dir = os.path.join(data_dir, SPAN_DIRECTORY.format(SPAN=numbers[-1] + 1))
    partial = span_dir + ".partial"  # no span-N name until it is whole: ingestion never sees half a span
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    patterns = {split: pattern.split("/", 1)[1] for split, pattern in source.split_patterns.items()}
    for split, chosen in _splits(items, list(patterns)).items():
        pattern = patterns[split]
        labels = [source.class_names.index(item.class_name) for item in chosen]
        if source.format == "folder":
            _write_folders(partial, pattern, chosen)
        elif source.format == "idx":
            _write_idx(partial, pattern, chosen, labels)
        elif source.format == "tfrecord":
            _write_tfrecord(partial, pattern, chosen, labels)
        else:
            raise IngestionError(f"{data_dir}: its spans are {source.format} without classes; a labelled span needs "
                                 "class folders, IDX or TFRecords.")
    os.rename(partial, span_dir)
    return span_dir
