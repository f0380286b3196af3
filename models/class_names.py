"""The class names a SavedModel carries in its assets (`signatures.export` writes them), read with TensorFlow alone:
no Keras or Transform, so processes that only read them start quickly."""

import os

import tensorflow as tf

from cnnpipe.core.names import CLASS_NAMES_ASSET


def read_class_names(model_dir: str) -> list[str]:
    """The class names a SavedModel carries, in class-id order (from its assets)."""
    with tf.io.gfile.GFile(os.path.join(model_dir, "assets", CLASS_NAMES_ASSET)) as f:
        return f.read().splitlines()
