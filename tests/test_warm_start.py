"""Warm start: a new model takes an earlier model's layers, with a fresh head when the classes differ."""

import numpy as np
import pytest
import tf_keras as keras

from conftest import fashion_mnist
from cnnpipe.core.errors import TrainingError
from cnnpipe.models import registry, warm_start


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
    """A LeNet-5 trained briefly on real images, saved as version 7 of a model base path."""
    images, labels = fashion_mnist("train", 256)
    model = registry.build("lenet5", (28, 28, 1), 10)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images[..., None] / 127.5 - 1, labels, epochs=1, verbose=0)
    base = tmp_path_factory.mktemp("serving")
    model.save(str(base / "7"), save_format="tf")
    (base / "3").mkdir()  # an older version, ignored
    return str(base)


def test_same_classes_copy_every_layer(base_path):
    model = registry.build("lenet5", (28, 28, 1), 10)
    report = warm_start.initialize(model, base_path)
    base = keras.models.load_model(f"{base_path}/7", compile=False)
    for a, b in zip(model.get_weights(), base.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert report.startswith(f"warm start from {base_path}/7: 5 layers copied")


def test_other_class_count_gets_a_fresh_head_and_frozen_features(base_path):
    model = registry.build("lenet5", (28, 28, 1), 3)
    fresh_head = model.get_layer("probabilities").get_weights()[0].copy()
    report = warm_start.initialize(model, base_path, freeze_features=True)
    base = keras.models.load_model(f"{base_path}/7", compile=False)
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], base.get_layer("conv1").get_weights()[0])
    np.testing.assert_array_equal(model.get_layer("probabilities").get_weights()[0], fresh_head)
    assert [layer.name for layer in model.layers if layer.trainable_weights] == ["probabilities"]
    assert "(frozen)" in report and "initialized afresh (probabilities)" in report


def test_a_path_without_a_model_is_refused(tmp_path):
    with pytest.raises(TrainingError, match="neither a SavedModel nor a model base path"):
        warm_start.initialize(registry.build("lenet5", (28, 28, 1), 10), str(tmp_path))


def test_another_architecture_is_refused(base_path):
    with pytest.raises(TrainingError, match="no layer matches"):
        warm_start.initialize(registry.build("resnet", (28, 28, 1), 10), base_path)
