"""Layer blocks the models share: conv with optional normalization, the residual bottleneck, the head."""

from typing import Optional

import tensorflow as tf
import tf_keras as keras
from tf_keras import layers

NORMALIZATIONS = ("batchnorm", "lrn", "none")
HEAD = "probabilities"  # the softmax layer every model ends with; warm starts replace it when classes differ
BN_EPSILON = 1.001e-5  # as in tf_keras.applications, so parameter counts and numerics match


@keras.utils.register_keras_serializable(package="cnnpipe")
class LocalResponseNormalization(layers.Layer):
    """AlexNet's local response normalization across channels (Krizhevsky et al., 2012, section 3.3)."""

    def __init__(self, depth_radius: int = 2, bias: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.nn.local_response_normalization(inputs, self.depth_radius, self.bias, self.alpha, self.beta)

    def get_config(self) -> dict:
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


def conv(
    x: tf.Tensor,
    filters: int,
    kernel_size: int,
    name: str,
    strides: int = 1,
    padding: str = "same",
    normalization: str = "batchnorm",
    activation: Optional[str] = "relu",
) -> tf.Tensor:
    """Conv2D → normalization (batch norm, LRN or none) → activation."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, name=f"{name}_conv")(x)
    if normalization == "batchnorm":
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    elif normalization == "lrn":
        x = LocalResponseNormalization(name=f"{name}_lrn")(x)
    elif normalization != "none":
        raise ValueError(f"unknown normalization '{normalization}'; choose one of {', '.join(NORMALIZATIONS)}")
    return layers.Activation(activation, name=f"{name}_{activation}")(x) if activation else x


def bottleneck(x: tf.Tensor, filters: int, name: str, strides: int = 1, expansion: int = 4) -> tf.Tensor:
    """ResNet's bottleneck block: 1x1 reduce → 3x3 → 1x1 expand to `expansion * filters`, plus the shortcut.

    The shortcut is a strided 1x1 projection where the shape changes, the identity otherwise
    (He et al., 2016; the layout of tf_keras.applications.ResNet50).
    """
    shortcut = x
    if strides != 1 or x.shape[-1] != expansion * filters:
        shortcut = conv(x, expansion * filters, 1, f"{name}_0", strides=strides, activation=None)
    x = conv(x, filters, 1, f"{name}_1", strides=strides)
    x = conv(x, filters, 3, f"{name}_2")
    x = conv(x, expansion * filters, 1, f"{name}_3", activation=None)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def classifier(x: tf.Tensor, num_classes: int) -> tf.Tensor:
    """The softmax output layer every model ends with (the name the serving signature relies on)."""
    return layers.Dense(num_classes, activation="softmax", name=HEAD)(x)
