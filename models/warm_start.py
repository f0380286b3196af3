"""Warm start: initialize a new model from an earlier one (fine-tuning).

Layers are matched by name; a layer whose weights have the same shapes takes them, any other
(e.g. the classification head when the class count differs) keeps its fresh initialization.
"""

import os
from typing import Optional

import tensorflow as tf
import tf_keras as keras

from cnnpipe.core.errors import TrainingError
from cnnpipe.core.versions import integer_versions
from cnnpipe.models import blocks


def holds_saved_model(path: Optional[str]) -> bool:
    """Whether `path` is a SavedModel directory."""
    return bool(path) and tf.io.gfile.exists(os.path.join(path, "saved_model.pb"))


def saved_model_dir(path: str) -> str:
    """`path` itself when it holds a SavedModel, else its newest integer version (a TF Serving base path)."""
    if holds_saved_model(path):
        return path
    # models may not import serving/model_config.versions (the layers), so it lists the path itself
    versions = integer_versions(tf.io.gfile.listdir(path)) if tf.io.gfile.isdir(path) else []
    if not versions:
        raise TrainingError(
            f"--warm-start {path}: neither a SavedModel nor a model base path with numbered versions. "
            "Point it at a pushed model (<serving-dir>/<model>[/<version>]) or use 'latest'."
        )
    return os.path.join(path, str(versions[-1]))


def initialize(model: keras.Model, path: str, freeze_features: bool = False) -> str:
    """Copies the weights of matching layers from the model at `path`; returns a one-line report.

    With `freeze_features`, every copied layer but the head stops training.
    """
    source = saved_model_dir(path)
    base = keras.models.load_model(source, compile=False)
    base_layers = {layer.name: layer for layer in base.layers}
    copied, fresh = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        weights = base_layers[layer.name].get_weights() if layer.name in base_layers else None
        if weights is not None and [w.shape for w in weights] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(weights)
            copied.append(layer)
        else:
            fresh.append(layer.name)
    if not copied:
        raise TrainingError(f"--warm-start {source}: no layer matches {model.name}'s; is it the same architecture?")
    if freeze_features:
        for layer in copied:
            layer.trainable = layer.name == blocks.HEAD
    frozen = " (frozen)" if freeze_features else ""
    return (f"warm start from {source}: {len(copied)} layers copied{frozen}, "
            f"{len(fresh)} initialized afresh ({', '.join(fresh) or 'none'})")
