"""LeNet-5 (LeCun et al., 1998) with ReLU and max pooling."""

import tensorflow as tf
import tf_keras as keras
from tf_keras import layers

from cnnpipe.core import features
from cnnpipe.models import blocks


def lenet5(
    input_shape: tuple[int, int, int],
    num_classes: int,
    dropout: float = 0.0,
    l2: float = 5e-4,
    use_bias: bool = True,
    width: float = 1.0,
    batch_norm: bool = False,
) -> keras.Model:
    """conv 5x5x6, pool, conv 5x5x16, pool, FC 120, FC 84, FC classes; `width` scales the filters and units,
    `batch_norm` puts batch norm between each conv and its ReLU.

    conv1 pads by 2 pixels ("same"), so a 28x28 image behaves as LeNet-5's 32x32 frame:
    61,706 parameters for 28x28x1 inputs and 10 classes. `l2` penalizes the hidden layers'
    weights (0 turns it off); `use_bias=False` drops the hidden layers' biases (a training pitfall measured
    in docs/pitfalls.md).
    """
    hidden = {"activation": "relu", "use_bias": use_bias,
              "kernel_regularizer": keras.regularizers.L2(l2) if l2 else None}
    conv1, conv2, fc1, fc2 = (max(1, round(size * width)) for size in (6, 16, 120, 84))
    inputs = keras.Input(shape=input_shape, name=features.IMAGE_XF)
    x = convolution(inputs, conv1, "conv1", "same", hidden, batch_norm)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = convolution(x, conv2, "conv2", "valid", hidden, batch_norm)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(fc1, name="fc1", **hidden)(x)
    x = layers.Dropout(dropout, name="dropout1")(x)
    x = layers.Dense(fc2, name="fc2", **hidden)(x)
    x = layers.Dropout(dropout, name="dropout2")(x)
    return keras.Model(inputs, blocks.classifier(x, num_classes), name="lenet5")


def convolution(x: tf.Tensor, filters: int, name: str, padding: str, hidden: dict, batch_norm: bool) -> tf.Tensor:
    """A 5x5 conv with the `hidden` layers' settings; with `batch_norm`, batch norm before its ReLU."""
    if not batch_norm:
        return layers.Conv2D(filters, 5, padding=padding, name=name, **hidden)(x)
    x = layers.Conv2D(filters, 5, padding=padding, name=name, **{**hidden, "activation": None})(x)
    x = layers.BatchNormalization(epsilon=blocks.BN_EPSILON, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)
