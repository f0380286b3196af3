"""Residual networks of bottleneck blocks (He et al., 2016), depth and width as parameters.

`resnet(stages=(3, 4, 6, 3), width=64, stem="imagenet")` is ResNet-50: at 224x224x3 with 1,000
classes it has the 25,636,712 parameters of tf_keras.applications.ResNet50. The small variant
(a 3x3 stem without pooling, three stages) suits 28x28 images.
"""

from typing import Sequence

import tf_keras as keras
from tf_keras import layers

from cnnpipe.core import features
from cnnpipe.models import blocks

STEMS = ("imagenet", "small")


def resnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    stages: Sequence[int] = (2, 2, 2),
    width: int = 16,
    stem: str = "small",
) -> keras.Model:
    """`stages[i]` bottleneck blocks of `width * 2**i` filters (4x that out); each stage after the first halves
    the size."""
    if stem not in STEMS:
        raise ValueError(f"unknown stem '{stem}'; choose one of {', '.join(STEMS)}")
    inputs = keras.Input(shape=input_shape, name=features.IMAGE_XF)
    if stem == "imagenet":
        x = blocks.conv(inputs, width, 7, "conv1", strides=2)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    else:
        x = blocks.conv(inputs, width, 3, "conv1")
    for stage, count in enumerate(stages):
        for block in range(count):
            strides = 2 if stage > 0 and block == 0 else 1
            x = blocks.bottleneck(x, width * 2**stage, f"conv{stage + 2}_block{block + 1}", strides=strides)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, blocks.classifier(x, num_classes), name="resnet")
