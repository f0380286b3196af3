"""Serving signatures of the exported model: the transform graph, the model and the class names.

Every signature runs the Transform graph (the training preprocessing) and the model:

- `serving_default`: serialized tf.Examples carrying the encoded `image` (the records ingestion
  writes; TFMA evaluates through it).
- `predict_image`: encoded PNG/JPEG bytes of any size and colour mode (`images`).
- `predict_pixels`: float32 [N, H, W, C] pixels in [0, 255] (`pixels`), any size, 1-4 channels; other
  values (NaN, infinite, out of range) are refused with INVALID_ARGUMENT.
- `embed`: encoded images to the penultimate layer's features (`embeddings` [N, D]), averaged with their mirror
  images' for a model trained with flips.
- `search` (a model exported with a catalog): encoded images to the catalog's k most similar items, best first
  (`neighbor_ids`, `scores` (mostly the cosine of the embeddings), `neighbor_class_names`, `neighbor_sources`,
  [N, k] each; `models/catalog.py`).
- `search_vector` (the same models): encoded images to the vectors `search` scores items' by (`search_vectors`): what
  a nearest-neighbour index over the catalog (`cnnpipe serve`'s ScaNN) is queried with.
- `classify`: TF Serving's Classify API. `serving_default`'s tf.Examples (`inputs`) to `classes` [N, classes] (each
  column's class name) and `scores` [N, classes] (the probabilities): the one input and two outputs TF Serving's
  classifier reads, with the method name `tensorflow/serving/classify` (`classify_method_name`), so TF Serving's
  Classify takes it with `--enable_signature_method_name_check` too.

The three predict signatures return `probabilities` [N, classes], `class_ids` [N], `class_names`
[N] and `all_class_names` [N, classes] (the name of each probability column, so a remote client
can name the top classes). The class names are also the asset `assets/class_names.txt`.
"""

import os
import tempfile
from typing import Callable, Optional, Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tensorflow.python.saved_model import fingerprinting_utils  # no public API writes a fingerprint

from cnnpipe.core import features
from cnnpipe.core.names import (ALL_CLASS_NAMES, CLASS_IDS, CLASS_NAMES, CLASS_NAMES_ASSET, CLASSIFY, CLASSIFY_CLASSES,
                               CLASSIFY_SCORES, EMBED, EMBEDDINGS, INPUTS, PREDICT_IMAGE, PREDICT_PIXELS, PROBABILITIES,
                               SEARCH, SEARCH_VECTOR, SEARCH_VECTORS, SERVING_DEFAULT)
from cnnpipe.models import blocks, embedding, preprocessing
from cnnpipe.models.catalog import Catalog, CatalogTable, query_vectors


def _column_names(probabilities: tf.Tensor, class_names: tf.Tensor) -> tf.Tensor:
    """[N, classes]: the class name of each column of `probabilities`, on every row."""
    return tf.tile(class_names[tf.newaxis], [tf.shape(probabilities)[0], 1])


def _predictions(probabilities: tf.Tensor, class_names: tf.Tensor) -> dict[str, tf.Tensor]:
    class_ids = tf.argmax(probabilities, axis=-1)
    return {
        PROBABILITIES: probabilities,
        CLASS_IDS: class_ids,
        CLASS_NAMES: tf.gather(class_names, class_ids),
        ALL_CLASS_NAMES: _column_names(probabilities, class_names),
    }


def checked_pixels(pixels: tf.Tensor) -> tf.Tensor:
    """`pixels`, once an assertion in the graph has refused non-finite values and values outside [0, 255]
    (INVALID_ARGUMENT, naming what the request has), in any server that runs the SavedModel."""
    finite = tf.reduce_all(tf.math.is_finite(pixels))
    low, high = tf.reduce_min(pixels), tf.reduce_max(pixels)  # +inf and -inf for no pixels: accepted
    found = tf.cond(finite, lambda: tf.strings.format("values from {} to {}", (low, high)),
                    lambda: tf.where(tf.reduce_any(tf.math.is_nan(pixels)), "NaN", "infinite values"))
    check = tf.debugging.Assert(finite & (low >= 0.0) & (high <= 255.0),
                                [tf.strings.join(["pixels must be finite values in [0, 255]; this request has", found],
                                                 " ")])
    with tf.control_dependencies([check]):
        return tf.identity(pixels)


def embedding_model(model: keras.Model, mirrored: bool = False) -> keras.Model:
    """The model up to the input of its softmax head: the penultimate layer's features; `mirrored`, their average
    over the image and its mirror image (for a model trained with flips)."""
    embedder = keras.Model(model.inputs, model.get_layer(blocks.HEAD).input, name=f"{model.name}_embedding")
    return embedding.mirror_averaged(embedder) if mirrored else embedder


def _signatures(model: keras.Model, image_spec: dict) -> dict[str, Callable]:
    """The serving functions; they read the Transform layer, embedder, class names and catalog tracked on `model`."""

    image_shape = [-1, *image_spec[features.IMAGE].shape]  # as tf.io.parse_example gives it, e.g. [N, 1]

    def model_input(images: tf.Tensor) -> dict[str, tf.Tensor]:
        transformed = model.tft_layer({features.IMAGE: tf.reshape(images, image_shape)})
        return {features.IMAGE_XF: transformed[features.IMAGE_XF]}

    def examples_probabilities(serialized: tf.Tensor) -> tf.Tensor:
        raw = tf.io.parse_example(serialized, image_spec)
        return model(model_input(raw[features.IMAGE]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUTS[SERVING_DEFAULT])])
    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return _predictions(examples_probabilities(serialized), model.class_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUTS[CLASSIFY])])
    def classify(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = examples_probabilities(serialized)
        return {CLASSIFY_CLASSES: _column_names(probabilities, model.class_names), CLASSIFY_SCORES: probabilities}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUTS[PREDICT_IMAGE])])
    def predict_image(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return _predictions(model(model_input(images)), model.class_names)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name=INPUTS[PREDICT_PIXELS])])
    def predict_pixels(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        images = preprocessing.encode_images(checked_pixels(pixels))
        return _predictions(model(model_input(images)), model.class_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUTS[EMBED])])
    def embed(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {EMBEDDINGS: model.embedder(model_input(images))}

    functions = {SERVING_DEFAULT: serve_examples, PREDICT_IMAGE: predict_image, PREDICT_PIXELS: predict_pixels,
                 EMBED: embed, CLASSIFY: classify}
    if getattr(model, "catalog", None) is not None:
        def search_vectors(images: tf.Tensor) -> tf.Tensor:
            inputs = model_input(images)
            return query_vectors(model.embedder(inputs), model(inputs), model.catalog.class_weight)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUTS[SEARCH])])
        def search(images: tf.Tensor) -> dict[str, tf.Tensor]:
            return model.catalog.nearest(search_vectors(images))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUTS[SEARCH_VECTOR])])
        def search_vector(images: tf.Tensor) -> dict[str, tf.Tensor]:
            return {SEARCH_VECTORS: search_vectors(images)}

        functions[SEARCH], functions[SEARCH_VECTOR] = search, search_vector
    return functions


def export(model: keras.Model, tft_output: tft.TFTransformOutput, class_names: Sequence[str], export_dir: str,
           catalog: Optional[Catalog] = None, embedder: Optional[keras.Model] = None) -> None:
    """Saves `model` as a SavedModel with the Transform graph, the serving signatures and the class names, and with
    a `search` signature over `catalog` when one is given. `embed` and `search` embed with `embedder`, by default
    `embedding_model(model)`."""
    model.tft_layer = tft_output.transform_features_layer()  # tracked, so the graph is saved
    model.class_names = tf.Variable(list(class_names), trainable=False, name="class_names")
    model.embedder = embedder or embedding_model(model)
    model.catalog = CatalogTable(catalog) if catalog else None
    image_spec = {features.IMAGE: tft_output.raw_feature_spec()[features.IMAGE]}
    with tempfile.TemporaryDirectory() as scratch:
        names_file = os.path.join(scratch, CLASS_NAMES_ASSET)
        with open(names_file, "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in class_names))
        model.class_names_file = tf.saved_model.Asset(names_file)  # copied to <export_dir>/assets/
        model.save(export_dir, save_format="tf", signatures=_signatures(model, image_spec))
    classify_method_name(export_dir)


def classify_method_name(export_dir: str) -> None:
    """Gives the `classify` signature TF Serving's classify method name. tf.saved_model.save writes the predict method
    name on every signature, so saved_model.pb is rewritten (TensorFlow's MethodNameUpdater) and its fingerprint
    (fingerprint.pb, which a search index is checked against) computed anew from it."""
    updater = tf.compat.v1.saved_model.signature_def_utils.MethodNameUpdater(export_dir)
    updater.replace_method_name(CLASSIFY, tf.saved_model.CLASSIFY_METHOD_NAME, tags=tf.saved_model.SERVING)
    updater.save()
    fingerprinting_utils.write_fingerprint(export_dir)
