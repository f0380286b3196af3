"""The Evaluator's EvalConfig: accuracy on the clean and the attacked eval images; the blessing thresholds.

With attacks, the Evaluator reads AdversarialExamples' output: every eval image clean (attack
"none") and, per model, attack and ε, attacked with that model's own gradients. Each model counts
the clean copies and its own attacks only (example weights), in the slices: clean, clean per
class, and attack × ε. Without attacks it reads ExampleGen's eval split: overall and per class.
Every threshold is a per-slice threshold on its own slice, so a bound on clean accuracy never
applies to an attacked slice, nor to a class.
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow_model_analysis as tfma

from cnnpipe.components.blessing.evaluation_results import ACCURACY_METRIC, LOSS_METRIC
from cnnpipe.components.blessing.thresholds import Thresholds
from cnnpipe.core import features, names
from cnnpipe.core.names import BASELINE, CANDIDATE, NO_ATTACK
from cnnpipe.robustness.adversarial_examples import WEIGHT_KEYS
from cnnpipe.robustness.settings import with_worst_case

OVERALL = tfma.SlicingSpec()
PER_CLASS = tfma.SlicingSpec(feature_keys=[features.CLASS_NAME])
CLEAN = tfma.SlicingSpec(feature_values={features.ATTACK: NO_ATTACK})
CLEAN_PER_CLASS = tfma.SlicingSpec(feature_keys=[features.CLASS_NAME], feature_values={features.ATTACK: NO_ATTACK})
ATTACK_BY_EPSILON = tfma.SlicingSpec(feature_keys=[features.ATTACK, features.EPSILON])


def epsilon_value(epsilon: float) -> str:
    """ε as a SlicingSpec must name it: the float32 a tf.Example holds, read as a double ("0.10000000149011612")."""
    return repr(float(np.float32(epsilon)))


def attack_slice(attack: str, epsilon: float) -> tfma.SlicingSpec:
    return tfma.SlicingSpec(feature_values={features.ATTACK: attack, features.EPSILON: epsilon_value(epsilon)})


def _threshold(lower_bound: float, max_drop: Optional[float]) -> tfma.MetricThreshold:
    threshold = tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(lower_bound={"value": lower_bound}))
    if max_drop is not None:
        threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -max_drop - 1e-10}))
    return threshold


# The Thresholds fields the EvalConfig is built from
EVALUATED_THRESHOLDS = ("min_accuracy", "max_accuracy_drop", "robust_epsilon", "min_fgsm_accuracy", "min_pgd_accuracy",
                        "min_robust_accuracy", "max_robust_accuracy_drop")
ATTACK_BOUNDS = {names.FGSM: "min_fgsm_accuracy", names.PGD: "min_pgd_accuracy",
                 names.WORST_CASE: "min_robust_accuracy"}  # the Thresholds field that bounds each attacked slice


def gating(attacks: Sequence[str]) -> tuple[str, ...]:
    """The EVALUATED_THRESHOLDS that gate a slice when the eval images are attacked by `attacks` at the gated ε
    (none: not attacked there): what a run may change."""
    attacked = with_worst_case(attacks)
    bounds = [ATTACK_BOUNDS[attack] for attack in attacked if attack in ATTACK_BOUNDS]
    return ("min_accuracy", "max_accuracy_drop", *bounds, *(["max_robust_accuracy_drop"] if attacked else []))


def _gates(thresholds: Thresholds, attacks: Sequence[str]) -> list[tfma.PerSliceMetricThreshold]:
    """The clean bound on the clean slice; each attack's bound on its slice at `robust_epsilon`, and with more than one
    attack their worst case's (`--min-robust-accuracy`)."""
    gates = [(CLEAN if attacks else OVERALL, thresholds.min_accuracy, thresholds.max_accuracy_drop)]
    bounds = {attack: getattr(thresholds, name) for attack, name in ATTACK_BOUNDS.items()}
    for attack in with_worst_case(attacks):
        if bounds.get(attack, 0.0) > 0 or thresholds.max_robust_accuracy_drop is not None:
            gates.append((attack_slice(attack, thresholds.robust_epsilon), bounds.get(attack, 0.0),
                          thresholds.max_robust_accuracy_drop))
    return [tfma.PerSliceMetricThreshold(slicing_specs=[spec], threshold=_threshold(lower, drop))
            for spec, lower, drop in gates]


def _model_specs(attacks: Sequence[str]) -> list[tfma.ModelSpec]:
    """One spec, copied for the baseline by TFX; with attacks, one per model with its example weight."""
    spec = tfma.ModelSpec(signature_name=names.SERVING_DEFAULT, label_key=features.LABEL,
                          prediction_key=names.PROBABILITIES)
    if not attacks:
        return [spec]
    return [tfma.ModelSpec(name=name, is_baseline=name == BASELINE, example_weight_key=WEIGHT_KEYS[name],
                           signature_name=spec.signature_name, label_key=spec.label_key,
                           prediction_key=spec.prediction_key) for name in (CANDIDATE, BASELINE)]


def eval_config(thresholds: Thresholds, attacks: Sequence[str] = ()) -> tfma.EvalConfig:
    """The Evaluator's config for examples attacked by `attacks` (none: the plain eval split)."""
    return tfma.EvalConfig(
        model_specs=_model_specs(attacks),
        slicing_specs=[CLEAN, CLEAN_PER_CLASS, ATTACK_BY_EPSILON] if attacks else [OVERALL, PER_CLASS],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name=ACCURACY_METRIC, per_slice_thresholds=_gates(thresholds, attacks)),
                    tfma.MetricConfig(class_name=LOSS_METRIC),
                    tfma.MetricConfig(class_name="ExampleCount"),
                ]
            )
        ],
    )
