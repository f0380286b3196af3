"""The exported model's signatures on real Fashion-MNIST images: each agrees with serving_default."""

import io
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from PIL import Image

from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting as fingerprinting_pywrap

from conftest import encode, fashion_mnist, train_and_export
from cnnpipe.components import signature_check
from cnnpipe.components.ingestion.formats import make_example
from cnnpipe.core import features
from cnnpipe.models import signatures
from cnnpipe.models.class_names import read_class_names
from cnnpipe.cli import main as cli
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


def examples_of(encoded: list[bytes], labels=None) -> list[bytes]:
    labels = np.zeros(len(encoded), int) if labels is None else labels
    return [make_example(image, int(label), "", f"client:{i}", 28, 28) for i, (image, label) in
            enumerate(zip(encoded, labels))]


def by_example(served, encoded: list[bytes]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in served["serving_default"](examples=tf.constant(examples_of(encoded))).items()}


def call(served, name: str, **inputs) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in served[name](**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def assert_same_predictions(actual: dict, expected: dict) -> None:
    np.testing.assert_allclose(actual["probabilities"], expected["probabilities"], atol=1e-6)
    for key in ("class_ids", "class_names", "all_class_names"):
        np.testing.assert_array_equal(actual[key], expected[key])


def test_the_model_exports_every_signature(served):
    assert set(served) == {"serving_default", "predict_image", "predict_pixels", "embed", "classify"}


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


def test_classify_answers_serving_defaults_examples_with_its_probabilities_and_class_names(served, test_images):
    images, _ = test_images
    examples = examples_of([encode(p) for p in images])
    classified = call(served, "classify", inputs=examples)
    expected = call(served, "serving_default", examples=examples)
    assert set(classified) == {"classes", "scores"}
    assert classified["scores"].dtype == np.float32 and classified["scores"].shape == (16, 10)
    np.testing.assert_allclose(classified["scores"], expected["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(classified["classes"], expected["all_class_names"])
    assert [name.decode() for name in classified["classes"][0]] == list(FASHION_MNIST.class_names)


def test_the_classify_signature_def_is_what_tf_servings_classifier_reads(exported):
    """One string input `inputs`, and `classes` (strings) and `scores` (floats), both of rank 2, with TF Serving's
    classify method name; the fingerprint written after the rewrite is the one computed from saved_model.pb."""
    saved_model = saved_model_pb2.SavedModel.FromString(open(os.path.join(exported[0], "saved_model.pb"), "rb").read())
    signature = saved_model.meta_graphs[0].signature_def["classify"]
    assert {key: tensor.dtype for key, tensor in signature.inputs.items()} == {"inputs": types_pb2.DT_STRING}
    assert {key: tensor.dtype for key, tensor in signature.outputs.items()} == {"classes": types_pb2.DT_STRING,
                                                                                 "scores": types_pb2.DT_FLOAT}
    assert [len(tensor.tensor_shape.dim) for tensor in signature.outputs.values()] == [2, 2]
    assert signature.method_name == tf.saved_model.CLASSIFY_METHOD_NAME
    assert saved_model.meta_graphs[0].signature_def["serving_default"].method_name == tf.saved_model.PREDICT_METHOD_NAME
    written = tf.saved_model.experimental.read_fingerprint(exported[0])
    recomputed = fingerprint_pb2.FingerprintDef.FromString(fingerprinting_pywrap.CreateFingerprintDef(exported[0]))
    assert written.saved_model_checksum == recomputed.saved_model_checksum


def test_the_push_check_compares_classify_with_serving_default(exported, served, tmp_path):
    images, labels = fashion_mnist("t10k", 64)
    records = examples_of([encode(p) for p in images], labels)
    with tf.io.TFRecordWriter(str(tmp_path / "eval.gz"), "GZIP") as writer:
        for record in records:
            writer.write(record)
    checked = signature_check.run_checks(exported[0], str(tmp_path / "*.gz"))
    assert checked["problems"] == [] and checked["count"] == 64 and "classify" in checked["signatures"]
    sample = records[:signature_check.SAMPLE]
    expected = call(served, "serving_default", examples=sample)
    outputs = served["classify"](inputs=tf.constant(sample))
    assert signature_check._classify_problems(outputs, expected) == []
    shuffled = {"classes": outputs["classes"][:, ::-1], "scores": outputs["scores"][::-1]}  # another class order
    scores, classes = signature_check._classify_problems(shuffled, expected)
    assert scores.startswith("classify's scores differ from serving_default's probabilities by up to ")
    assert classes == "classify's classes differ from serving_default's all_class_names"


@pytest.fixture()
def image_files(test_images, tmp_path) -> list[str]:
    """Three test images as PNG files of another size and colour mode than the training images."""
    files = []
    for index, pixels in enumerate(test_images[0][:3]):
        files.append(str(tmp_path / f"image{index}.png"))
        with open(files[-1], "wb") as f:
            f.write(encode(pixels, "RGB", (56, 56)))
    return files


def test_predict_api_classify_in_process_prints_what_predict_image_gives(exported, image_files, tmp_path, capsys):
    serving_dir = tmp_path / "serving"
    shutil.copytree(exported[0], serving_dir / "fashion" / "1")
    printed = {}
    for api in ("predict", "classify"):
        assert cli.main(["predict", *image_files, "--api", api, "--model", "fashion", "--serving-dir", str(serving_dir),
                         "--top-k", "3"]) == 0
        printed[api] = capsys.readouterr().out
    assert printed["classify"] == printed["predict"]
    lines = printed["classify"].splitlines()
    assert lines[0::4] == image_files and len(lines) == 12
    expected = call(tf.saved_model.load(exported[0]).signatures, "predict_image",
                    images=[open(f, "rb").read() for f in image_files])
    for index, line in enumerate(lines[1::4]):
        name, percent = line.rsplit(maxsplit=1)
        assert name.strip() == expected["class_names"][index].decode()
        assert float(percent.rstrip("%")) == pytest.approx(100 * expected["probabilities"][index].max(), abs=0.006)


class _WithoutClassify(tf.Module):
    """A model exported before pushed models had a classify signature."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": tf.ones([tf.shape(examples)[0], 10]) / 10}


def test_predict_api_classify_names_a_model_without_the_signature_and_the_fix(image_files, tmp_path, capsys):
    model = _WithoutClassify()
    model_dir = tmp_path / "serving" / "old" / "3"
    tf.saved_model.save(model, str(model_dir), signatures={"serving_default": model.serve})
    assert cli.main(["predict", image_files[0], "--api", "classify", "--model", "old",
                     "--serving-dir", str(tmp_path / "serving")]) == 1
    error = capsys.readouterr().err
    assert f"{model_dir} has no 'classify' signature (it has serving_default); it was exported before pushed models " \
        "had one: push a newer model (`cnnpipe run`), or use --api predict" in error
