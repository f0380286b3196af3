"""The model registry: a name picks a Keras model builder. Add a model by adding an entry."""

import dataclasses
import functools
import inspect
from typing import Any, Callable

import tf_keras as keras

from cnnpipe.models import alexnet, autograph, lenet, resnet

Builder = Callable[..., keras.Model]  # (input_shape, num_classes, **options) -> keras.Model
# What the Tuner may choose of a model's builder options:
# option -> (keras_tuner.HyperParameters, the builder's default: the first value tried) -> a value.
SearchSpace = dict[str, Callable[[Any, Any], Any]]


def _dropout(hp: Any, default: float) -> float:
    return hp.Float("dropout", 0.0, 0.5, step=0.1, default=default)


def _width(*choices: float) -> Callable[[Any, float], float]:
    return lambda hp, default: hp.Choice("width", list(choices), default=default)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    build: Builder
    input_shape: tuple[int, int, int]  # the size Transform resizes images to by default
    description: str
    search_space: SearchSpace = dataclasses.field(default_factory=dict)  # the learning rate is always searched

    def defaults(self) -> dict[str, Any]:
        """The builder's keyword defaults (a partial's bound keywords included)."""
        return {name: parameter.default for name, parameter in inspect.signature(self.build).parameters.items()
                if parameter.default is not inspect.Parameter.empty}


MODELS: dict[str, ModelEntry] = {
    "lenet5": ModelEntry(lenet.lenet5, (28, 28, 1), "LeNet-5: 2 conv + 3 FC layers, ReLU, max pooling",
                         {"width": _width(1.0, 2.0, 3.0), "dropout": _dropout}),
    "lenet5_wide": ModelEntry(
        functools.partial(lenet.lenet5, width=2, batch_norm=True),
        (28, 28, 1),
        "LeNet-5 at twice the width, with batch norm after each conv: the default",
        {"width": _width(1.0, 2.0, 3.0), "dropout": _dropout},
    ),
    "alexnet": ModelEntry(
        alexnet.alexnet, (227, 227, 3), "AlexNet: 5 conv (11x11/4 stem, LRN) + 3 FC layers of 4096, dropout",
        {"dropout": _dropout},
    ),
    "alexnet_small": ModelEntry(
        functools.partial(alexnet.alexnet, width=0.25, stem="small", normalization="batchnorm"),
        (28, 28, 1),
        "AlexNet at 1/4 width for small images: 5x5/1 stem, batch norm instead of LRN",
        {"width": _width(0.125, 0.25, 0.5), "dropout": _dropout},
    ),
    "resnet": ModelEntry(
        resnet.resnet, (28, 28, 1), "ResNet for small images: 3x3 stem, 3 stages of 2 bottleneck blocks, width 16",
        {"width": _width(8, 16, 32)},
    ),
    "resnet50": ModelEntry(
        functools.partial(resnet.resnet, stages=(3, 4, 6, 3), width=64, stem="imagenet"),
        (224, 224, 3),
        "ResNet-50: 7x7/2 stem, 16 bottleneck blocks in 4 stages (3, 4, 6, 3)",
    ),
}


def get(name: str) -> ModelEntry:
    """The registry entry for `name`, or a ValueError listing the known models."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build(name: str, input_shape: tuple[int, int, int], num_classes: int, **options) -> keras.Model:
    """Builds model `name` for images of `input_shape` and `num_classes` classes, to train and export without
    AutoGraph converting tf_keras (see models/autograph.py)."""
    autograph.exempt_tf_keras()
    return get(name).build(tuple(input_shape), num_classes, **options)
