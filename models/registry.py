"""The model registry: a name picks a Keras model builder. Add a model by adding an entry."""

import dataclasses
from typing import Callable

import tf_keras as keras

from cnnpipe.models import lenet

Builder = Callable[..., keras.Model]  # (input_shape, num_classes, **options) -> keras.Model


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    build: Builder
    input_shape: tuple[int, int, int]  # the size Transform resizes images to by default
    description: str


MODELS: dict[str, ModelEntry] = {
    "lenet5": ModelEntry(lenet.lenet5, (28, 28, 1), "LeNet-5: 2 conv + 3 FC layers, ReLU, max pooling"),
}


def get(name: str) -> ModelEntry:
    """The registry entry for `name`, or a ValueError listing the known models."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build(name: str, input_shape: tuple[int, int, int], num_classes: int, **options) -> keras.Model:
    """Builds model `name` for images of `input_shape` and `num_classes` classes."""
    return get(name).build(tuple(input_shape), num_classes, **options)
