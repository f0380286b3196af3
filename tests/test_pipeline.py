"""End to end: the whole TFX pipeline on a real Fashion-MNIST slice (2,000 train, 500 test, 1 epoch)."""

import gzip
import io
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import fashion_mnist, write_fashion_mnist_slice
from cnnpipe.components.errors import DataValidationError
from cnnpipe.components.ingestion.formats import make_example
from cnnpipe.pipeline import local_runner, summary
from cnnpipe.pipeline.config import PipelineConfig
from cnnpipe.pipeline.datasets import FASHION_MNIST

TRAIN, TEST = 2000, 500


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    config = PipelineConfig(
        data=write_fashion_mnist_slice(str(root / "fashion"), TRAIN, TEST),
        schema="fashion_mnist",
        class_names=FASHION_MNIST.class_names,
        epochs=1,
        min_accuracy=0.5,
        output_dir=str(root / "out"),
    )
    local_runner.run(config, out=io.StringIO())
    return config


def served_versions(config: PipelineConfig) -> list[str]:
    return sorted(os.listdir(config.serving_base))


def test_every_component_recorded_its_outputs_in_mlmd(first_run):
    _, outputs = summary.run_outputs(local_runner.metadata_path(first_run.output_dir), first_run.name)
    expected = {
        "examples", "statistics", "schema", "anomalies", "transform_graph", "transformed_examples",
        "model", "model_run", "evaluation", "blessing", "pushed_model",
    }
    assert expected <= set(outputs)
    for artifact in outputs.values():
        assert tf.io.gfile.exists(artifact.uri), artifact.uri


def test_pushed_model_classifies_the_real_test_slice(first_run):
    versions = served_versions(first_run)
    assert len(versions) == 1 and versions[0].isdigit()
    model = tf.saved_model.load(os.path.join(first_run.serving_base, versions[0]))
    images, labels = fashion_mnist("t10k", TEST)
    examples = []
    for index, (pixels, label) in enumerate(zip(images, labels)):
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        examples.append(make_example(png.getvalue(), int(label), "", f"client:{index}", 28, 28))
    outputs = model.signatures["serving_default"](examples=tf.constant(examples))
    class_ids = outputs["class_ids"].numpy()
    assert outputs["probabilities"].shape == (TEST, 10)
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(class_ids == labels) >= 0.6
    names = [name.decode() for name in outputs["class_names"].numpy()]
    assert names == [FASHION_MNIST.class_names[i] for i in class_ids]


def test_summary_reports_accuracy_blessing_and_push(first_run):
    result = summary.summarize(local_runner.metadata_path(first_run.output_dir), first_run.name)
    assert result.accuracy >= 0.5 and result.blessed
    assert set(result.per_class_accuracy) == set(FASHION_MNIST.class_names)
    assert result.pushed_to == os.path.join(first_run.serving_base, served_versions(first_run)[0])
    assert "Blessed: yes" in result.format() and result.pushed_to in result.format()


def test_second_run_with_the_same_inputs_reuses_the_cache_and_pushes_nothing_new(first_run):
    before = served_versions(first_run)
    progress = io.StringIO()
    local_runner.run(first_run, out=progress)
    cached = {line.split()[2] for line in progress.getvalue().splitlines() if "(cached)" in line}
    # The Evaluator runs again: its baseline is now the model the first run blessed.
    assert {"ImageExampleGen", "StatisticsGen", "ExampleValidator", "Transform", "Trainer"} <= cached
    assert served_versions(first_run) == before


def test_label_outside_the_schema_stops_the_run_before_transform(first_run, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(first_run.data, bad)
    labels_path = bad / "t10k-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(labels_path.read_bytes()))
    labels[8 + 17] = 10  # record 17 of the test file gets a label outside the domain [0, 9]
    labels_path.write_bytes(gzip.compress(bytes(labels)))
    before = served_versions(first_run)
    config = PipelineConfig(**{**vars(first_run), "data": str(bad), "model_name": first_run.name})

    with pytest.raises(DataValidationError) as error:
        local_runner.run(config, out=io.StringIO())

    message = str(error.value)
    assert "t10k-images-idx3-ubyte.gz:17" in message and "'label'" in message and "schema" in message
    _, outputs = summary.run_outputs(local_runner.metadata_path(config.output_dir), config.name)
    assert "anomalies" in outputs and "transform_graph" not in outputs and "pushed_model" not in outputs
    assert served_versions(first_run) == before
