"""An embedding made for retrieval: any registry model's features through a learned projection to
`--embedding-dim` dimensions, L2-normalized, and a cosine classifier on it (normalized softmax: the logits are the
cosines to each class's normalized weight vector, times a fixed scale). Cross-entropy on those logits pulls each
image's embedding towards its class direction and away from the others', so the cosine between two embeddings
ranks images of one class first: what visual search needs. The classifier keeps the name of every model's head
(`blocks.HEAD`), so the `embed` signature returns the normalized embedding and the serving signatures, warm start
and the Evaluator see a model like any other.
"""

import tensorflow as tf
import tf_keras as keras

from cnnpipe.models import blocks

EMBEDDING = "embedding"
SCALE = 16.0  # the cosines' scale: softmax over values in [-1, 1] alone cannot approach one-hot


@keras.utils.register_keras_serializable(package="cnnpipe")
class CosineClassifier(keras.layers.Layer):
    """Class probabilities: softmax of `scale` x the cosine between a (normalized) embedding and each class's weights."""

    def __init__(self, classes: int, scale: float = SCALE, **kwargs):
        super().__init__(**kwargs)
        self.classes, self.scale = classes, scale

    def build(self, input_shape: tf.TensorShape) -> None:
        self.kernel = self.add_weight("kernel", shape=(input_shape[-1], self.classes), initializer="glorot_uniform")
        super().build(input_shape)

    def call(self, embeddings: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(self.scale * tf.matmul(embeddings, tf.math.l2_normalize(self.kernel, axis=0)))

    def get_config(self) -> dict:
        return {**super().get_config(), "classes": self.classes, "scale": self.scale}


def with_embedding(model: keras.Model, dim: int) -> keras.Model:
    """`model` with its head replaced by a `dim`-d normalized embedding and a cosine classifier."""
    features = model.get_layer(blocks.HEAD).input
    embedding = keras.layers.Dense(dim, name=EMBEDDING)(features)
    normalized = keras.layers.UnitNormalization(name=f"{EMBEDDING}_normalized")(embedding)
    classes = model.get_layer(blocks.HEAD).units
    return keras.Model(model.inputs, CosineClassifier(classes, name=blocks.HEAD)(normalized), name=model.name)
