"""Serving signatures of the exported model: the transform graph, the model and the class names.

`serving_default` takes serialized tf.Examples carrying the encoded `image` (the same records
ingestion writes), applies the Transform graph and the model, and returns
`probabilities` [N, classes], `class_ids` [N] and `class_names` [N].
"""

from typing import Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from cnnpipe.models import features

SERVING_DEFAULT = "serving_default"


def _predictions(model: keras.Model, transformed: dict[str, tf.Tensor], class_names: tf.Tensor) -> dict[str, tf.Tensor]:
    probabilities = model({features.IMAGE_XF: transformed[features.IMAGE_XF]})
    class_ids = tf.argmax(probabilities, axis=-1)
    return {
        "probabilities": probabilities,
        "class_ids": class_ids,
        "class_names": tf.gather(class_names, class_ids),
    }


def export(model: keras.Model, tft_output: tft.TFTransformOutput, class_names: Sequence[str], export_dir: str) -> None:
    """Saves `model` as a SavedModel with the Transform graph and the serving signatures."""
    model.tft_layer = tft_output.transform_features_layer()  # tracked, so the graph is saved
    model.class_names = tf.Variable(list(class_names), trainable=False, name="class_names")
    image_spec = {features.IMAGE: tft_output.raw_feature_spec()[features.IMAGE]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = tf.io.parse_example(serialized, image_spec)
        return _predictions(model, model.tft_layer(raw), model.class_names)

    model.save(export_dir, save_format="tf", signatures={SERVING_DEFAULT: serve_examples})
