"""Keeps tf_keras's own functions out of AutoGraph, as TensorFlow keeps Keras's.

AutoGraph rewrites the Python control flow of each function a `tf.function` calls unless a rule exempts the
function's module. TensorFlow 2.16 exempts `keras` but not `tf_keras`, the same Keras 2 code under its own name
(later TensorFlow releases add the rule), so the first `fit` and the first SavedModel export of every process
converted hundreds of tf_keras functions: about 10 s of each Trainer run of LeNet-5. tf_keras is written for graph
mode and needs no conversion; this project's own functions (models, training steps, signatures) are still converted.
"""

from tensorflow.python.autograph.core import config, config_lib

TF_KERAS = "tf_keras"


def exempt_tf_keras() -> None:
    """Adds TensorFlow's rule for tf_keras to AutoGraph's rules, unless a rule already covers tf_keras."""
    if not any(rule.matches(TF_KERAS) for rule in config.CONVERSION_RULES):
        config.CONVERSION_RULES = (*config.CONVERSION_RULES, config_lib.DoNotConvert(TF_KERAS))
