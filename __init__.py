"""cnnpipe: a TFX pipeline that turns labelled images into a CNN served by TF Serving."""

import os

# Keras 2 (tf_keras) throughout, tf.keras included: TFX's Tuner (KerasTuner 1.3) builds on tf.keras, which
# TensorFlow 2.16 resolves on first use, to Keras 3 unless this is set. kubeflow/Dockerfile sets it too.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
