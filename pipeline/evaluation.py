"""The Evaluator's EvalConfig: accuracy and loss, overall and per class; the blessing thresholds."""

from typing import Optional

import tensorflow_model_analysis as tfma

from cnnpipe.models import features

ACCURACY = "SparseCategoricalAccuracy"
LOSS = "SparseCategoricalCrossentropy"
OVERALL = tfma.SlicingSpec()
PER_CLASS = tfma.SlicingSpec(feature_keys=[features.CLASS_NAME])


def eval_config(min_accuracy: float, max_accuracy_drop: Optional[float]) -> tfma.EvalConfig:
    """Blesses a model whose overall accuracy is ≥ `min_accuracy` and at most `max_accuracy_drop`
    below the last blessed model's (None: no comparison, for an Evaluator without a baseline).

    The thresholds are per-slice thresholds on the overall slice only: a threshold in a
    MetricsSpec would apply to every class slice too.
    """
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}))
    if max_accuracy_drop is not None:
        accuracy_threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max_accuracy_drop - 1e-10},
        ))
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=features.LABEL,
                prediction_key="probabilities",
            )
        ],
        slicing_specs=[OVERALL, PER_CLASS],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(
                        class_name=ACCURACY,
                        per_slice_thresholds=[
                            tfma.PerSliceMetricThreshold(slicing_specs=[OVERALL], threshold=accuracy_threshold)
                        ],
                    ),
                    tfma.MetricConfig(class_name=LOSS),
                    tfma.MetricConfig(class_name="ExampleCount"),
                ]
            )
        ],
    )
