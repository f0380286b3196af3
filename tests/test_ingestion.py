"""Ingestion on real Fashion-MNIST images: the three readers, format detection, the Beam transform."""

import gzip
import io
import os
import re

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from google.protobuf import json_format
from google.protobuf.message import Message
from tfx.utils import proto_utils
from PIL import Image

from conftest import encode, fashion_mnist, write_idx
from cnnpipe.core.errors import CnnpipeError, IngestionError
from cnnpipe.components.ingestion import component, executor, formats, source
from cnnpipe.pipeline.config import PipelineConfig
from cnnpipe.pipeline.datasets import FASHION_MNIST

NAMES = FASHION_MNIST.class_names


def parse(record: bytes) -> dict:
    feature = tf.train.Example.FromString(record).features.feature
    return {key: (value.int64_list.value or value.bytes_list.value or value.float_list.value)[0]
            for key, value in feature.items()}


def pixels(encoded: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(encoded)))


def write_folders(root, count_per_class: int = 3, classes=("Bag", "Sandal", "Trouser")) -> list[str]:
    """A class-per-folder tree of real images in mixed formats, sizes and colour modes."""
    images, labels = fashion_mnist("train", 300)
    variants = [("PNG", "L", None, "png"), ("JPEG", "RGB", (40, 32), "jpg"), ("PNG", "RGBA", (20, 20), "png")]
    paths = []
    for name in classes:
        os.makedirs(root / name, exist_ok=True)
        chosen = images[labels == NAMES.index(name)][:count_per_class]
        for index, (array, (image_format, mode, size, ext)) in enumerate(zip(chosen, variants * count_per_class)):
            path = root / name / f"{index}.{ext}"
            path.write_bytes(encode(array, mode, size, image_format))
            paths.append(str(path))
    return paths


# --- IDX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [True, False])
def test_idx_round_trip_keeps_every_pixel_and_label(tmp_path, compressed):
    images, labels = fashion_mnist("t10k", 12)
    path = write_idx(str(tmp_path), "t10k", images, labels)
    if not compressed:
        for name in os.listdir(tmp_path):
            plain = (tmp_path / name).read_bytes()
            (tmp_path / name[: -len(".gz")]).write_bytes(gzip.decompress(plain))
            os.remove(tmp_path / name)
        path = path[: -len(".gz")]
    records = [parse(r) for r in formats.read_idx(path, NAMES)]
    assert len(records) == 12
    for index, record in enumerate(records):
        np.testing.assert_array_equal(pixels(record["image"]), images[index])
        assert record["label"] == labels[index]
        assert record["class_name"].decode() == NAMES[labels[index]]
        assert record["source"].decode() == f"{os.path.basename(path)}:{index}"
        assert (record["height"], record["width"]) == (28, 28)
        assert record["brightness"] == pytest.approx(images[index].mean(), abs=1e-4)  # the mean gray level


def corrupt(path: str, edit) -> None:
    with gzip.open(path, "rb") as f:
        data = f.read()
    with gzip.open(path, "wb") as f:
        f.write(edit(data))


@pytest.mark.parametrize("target, edit, message", [
    ("images", lambda d: b"\x00\x00\x08\x01" + d[4:], "wrong IDX magic number 00000801"),
    ("images", lambda d: d[:-100], "truncated at image 9 of 10"),
    ("labels", lambda d: d[:7] + b"\x09" + d[8:17], "holds 10 images but"),
])
def test_idx_errors_name_the_file(tmp_path, target, edit, message):
    path = write_idx(str(tmp_path), "train", *fashion_mnist("train", 10))
    broken = path if target == "images" else formats.idx_labels_path(path)
    corrupt(broken, edit)
    with pytest.raises(IngestionError, match=message) as error:
        list(formats.read_idx(path, NAMES))
    assert os.path.basename(path) in str(error.value)


def test_idx_cut_inside_its_gzip_stream_is_named(tmp_path):
    path = write_idx(str(tmp_path), "train", *fashion_mnist("train", 20))
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(IngestionError, match=f"{re.escape(path)}: cannot be read .* cut short"):
        list(formats.read_idx(path, NAMES))
    with pytest.raises(IngestionError, match=re.escape(path)):
        formats.read_idx_array(path, 3)


def test_idx_without_its_labels_file(tmp_path):
    path = write_idx(str(tmp_path), "train", *fashion_mnist("train", 5))
    os.remove(formats.idx_labels_path(path))
    with pytest.raises(IngestionError, match="train-labels-idx1-ubyte.gz: file not found"):
        list(formats.read_idx(path, NAMES))


# --- class folders --------------------------------------------------------------------------


def test_folder_images_of_mixed_formats_sizes_and_modes(tmp_path):
    paths = write_folders(tmp_path)
    assert formats.class_folders(str(tmp_path)) == ["Bag", "Sandal", "Trouser"]
    classes = ("Bag", "Sandal", "Trouser")
    for path in paths:
        with open(path, "rb") as f:
            record = parse(formats.read_image_file(path, f.read(), classes))
        class_name = os.path.basename(os.path.dirname(path))
        assert record["class_name"].decode() == class_name and record["label"] == classes.index(class_name)
        assert record["source"].decode() == path
        assert (record["height"], record["width"]) == pixels(record["image"]).shape[:2]
        gray = np.asarray(Image.open(io.BytesIO(record["image"])).convert("L"), dtype=float)  # as TF's decoder reads it
        assert record["brightness"] == pytest.approx(gray.mean(), abs=1.0)
    assert len({pixels(open(path, "rb").read()).shape for path in paths}) == 3  # sizes and modes vary


def test_empty_class_folder_is_named(tmp_path):
    write_folders(tmp_path)
    os.makedirs(tmp_path / "Shirt")
    (tmp_path / "Shirt" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden files are ignored
    with pytest.raises(IngestionError, match=f"{tmp_path / 'Shirt'}: class folder holds no images"):
        formats.class_folders(str(tmp_path))


@pytest.mark.parametrize("data, message", [
    (lambda png: png[: len(png) // 2], "a damaged or cut-short PNG image"),
    (lambda png: b"hello world", "not an image PIL or TensorFlow can read .*'hello wo'"),
])
def test_unreadable_images_are_named(tmp_path, data, message):
    path = write_folders(tmp_path)[0]
    with open(path, "rb") as f:
        broken = data(f.read())
    with pytest.raises(IngestionError, match=message) as error:
        formats.read_image_file(path, broken, ("Bag", "Sandal", "Trouser"))
    assert path in str(error.value)


def test_image_of_an_unknown_class(tmp_path):
    path = write_folders(tmp_path)[0]
    with pytest.raises(IngestionError, match="'Bag' is not one of the classes"):
        formats.read_image_file(path, open(path, "rb").read(), ("Sandal", "Trouser"))


# --- TFRecords ------------------------------------------------------------------------------


def write_tfrecord(path, examples: list[dict]) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for values in examples:
            feature = {
                key: tf.train.Feature(int64_list=tf.train.Int64List(value=[value])) if isinstance(value, int)
                else tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                for key, value in values.items()
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(path)


def test_tfrecord_examples_are_completed_with_class_source_and_size(tmp_path):
    images, labels = fashion_mnist("train", 4)
    path = write_tfrecord(tmp_path / "train.tfrecord",
                          [{"image": encode(i), "label": int(label)} for i, label in zip(images, labels)])
    records = [parse(r) for r in formats.read_tfrecord(path, NAMES)]
    assert [r["label"] for r in records] == list(labels)
    assert [r["class_name"].decode() for r in records] == [NAMES[label] for label in labels]
    assert [r["source"].decode() for r in records] == [f"train.tfrecord:{i}" for i in range(4)]
    assert all((r["height"], r["width"]) == (28, 28) for r in records)


def test_tfrecord_record_without_a_label_is_named(tmp_path):
    images, _ = fashion_mnist("train", 3)
    path = write_tfrecord(tmp_path / "x.tfrecord",
                          [{"image": encode(images[0]), "label": 1}, {"image": encode(images[1])}])
    with pytest.raises(IngestionError, match=r"x.tfrecord:1: needs one 'image' bytes value .* one 'label'"):
        list(formats.read_tfrecord(path, NAMES))


def test_tfrecord_cut_short_is_named(tmp_path):
    images, labels = fashion_mnist("train", 5)
    path = write_tfrecord(tmp_path / "x.tfrecord",
                          [{"image": encode(i), "label": int(label)} for i, label in zip(images, labels)])
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 30)
    with pytest.raises(IngestionError, match=f"{re.escape(path)}: damaged or cut short at record 4"):
        list(formats.read_tfrecord(path, NAMES))


def test_tfrecord_errors_name_file_and_index_not_the_records_own_source(tmp_path):
    path = write_tfrecord(tmp_path / "x.tfrecord", [{"image": b"not an image", "label": 1, "source": b"camera-7.png"}])
    with pytest.raises(IngestionError, match=r"x.tfrecord:0: not an image PIL or TensorFlow can read"):
        list(formats.read_tfrecord(path, NAMES))


# --- detection ------------------------------------------------------------------------------


def globbed(data: source.DataSource, split: str) -> list[str]:
    return sorted(os.path.basename(p)
                  for p in tf.io.gfile.glob(os.path.join(data.input_base, data.split_patterns[split])))


def test_detects_idx_with_its_own_train_and_test_split(tmp_path):
    write_idx(str(tmp_path), "train", *fashion_mnist("train", 5))
    write_idx(str(tmp_path), "t10k", *fashion_mnist("t10k", 5))
    data = source.detect(str(tmp_path))
    assert data.format == "idx" and data.has_own_split
    assert globbed(data, "train") == ["train-images-idx3-ubyte.gz"]
    assert globbed(data, "eval") == ["t10k-images-idx3-ubyte.gz"]
    assert data.class_names == tuple(str(i) for i in range(max(fashion_mnist("train", 5)[1]) + 1))


def test_detects_class_folders_without_a_split(tmp_path):
    paths = write_folders(tmp_path)
    data = source.detect(str(tmp_path))
    assert data.format == "folder" and not data.has_own_split
    assert data.class_names == ("Bag", "Sandal", "Trouser")
    assert sorted(tf.io.gfile.glob(os.path.join(data.input_base, data.split_patterns["all"]))) == sorted(paths)


def test_a_folder_of_images_without_classes_is_a_catalog_not_training_data(tmp_path):
    """A shop's new items need no classes to be searched; training does."""
    items = tmp_path / "items"
    items.mkdir()
    for number, image in enumerate(fashion_mnist("t10k", 3)[0]):
        (items / f"item-{number}.png").write_bytes(encode(image))
    (items / ".DS_Store").write_bytes(b"not an image")
    data = source.detect(str(items))
    assert (data.format, data.split_patterns, data.class_names) == ("images", {"all": "*"}, ())
    properties = {"input_base": str(items),
                  "custom_config": json_format.MessageToJson(executor.custom_config("images", ()))}
    with test_pipeline.TestPipeline() as pipeline:
        examples = pipeline | executor.ReadImages(properties, "*") | beam.Map(
            lambda r: (parse(r)["label"], parse(r)["class_name"], os.path.basename(parse(r)["source"].decode())))
        assert_that(examples, equal_to([(formats.NO_LABEL, b"", f"item-{number}.png") for number in range(3)]))
    with pytest.raises(CnnpipeError, match=f"{items}: a folder of images without classes; training needs them"):
        PipelineConfig(data=str(items)).data_source()


def test_class_folders_split_into_train_and_test(tmp_path):
    write_folders(tmp_path / "train")
    write_folders(tmp_path / "test", 1)
    data = source.detect(str(tmp_path))
    assert data.has_own_split and data.class_names == ("Bag", "Sandal", "Trouser")
    assert len(globbed(data, "train")) == 9 and len(globbed(data, "eval")) == 3
    write_folders(tmp_path / "test", 1, classes=("Shirt",))
    with pytest.raises(IngestionError, match=r"classes \['Shirt'\] are not in the training split"):
        source.detect(str(tmp_path))


def test_a_validation_folder_is_the_validation_split_beside_a_test_folder_and_the_eval_split_alone(tmp_path):
    write_folders(tmp_path / "train")
    write_folders(tmp_path / "val", 2)
    alone = source.detect(str(tmp_path))
    assert set(alone.split_patterns) == {"train", "eval"} and len(globbed(alone, "eval")) == 6
    write_folders(tmp_path / "test", 1)
    data = source.detect(str(tmp_path))
    assert data.split_patterns == {"train": "train/*/*", "validation": "val/*/*", "eval": "test/*/*"}
    assert [len(globbed(data, split)) for split in ("train", "validation", "eval")] == [9, 6, 3]


def test_hash_split_data_gives_validation_its_share_of_what_is_not_eval():
    assert component.hash_buckets(10, 10) == {"train": 81, "validation": 9, "eval": 10}
    assert component.hash_buckets(20, 1) == {"train": 79, "validation": 1, "eval": 20}  # at least one bucket


def test_the_executor_carves_a_stable_validation_share_out_of_the_training_files(tmp_path):
    """Data with its own train and eval splits: ImageExampleGen reads the training files for `validation` too, and the
    executor keeps about `validation_percent` of them there, the same ones in every run, and none in both."""
    images, labels = fashion_mnist("train", 400)
    write_idx(str(tmp_path), "train", images, labels)
    write_idx(str(tmp_path), "t10k", *fashion_mnist("t10k", 50))
    gen = component.ImageExampleGen(source.detect(str(tmp_path), class_names=NAMES), validation_percent=10)
    properties = {name: proto_utils.proto_to_json(value) if isinstance(value, Message) else value
                  for name, value in gen.exec_properties.items() if value is not None}
    properties["input_base"] = str(tmp_path)

    def sources() -> dict[str, list[str]]:
        with beam.Pipeline() as pipeline:
            splits = executor.Executor().GenerateExamplesByBeam(pipeline, properties)
            for name, examples in splits.items():
                _ = (examples | f"Source[{name}]" >> beam.Map(lambda r: parse(r)["source"].decode())
                     | f"Write[{name}]" >> beam.io.WriteToText(str(tmp_path / f"run-{name}")))
        return {name: sorted(open(path).read().split()) for name in splits
                for path in tf.io.gfile.glob(str(tmp_path / f"run-{name}*"))}

    first, second = sources(), sources()
    assert set(first) == {"train", "validation", "eval"} and first == second
    assert 20 <= len(first["validation"]) <= 60 and not set(first["validation"]) & set(first["train"])
    assert sorted(first["train"] + first["validation"]) == sorted(f"train-images-idx3-ubyte.gz:{i}" for i in range(400))
    assert len(first["eval"]) == 50


def test_tfrecords_need_class_names(tmp_path):
    images, labels = fashion_mnist("train", 2)
    write_tfrecord(tmp_path / "data.tfrecord",
                   [{"image": encode(i), "label": int(label)} for i, label in zip(images, labels)])
    with pytest.raises(IngestionError, match="class_names.txt or pass --class-names"):
        source.detect(str(tmp_path))
    (tmp_path / "class_names.txt").write_text("\n".join(NAMES) + "\n")
    data = source.detect(str(tmp_path))
    assert data.format == "tfrecord" and data.class_names == NAMES and globbed(data, "all") == ["data.tfrecord"]


def test_detection_errors_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(IngestionError, match=f"{tmp_path / 'missing'}: no such file or directory"):
        source.detect(str(tmp_path / "missing"))
    with pytest.raises(IngestionError, match="--format"):
        source.detect(str(tmp_path))
    write_idx(str(tmp_path), "train", *fashion_mnist("train", 2))
    with pytest.raises(IngestionError, match="unknown data format 'csv'"):
        source.detect(str(tmp_path), "csv")
    with pytest.raises(IngestionError, match=r"holds no tfrecord files"):
        source.detect(str(tmp_path), "tfrecord", NAMES)


def test_spans_take_their_layout_from_the_newest_span(tmp_path):
    for span, count in ((1, 4), (2, 6)):
        write_idx(str(tmp_path / f"span-{span}"), "train", *fashion_mnist("train", count))
        write_idx(str(tmp_path / f"span-{span}"), "t10k", *fashion_mnist("t10k", 2))
    (tmp_path / "class_names.txt").write_text("\n".join(NAMES))
    data = source.detect(str(tmp_path))
    assert source.spans(str(tmp_path)) == [1, 2] and data.has_spans
    assert data.split_patterns == {"train": "span-{SPAN}/train*-images-idx3-ubyte*",
                                   "eval": "span-{SPAN}/t10k*-images-idx3-ubyte*"}
    assert data.format == "idx" and data.class_names == NAMES
    assert not source.detect(str(tmp_path / "span-1")).has_spans


def test_a_single_file_needs_a_known_format(tmp_path):
    path = write_idx(str(tmp_path), "train", *fashion_mnist("train", 2))
    with pytest.raises(IngestionError, match=f"{re.escape(path)}: unknown data format 'folder'"):
        source.detect(path, "folder")
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(IngestionError, match=r"notes.csv: not an IDX image file .* --format"):
        source.detect(str(tmp_path / "notes.csv"))
    assert source.detect(path).format == "idx"


# --- the Beam transform ---------------------------------------------------------------------


def folder_properties(root, classes=("Bag", "Sandal", "Trouser")) -> dict:
    """The exec_properties ImageExampleGen hands its executor for a folder tree."""
    return {
        "input_base": str(root),
        "custom_config": json_format.MessageToJson(executor.custom_config("folder", classes)),
    }


def test_read_images_turns_a_folder_tree_into_examples(tmp_path):
    write_folders(tmp_path)
    with test_pipeline.TestPipeline() as pipeline:
        labels = (pipeline | executor.ReadImages(folder_properties(tmp_path), "*/*")
                  | beam.Map(lambda r: parse(r)["label"]))
        assert_that(labels, equal_to([0, 0, 0, 1, 1, 1, 2, 2, 2]))


def test_read_images_skips_hidden_folders_as_detection_does(tmp_path):
    bag = write_folders(tmp_path)[0]
    os.makedirs(tmp_path / ".ipynb_checkpoints")  # an editor's copy of an image is no class
    with open(bag, "rb") as f:
        (tmp_path / ".ipynb_checkpoints" / "0.png").write_bytes(f.read())
    assert source.detect(str(tmp_path)).class_names == ("Bag", "Sandal", "Trouser")
    with test_pipeline.TestPipeline() as pipeline:
        labels = (pipeline | executor.ReadImages(folder_properties(tmp_path), "*/*")
                  | beam.Map(lambda r: parse(r)["label"]))
        assert_that(labels, equal_to([0, 0, 0, 1, 1, 1, 2, 2, 2]))


def test_a_span_pattern_no_driver_resolved_is_named(tmp_path):
    """Where ExampleGen's driver does not run (open-source Kubeflow Pipelines), the split pattern reaches the
    executor with {SPAN} in it: it says so instead of reading no images."""
    (tmp_path / "span-1").mkdir()
    write_folders(tmp_path / "span-1")
    with pytest.raises(IngestionError, match=r"'span-\{SPAN\}/\*/\*' still holds \{SPAN\}: ExampleGen's driver"):
        with test_pipeline.TestPipeline() as pipeline:
            _ = pipeline | executor.ReadImages(folder_properties(tmp_path), "span-{SPAN}/*/*")


def test_read_images_stops_at_a_corrupt_png_and_names_it(tmp_path):
    path = write_folders(tmp_path)[3]
    with open(path, "r+b") as f:
        f.truncate(40)
    with pytest.raises(Exception, match=re.escape(path)):
        with test_pipeline.TestPipeline() as pipeline:
            _ = pipeline | executor.ReadImages(folder_properties(tmp_path), "*/*")


@pytest.mark.parametrize("data_format", ["idx", "tfrecord"])
def test_data_that_is_not_there_stops_ingestion_naming_the_pattern(tmp_path, data_format):
    """A run given a data root without the compiled layout (a Kubeflow run's `data` parameter) stops in ImageExampleGen,
    not later with every split empty."""
    properties = {"input_base": str(tmp_path / "missing"),
                  "custom_config": json_format.MessageToJson(executor.custom_config(data_format, NAMES))}
    with pytest.raises(IngestionError, match=f"no {data_format} file matches {re.escape(str(tmp_path))}/missing/train"):
        beam.Pipeline() | executor.ReadImages(properties, "train*")
