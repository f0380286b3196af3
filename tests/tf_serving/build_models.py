"""Builds the SavedModels that tensorflow_model_server_test.py builds, each as OUT_DIR/<name>/00000123 (version 123):
`python build_models.py OUT_DIR`. A process of its own: the MirroredStrategy model needs two virtual CPUs, which
TensorFlow accepts only before it initializes its devices."""

import pathlib
import sys

import tensorflow as tf
import tf_keras as keras  # this project's Keras 2 (upstream's tf.keras)

VERSION_DIR = "00000123"


def tf_saved_model_save(export_dir: pathlib.Path) -> None:
    """test_tf_saved_model_save: y = v1 * v2 * x (v1 = 3, v2 = 2) of a tf.train.Checkpoint, x of any shape."""
    root = tf.train.Checkpoint()
    root.v1, root.v2 = tf.Variable(3.0), tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    # upstream's tf.saved_model.experimental.save is tf.saved_model.save (the alias is gone from TF 2.16)
    tf.saved_model.save(root, str(export_dir), root.f.get_concrete_function(tf.TensorSpec(None, tf.float32)))


def tf_saved_model_save_multiple_signatures(export_dir: pathlib.Path) -> None:
    """test_tf_saved_model_save_multiple_signatures: serving_default answers y = 1, custom_signature_key y = 2."""
    root = tf.train.Checkpoint()
    spec = [tf.TensorSpec(None, tf.float32)]
    root.f = tf.function(lambda x: {"y": 1.0}, input_signature=spec)
    root.g = tf.function(lambda x: {"y": 2.0}, input_signature=spec)
    tf.saved_model.save(root, str(export_dir), signatures={"serving_default": root.f, "custom_signature_key": root.g})


def _identity_sequential(dense: bool) -> keras.Model:
    """Input x of shape (1,), an optional Dense(1) of weight 1 and bias 0, then the identity named y."""
    model = keras.models.Sequential()
    model.add(keras.layers.Input(dtype="float32", shape=(1,), name="x"))
    if dense:
        model.add(keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros"))
    model.add(keras.layers.Lambda(lambda x: x, name="y"))
    return model


def keras_sequential_saved_model_save(export_dir: pathlib.Path) -> None:
    """test_sequential_keras_saved_model_save: a Keras Sequential model answering y = x."""
    tf.saved_model.save(_identity_sequential(dense=False), str(export_dir))


def distrat_keras_sequential_saved_model_save(export_dir: pathlib.Path) -> None:
    """test_distrat_sequential_keras_saved_model_save: the same with a Dense(1) layer, built under a
    MirroredStrategy over two (virtual) CPUs."""
    with tf.distribute.MirroredStrategy(devices=("/cpu:0", "/cpu:1")).scope():
        model = _identity_sequential(dense=True)
    tf.saved_model.save(model, str(export_dir))


def main(out_dir: str) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    for build in (tf_saved_model_save, tf_saved_model_save_multiple_signatures, keras_sequential_saved_model_save,
                  distrat_keras_sequential_saved_model_save):
        build(pathlib.Path(out_dir) / build.__name__ / VERSION_DIR)


if __name__ == "__main__":
    main(sys.argv[1])
