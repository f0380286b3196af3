"""Drift between the data and the data the served model was trained on (ValidationGate's TFDV comparators), on
spans of real Fashion-MNIST images ingested as ImageExampleGen ingests them: an unchanged span passes, a span
without one class and a span of brightened images are stopped by name."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx.types import artifact_utils, standard_artifacts

from conftest import fashion_mnist, write_idx
from cnnpipe.components import validation_gate
from cnnpipe.components.ingestion import formats
from cnnpipe.pipeline.datasets import FASHION_MNIST

SPAN = 2000
DRESS = FASHION_MNIST.class_names.index("Dress")
SCHEMA = os.path.join(os.path.dirname(__file__), "..", "schemas", "fashion_mnist.pbtxt")


def statistics(directory, images: np.ndarray, labels: np.ndarray) -> standard_artifacts.ExampleStatistics:
    """A span's train split ingested from IDX files as ImageExampleGen reads them, and StatisticsGen's artifact of
    its statistics (TFDV)."""
    records = os.path.join(directory, "train.tfrecord")
    with tf.io.TFRecordWriter(records) as writer:
        for record in formats.read_idx(write_idx(str(directory), "train", images, labels), FASHION_MNIST.class_names):
            writer.write(record)
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri, artifact.split_names = str(directory), artifact_utils.encode_split_names(["train"])
    split_dir = artifact_utils.get_split_uri([artifact], "train")
    os.makedirs(split_dir)
    with open(os.path.join(split_dir, "FeatureStats.pb"), "wb") as file:
        file.write(tfdv.generate_statistics_from_tfrecord(
            records, output_path=os.path.join(str(directory), "data_stats.tfrecord")).SerializeToString())
    return artifact


@pytest.fixture(scope="module")
def spans(tmp_path_factory) -> dict[str, standard_artifacts.ExampleStatistics]:
    images, labels = fashion_mnist("train", 3 * SPAN)
    without_dresses = np.flatnonzero(labels[SPAN:] != DRESS)[:SPAN] + SPAN
    brightened = np.clip(images[SPAN:2 * SPAN].astype(int) + 40, 0, 255)
    made = {"served": (images[:SPAN], labels[:SPAN]), "unchanged": (images[SPAN:2 * SPAN], labels[SPAN:2 * SPAN]),
            "without dresses": (images[without_dresses], labels[without_dresses]),
            "brightened": (brightened, labels[SPAN:2 * SPAN])}
    return {name: statistics(tmp_path_factory.mktemp("span"), *span) for name, span in made.items()}


@pytest.fixture(scope="module")
def schema():
    return validation_gate.with_label_domain(tfdv.load_schema_text(SCHEMA), len(FASHION_MNIST.class_names))


def measured(spans, schema, name: str) -> dict[str, float]:
    anomalies = validation_gate.drift(spans[name], spans["served"], schema)
    return {".".join(info.path.step): info.drift_measurements[0].value for info in anomalies.drift_skew_info}


def test_an_unchanged_span_passes_with_every_feature_measured(spans, schema):
    assert validation_gate.drifted(validation_gate.drift(spans["unchanged"], spans["served"], schema)) == []
    distances = measured(spans, schema, "unchanged")
    assert set(distances) == {"class_name", "brightness", "height", "width"}
    assert distances["class_name"] < 0.03 and distances["brightness"] < 0.03


def test_a_span_without_a_class_drifts_in_its_class_balance(spans, schema):
    found = validation_gate.drifted(validation_gate.drift(spans["without dresses"], spans["served"], schema))
    assert len(found) == 1 and found[0].startswith("class_name: L-infinity distance 0.")
    assert measured(spans, schema, "without dresses")["class_name"] > 0.08  # the dresses' tenth of the data gone
    assert found[0].endswith("> 0.05")


def test_brightened_images_drift_in_brightness_and_the_message_says_how_to_go_on(spans, schema):
    found = validation_gate.drifted(validation_gate.drift(spans["brightened"], spans["served"], schema))
    assert [line.split(":")[0] for line in found] == ["brightness"]
    assert found[0].startswith("brightness: Jensen-Shannon divergence 0.") and found[0].endswith("> 0.1")
    message = validation_gate.describe_drift(found, "schemas/fashion_mnist.pbtxt")
    assert found[0] in message and "--accept-drift" in message and "schemas/fashion_mnist.pbtxt" in message


def test_an_inferred_schema_gets_the_default_comparators(spans):
    inferred = tfdv.infer_schema(tfdv.load_stats_binary(os.path.join(
        artifact_utils.get_split_uri([spans["served"]], "train"), "FeatureStats.pb")))
    schema = validation_gate.with_label_domain(inferred, len(FASHION_MNIST.class_names))
    assert {f.name for f in schema.feature if f.HasField("drift_comparator")} == set(validation_gate.DEFAULT_DRIFT)
    assert [line.split(":")[0] for line in validation_gate.drifted(
        validation_gate.drift(spans["brightened"], spans["served"], schema))] == ["brightness"]
