"""preprocessing_fn under TFT on real Fashion-MNIST images: shape, range, statistics."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from conftest import encode, fashion_mnist
from cnnpipe.core import features
from cnnpipe.models.preprocessing import preprocessing_fn

RAW_SPEC = {features.IMAGE: tf.io.FixedLenFeature([], tf.string), features.LABEL: tf.io.FixedLenFeature([], tf.int64)}


def transform(records: list[dict], tmp_path, input_shape=(28, 28, 1), normalization="scale") -> list[dict]:
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    config = {"input_shape": list(input_shape), "normalization": normalization}
    with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=False):
        (transformed, _), _ = (records, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, config)
        )
    return transformed


@pytest.fixture(scope="module")
def real_images():
    return fashion_mnist("train", 64)


def test_scale_maps_real_pixels_to_minus_one_one_exactly(real_images, tmp_path):
    images, labels = real_images
    records = [{features.IMAGE: encode(p), features.LABEL: int(label)} for p, label in zip(images, labels)]
    out = transform(records, tmp_path)
    pixels = np.stack([row[features.IMAGE_XF] for row in out])
    assert pixels.shape == (64, 28, 28, 1)
    np.testing.assert_allclose(pixels[..., 0], images / 127.5 - 1.0, atol=1e-5)
    assert [row[features.LABEL_XF] for row in out] == labels.tolist()


def test_standardize_uses_the_data_mean_and_std(real_images, tmp_path):
    images, labels = real_images
    records = [{features.IMAGE: encode(p), features.LABEL: int(label)} for p, label in zip(images, labels)]
    pixels = np.stack([row[features.IMAGE_XF] for row in transform(records, tmp_path, normalization="standardize")])
    assert abs(pixels.mean()) < 1e-3 and abs(pixels.std() - 1.0) < 1e-3
    np.testing.assert_allclose(pixels[..., 0], (images - images.mean()) / images.std(), atol=1e-3)


def test_images_of_any_size_and_mode_become_the_model_input(real_images, tmp_path):
    images, labels = real_images
    records = [
        {features.IMAGE: encode(images[0], "RGB", (56, 40)), features.LABEL: int(labels[0])},
        {features.IMAGE: encode(images[1], "RGBA"), features.LABEL: int(labels[1])},
        {features.IMAGE: encode(images[2], "RGB", image_format="JPEG"), features.LABEL: int(labels[2])},
    ]
    out = transform(records, tmp_path, input_shape=(32, 32, 3))
    for row in out:
        assert row[features.IMAGE_XF].shape == (32, 32, 3)
        assert row[features.IMAGE_XF].min() >= -1.0 and row[features.IMAGE_XF].max() <= 1.0
