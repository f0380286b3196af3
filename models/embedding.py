"""An embedding made for retrieval: any registry model's features through a learned projection to
`--embedding-dim` dimensions, L2-normalized, and a cosine classifier on it (normalized softmax: the logits are the
cosines to each class's normalized weight vector, times a fixed scale). Cross-entropy on those logits pulls each
image's embedding towards its class direction and away from the others', so the cosine between two embeddings
ranks images of one class first: what visual search needs. The classifier keeps the name of every model's head
(`blocks.HEAD`), so the `embed` signature returns the normalized embedding and the serving signatures, warm start
and the Evaluator see a model like any other.

A model trained on randomly mirrored images (`--flip`) learned that an image and its mirror image are the same item;
`mirror_averaged` makes its embedding say so exactly, as the average over both (test-time augmentation).

Training adds a supervised contrastive term on the embeddings of each batch (Khosla et al., 2020), which ranks an
image's same-class batch mates above the others directly: `with_contrastive_output` gives the trained model the
embedding as a second output, and the term is that output's loss. Alone, these terms pull a class towards one point,
and search returns its items in near-arbitrary order. An instance term keeps items apart (NT-Xent, as SimCLR, Chen et
al., 2020): each batch holds two views of every image (`two_views`: shifted, brighter or darker, mirrored, as a second
photo of an item is), and each view must find its twin among all the batch's views, beside the class term.
"""

from typing import Callable

import tensorflow as tf
import tf_keras as keras

from cnnpipe.core import features
from cnnpipe.models import blocks

EMBEDDING = "embedding"
NORMALIZED = f"{EMBEDDING}_normalized"
SCALE = 16.0  # the cosines' scale: softmax over values in [-1, 1] alone cannot approach one-hot
TEMPERATURE = 0.1  # of the contrastive terms' softmax over cosines
VIEW_SHIFT = 0.036  # a view's random shift, a fraction of the image's size (one pixel of 28)
VIEW_BRIGHTNESS = 0.15  # a view's random brightness: pixels times 1 ± up to this


@keras.utils.register_keras_serializable(package="cnnpipe")
class CosineClassifier(keras.layers.Layer):
    """Class probabilities: softmax of `scale` x the cosine between a (normalized) embedding and each class's
    weights."""

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
    normalized = keras.layers.UnitNormalization(name=NORMALIZED)(embedding)
    classes = model.get_layer(blocks.HEAD).units
    return keras.Model(model.inputs, CosineClassifier(classes, name=blocks.HEAD)(normalized), name=model.name)


class SupervisedContrastiveLoss(keras.losses.Loss):
    """Per image of a batch of unit embeddings: the mean, over its same-class batch mates, of minus the log-softmax
    of their cosine / temperature among all its batch mates (0 for an image without one)."""

    def __init__(self, temperature: float = TEMPERATURE, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature

    def call(self, labels: tf.Tensor, embeddings: tf.Tensor) -> tf.Tensor:
        labels = tf.reshape(labels, [-1])
        others = 1.0 - tf.eye(tf.shape(labels)[0])
        logits = tf.matmul(embeddings, embeddings, transpose_b=True) / self.temperature - 1e9 * (1.0 - others)
        log_softmax = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
        mates = tf.cast(tf.equal(labels[:, None], labels[None, :]), log_softmax.dtype) * others
        return -tf.reduce_sum(mates * log_softmax, axis=1) / tf.maximum(tf.reduce_sum(mates, axis=1), 1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


class ContrastiveLoss(keras.losses.Loss):
    """The supervised contrastive term on the labels' classes and, `instance_weight` times, the instance term: the
    same over the labels' second column, each image's id in the batch ([N, 2] labels from `two_views`; [N] labels
    have no instance term)."""

    def __init__(self, instance_weight: float = 0.0, temperature: float = TEMPERATURE, **kwargs):
        super().__init__(**kwargs)
        self.instance_weight, self.temperature = instance_weight, temperature
        self.term = SupervisedContrastiveLoss(temperature)

    def call(self, labels: tf.Tensor, embeddings: tf.Tensor) -> tf.Tensor:
        if labels.shape.rank == 1 or labels.shape[-1] == 1:
            return self.term.call(labels, embeddings)
        labels = tf.cast(labels, tf.int32)
        return (self.term.call(labels[:, 0], embeddings)
                + self.instance_weight * self.term.call(labels[:, 1], embeddings))

    def get_config(self) -> dict:
        return {**super().get_config(), "instance_weight": self.instance_weight, "temperature": self.temperature}


def two_views(moved: keras.Sequential) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, dict[str, tf.Tensor]]]:
    """What makes a batch of normalized images two random views of each, with the targets of the two outputs of
    `with_contrastive_output`: the class for the classifier, the class and the image's id for ContrastiveLoss. A view
    is the batch through `moved` (random shifts of at least VIEW_SHIFT, flips: the Trainer's augmentation), then
    brighter or darker as a photo is: its pixels scaled from black (the image's darkest), clipped at its brightest.
    (`moved` is made once, outside: a tf.data map cannot make random layers.)"""
    def views(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        black = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
        white = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)

        def view() -> tf.Tensor:
            lit = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], 1 - VIEW_BRIGHTNESS, 1 + VIEW_BRIGHTNESS)
            return tf.minimum(black + (moved(images, training=True) - black) * lit, white)

        classes = tf.tile(tf.reshape(tf.cast(labels, tf.int32), [-1]), [2])
        ids = tf.tile(tf.range(tf.shape(images)[0]), [2])
        return tf.concat([view(), view()], axis=0), {blocks.HEAD: classes,
                                                     NORMALIZED: tf.stack([classes, ids], axis=1)}

    return views


def with_contrastive_output(model: keras.Model) -> keras.Model:
    """`model` (from `with_embedding`) with its normalized embedding as a second output, for training only: compiled
    with `ContrastiveLoss` on it. The exported model is `model` itself."""
    return keras.Model(model.inputs, {blocks.HEAD: model.output, NORMALIZED: model.get_layer(NORMALIZED).output},
                       name=model.name)


@keras.utils.register_keras_serializable(package="cnnpipe")
class Mirror(keras.layers.Layer):
    """Images [N, H, W, C] mirrored left to right (`tf.image.flip_left_right` as a layer a saved model can name)."""

    def call(self, images: tf.Tensor) -> tf.Tensor:
        return tf.image.flip_left_right(images)


def mirror_averaged(embedder: keras.Model) -> keras.Model:
    """`embedder` made the same for an image and its mirror image: the normalized mean of its normalized output
    for both."""
    images = keras.Input(embedder.input_shape[1:], name=features.IMAGE_XF)
    views = [keras.layers.UnitNormalization()(embedder(view)) for view in (images, Mirror()(images))]
    return keras.Model(images, keras.layers.UnitNormalization()(keras.layers.Average()(views)),
                       name=f"{embedder.name}_mirror_averaged")
