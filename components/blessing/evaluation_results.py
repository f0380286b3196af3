"""The Evaluator's results read back: metrics by model and slice, and the candidate's clean accuracy.

The run summary, the robustness report and the push check read TFMA's output through here.
"""

import dataclasses
import json
import os
import re
from typing import Optional

import tensorflow_model_analysis as tfma

from cnnpipe.core import features
from cnnpipe.core.names import BASELINE, NO_ATTACK


def metric_key(class_name: str) -> str:
    """TFMA's name for a Keras metric class's results: SparseCategoricalAccuracy -> sparse_categorical_accuracy."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


# The metrics the EvalConfig computes (TFMA's Keras metric classes), and the names TFMA's results give them.
ACCURACY_METRIC, LOSS_METRIC = "SparseCategoricalAccuracy", "SparseCategoricalCrossentropy"
ACCURACY, LOSS = metric_key(ACCURACY_METRIC), metric_key(LOSS_METRIC)
CLEAN = ((features.ATTACK, NO_ATTACK),)

Slice = tuple[tuple[str, object], ...]  # ((column, value), ...) sorted by column; () is overall
Metrics = dict[tuple[str, Slice], dict[str, float]]  # (model: "" candidate or BASELINE, slice) -> name -> value
REUSED_BASELINE = "served_model"  # in an evaluation: the served model's metrics, reused from its own evaluation
SERVED_BOUNDS = "served_bounds.json"  # beside them: the change thresholds that became lower bounds


@dataclasses.dataclass(frozen=True)
class ServedBound:
    """A change threshold against the served model turned into a lower bound at `served` - `drop` (at least
    `lower`, the slice's own lower bound, when it has one)."""

    slice: Slice
    metric: str
    served: float
    drop: float
    lower: Optional[float] = None

    @property
    def bound(self) -> float:
        return max(self.served - self.drop, self.lower if self.lower is not None else -float("inf"))


def write_served_bounds(bounds: list[ServedBound], evaluation_uri: str) -> None:
    with open(os.path.join(evaluation_uri, SERVED_BOUNDS), "w", encoding="utf-8") as file:
        json.dump([dataclasses.asdict(bound) for bound in bounds], file, indent=1)


def served_bounds(evaluation_uri: str) -> dict[tuple[Slice, str], ServedBound]:
    """The served bounds of an evaluation that reused the served model's metrics, by (slice, metric); none else."""
    path = os.path.join(evaluation_uri, SERVED_BOUNDS)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as file:
        bounds = [ServedBound(**{**entry, "slice": tuple(map(tuple, entry["slice"]))}) for entry in json.load(file)]
    return {(bound.slice, bound.metric): bound for bound in bounds}


def slice_columns(slice_key) -> Slice:
    """A TFMA slice key as ((column, value), ...): bytes as str, numbers as float."""
    def value(key):
        kind = key.WhichOneof("kind")
        return getattr(key, kind).decode() if kind == "bytes_value" else float(getattr(key, kind))

    return tuple(sorted((key.column, value(key)) for key in slice_key.single_slice_keys))


def spec_slice(spec: tfma.SlicingSpec) -> Slice:
    """The slice key a SlicingSpec's feature_values name, as slice_columns reads slice keys (ε as a number)."""
    return tuple(sorted((key, float(value) if key == features.EPSILON else value)
                        for key, value in spec.feature_values.items()))




def metrics_by_slice(evaluation_uri: str) -> Metrics:
    """Every model's metrics by (model name, slice); the diffs to the baseline left out. The served model's are
    TFMA's, or those reused from its own evaluation (the REUSED_BASELINE subdirectory: evaluator.py)."""
    metrics: Metrics = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        slice_ = slice_columns(slice_metrics.slice_key)
        for entry in slice_metrics.metric_keys_and_values:
            if not entry.key.is_diff:
                model = BASELINE if entry.key.model_name == BASELINE else ""
                metrics.setdefault((model, slice_), {})[entry.key.name] = entry.value.double_value.value
    reused = os.path.join(evaluation_uri, REUSED_BASELINE)
    if os.path.isdir(reused):
        metrics.update({(BASELINE, slice_): values for (model, slice_), values in metrics_by_slice(reused).items()
                        if model == ""})
    return metrics


def clean_slice(metrics: Metrics) -> Slice:
    """The clean images' slice: attack "none" when the Evaluator saw attacks, else overall."""
    return CLEAN if ("", CLEAN) in metrics else ()


def candidate_accuracy(evaluation_uri: str) -> Optional[float]:
    """The evaluated model's accuracy on the clean eval images, as the Evaluator measured it."""
    metrics = metrics_by_slice(evaluation_uri)
    return metrics.get(("", clean_slice(metrics)), {}).get(ACCURACY)
