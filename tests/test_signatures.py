"""The exported model's signatures on real Fashion-MNIST images: each agrees with serving_default."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from PIL import Image

from conftest import encode, fashion_mnist, train_and_export
from cnnpipe.components.ingestion.formats import make_example
from cnnpipe.core import features
from cnnpipe.models import signatures
from cnnpipe.models.class_names import read_class_names
from cnnpipe.pipeline.datasets import FASHION_MNIST

TRAIN = 512


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[str, keras.Model]:
    """A LeNet-5 trained for one epoch on 512 real images, exported with the Transform graph, and the model itself."""
    root = tmp_path_factory.mktemp("signatures")
    export_dir = train_and_export(str(root), *fashion_mnist("train", TRAIN), normalization="standardize")
    return export_dir, keras.models.load_model(export_dir)


@pytest.fixture(scope="module")
def served(exported):
    return tf.saved_model.load(exported[0]).signatures


@pytest.fixture(scope="module")
def test_images():
    return fashion_mnist("t10k", 16)


def by_example(served, encoded: list[bytes]) -> dict[str, np.ndarray]:
    examples = [make_example(image, 0, "", f"client:{i}", 28, 28) for i, image in enumerate(encoded)]
    return {k: v.numpy() for k, v in served["serving_default"](examples=tf.constant(examples)).items()}


def call(served, name: str, **inputs) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in served[name](**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def assert_same_predictions(actual: dict, expected: dict) -> None:
    np.testing.assert_allclose(actual["probabilities"], expected["probabilities"], atol=1e-6)
    for key in ("class_ids", "class_names", "all_class_names"):
        np.testing.assert_array_equal(actual[key], expected[key])


def test_the_model_exports_every_signature(served):
    assert set(served) == {"serving_default", "predict_image", "predict_pixels", "embed"}


def test_predict_image_agrees_with_the_tf_example_signature(served, test_images):
    images, labels = test_images
    pngs = [encode(p) for p in images]
    from_examples = by_example(served, pngs)
    assert_same_predictions(call(served, "predict_image", images=pngs), from_examples)
    assert from_examples["probabilities"].shape == (16, 10)
    assert np.mean(from_examples["class_ids"] == labels) > 0.3  # one short epoch, ten classes: well above chance


def test_raw_pixels_agree_with_the_same_image_encoded(served, test_images):
    images, _ = test_images
    pixels = images[..., None].astype(np.float32)
    assert_same_predictions(call(served, "predict_pixels", pixels=pixels),
                            call(served, "predict_image", images=[encode(p) for p in images]))


def test_images_of_another_size_and_colour_mode_are_converted_as_in_training(served, test_images):
    images, _ = test_images
    rgb_pngs = [encode(p, "RGB", (40, 56)) for p in images]  # 40 wide, 56 high, three channels
    jpegs = [encode(p, "RGB", (56, 56), image_format="JPEG") for p in images]
    for encoded in (rgb_pngs, jpegs):
        assert_same_predictions(call(served, "predict_image", images=encoded), by_example(served, encoded))
    rgb_pixels = np.stack([np.asarray(Image.open(io.BytesIO(png))) for png in rgb_pngs]).astype(np.float32)
    assert rgb_pixels.shape == (16, 56, 40, 3)
    assert_same_predictions(call(served, "predict_pixels", pixels=rgb_pixels), by_example(served, rgb_pngs))
    # Resizing changes the pixels a little, not what the model sees in them.
    resized = call(served, "predict_image", images=rgb_pngs)["class_ids"]
    assert np.mean(resized == call(served, "predict_image", images=[encode(p) for p in images])["class_ids"]) >= 0.75


def test_embed_returns_the_penultimate_layer(exported, served, test_images):
    export_dir, model = exported
    images, _ = test_images
    pngs = [encode(p) for p in images]
    embeddings = call(served, "embed", images=pngs)["embeddings"]
    assert embeddings.shape == (16, model.get_layer("fc2").units)
    transformed = tft.TFTransformOutput(os.path.join(os.path.dirname(export_dir), "transform")).transform_raw_features(
        {features.IMAGE: tf.constant([[png] for png in pngs])}  # the raw spec of train_and_export: [N, 1]
    )[features.IMAGE_XF]
    np.testing.assert_allclose(embeddings, signatures.embedding_model(model)(transformed).numpy(), atol=1e-5)


def test_class_names_travel_in_the_outputs_and_the_assets(exported, served, test_images):
    images, _ = test_images
    outputs = call(served, "predict_image", images=[encode(p) for p in images])
    names = list(FASHION_MNIST.class_names)
    assert read_class_names(exported[0]) == names
    assert [name.decode() for name in outputs["class_names"]] == [names[i] for i in outputs["class_ids"]]
    assert [[name.decode() for name in row] for row in outputs["all_class_names"]] == [names] * 16
