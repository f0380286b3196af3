"""AlexNet (Krizhevsky et al., 2012): five conv layers and three fully connected ones.

At 227x227x3 with 1,000 classes it has 62,378,344 parameters (the single-tower form, no groups):
conv1 11x11x3x96 = 34,848 weights (+96 biases) giving 55x55x96, conv2 5x5x96x256 = 614,400
weights (+256) giving 27x27x256, conv3-5 3x3 with 384, 384, 256 filters, then FC 4096, 4096, 1000.
(Layer 2 has 614,656 parameters with its biases; a figure of "710K" sometimes quoted for it is a slip.)
"""

import tf_keras as keras
from tf_keras import layers

from cnnpipe.core import features
from cnnpipe.models import blocks

FILTERS = (96, 256, 384, 384, 256)
FC_UNITS = 4096
STEMS = ("imagenet", "small")


def alexnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    width: float = 1.0,
    stem: str = "imagenet",
    normalization: str = "lrn",
    dropout: float = 0.5,
) -> keras.Model:
    """AlexNet with filters and FC units scaled by `width`.

    `stem="imagenet"`: conv1 11x11 stride 4 (for 227x227 inputs). `stem="small"`: conv1 5x5
    stride 1, so 28x28 images keep their detail. `normalization` follows conv1 and conv2:
    "lrn" as in the paper, "batchnorm" (after every conv), or "none".
    """
    filters = [max(1, round(f * width)) for f in FILTERS]
    units = max(1, round(FC_UNITS * width))
    if stem not in STEMS:
        raise ValueError(f"unknown stem '{stem}'; choose one of {', '.join(STEMS)}")
    late_normalization = "batchnorm" if normalization == "batchnorm" else "none"

    inputs = keras.Input(shape=input_shape, name=features.IMAGE_XF)
    if stem == "imagenet":
        x = blocks.conv(inputs, filters[0], 11, "conv1", strides=4, padding="valid", normalization=normalization)
    else:
        x = blocks.conv(inputs, filters[0], 5, "conv1", normalization=normalization)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = blocks.conv(x, filters[1], 5, "conv2", normalization=normalization)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    for index, count in enumerate(filters[2:], start=3):
        x = blocks.conv(x, count, 3, f"conv{index}", normalization=late_normalization)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    for index in (6, 7):
        x = layers.Dense(units, activation="relu", name=f"fc{index}")(x)
        x = layers.Dropout(dropout, name=f"dropout{index}")(x)
    return keras.Model(inputs, blocks.classifier(x, num_classes), name="alexnet")
