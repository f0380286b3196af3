"""Evaluator: TFX's, comparing with the served model only when there is one, reusing the served model's own metrics
when they measured the same thing, and heeding the search thresholds.

ServedModel always hands the Evaluator a baseline Model artifact; when nothing was served yet it holds no model,
and this executor drops it, so the run is evaluated as a first one is: no baseline, and TFX's rubber stamp (the
change thresholds are not applied). When the evaluation key AdversarialExamples wrote beside its copies is the key
of the metrics pushed with the served model (the same eval images, attacks and settings: it then attacked the
candidate alone), TFMA evaluates the candidate alone: each change threshold becomes a lower bound at the served
model's stored value less the allowed drop, and the stored metrics and those bounds are kept in the
evaluation (evaluation_results
.REUSED_BASELINE, SERVED_BOUNDS) for the summary and the report. A candidate that EmbeddingIndex measured below its
search thresholds (`retrieval.json`'s `failures`) is not blessed, whatever TFMA found. The evaluation gets the key
of what it measured, which the Pusher pushes with the metrics.
"""

import os

import tensorflow_model_analysis as tfma
from absl import logging
from google.protobuf import json_format

from tfx import types
from tfx.components import Evaluator as TfxEvaluator
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.components.evaluator import constants
from tfx.dsl.io import fileio
from tfx.types.standard_component_specs import (BASELINE_MODEL_KEY, BLESSING_KEY, EVAL_CONFIG_KEY, EVALUATION_KEY,
                                                 EXAMPLES_KEY, MODEL_KEY)
from tfx.utils import io_utils

from cnnpipe.components.embedding_index import retrieval_failures
from cnnpipe.components.evaluation_results import (REUSED_BASELINE, Metrics, ServedBound, metric_key,
                                                   metrics_by_slice, spec_slice, write_served_bounds)
from cnnpipe.components.served_model import EVALUATION_KEY_FILE, baseline_dir, evaluation_key_in, stored_evaluation


def with_served_values(config: tfma.EvalConfig, served: Metrics) -> tuple[tfma.EvalConfig, list[ServedBound]]:
    """`config` for the candidate alone: the served model's ModelSpec dropped, and each change threshold turned into
    a lower bound at the served model's value in `served` (its own evaluation) less the allowed drop; and those
    bounds."""
    alone = tfma.EvalConfig()
    alone.CopyFrom(config)
    del alone.model_specs[:]
    alone.model_specs.extend(spec for spec in config.model_specs if not spec.is_baseline)
    bounds = []
    for metrics_spec in alone.metrics_specs:
        for metric in metrics_spec.metrics:
            for per_slice in metric.per_slice_thresholds:
                threshold = per_slice.threshold
                if not threshold.HasField("change_threshold"):
                    continue
                (slicing_spec,) = per_slice.slicing_specs
                slice_, name = spec_slice(slicing_spec), metric_key(metric.class_name)
                lower = threshold.value_threshold.lower_bound.value \
                    if threshold.value_threshold.HasField("lower_bound") else None
                # TFMA's absolute change allowed is -drop (a tiny margin below it, pipeline/evaluation.py)
                bound = ServedBound(slice_, name, served[("", slice_)][name],
                                    -threshold.change_threshold.absolute.value, lower)
                threshold.value_threshold.lower_bound.value = bound.bound
                threshold.ClearField("change_threshold")
                bounds.append(bound)
    return alone, bounds


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor, without a baseline that holds no model or whose metrics it reuses, and with the
    search thresholds."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict) -> None:
        key = evaluation_key_in(input_dict[EXAMPLES_KEY][0].uri)  # AdversarialExamples' (none without attacks)
        baselines = input_dict.get(BASELINE_MODEL_KEY) or []
        served = baseline_dir(baselines[0]) if baselines else None
        stored, stored_key = stored_evaluation(served) if served else (None, "")
        stored = stored if key and stored_key == key else None  # as AdversarialExamples decided: not attacked
        if stored:
            config = json_format.Parse(exec_properties[EVAL_CONFIG_KEY], tfma.EvalConfig())
            config, bounds = with_served_values(config, metrics_by_slice(stored))
            exec_properties = {**exec_properties, EVAL_CONFIG_KEY: json_format.MessageToJson(config)}
            logging.info("The served model's metrics are reused from its own evaluation (%s).", stored)
        if served is None or stored:
            input_dict = {**input_dict, BASELINE_MODEL_KEY: []}
        super().Do(input_dict, output_dict, exec_properties)
        evaluation = output_dict[EVALUATION_KEY][0]
        if stored:
            io_utils.copy_dir(stored, os.path.join(evaluation.uri, REUSED_BASELINE))
            write_served_bounds(bounds, evaluation.uri)
        if key:
            io_utils.write_string_file(os.path.join(evaluation.uri, EVALUATION_KEY_FILE), key)
        failed = retrieval_failures(input_dict[MODEL_KEY][0].uri)
        blessing = output_dict[BLESSING_KEY][0]
        if failed and blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY):
            fileio.remove(os.path.join(blessing.uri, constants.BLESSED_FILE_NAME))
            io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), "")
            blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.NOT_BLESSED_VALUE)
            logging.info("Not blessed: %s", " ".join(failed))


class Evaluator(TfxEvaluator):
    """TFX's Evaluator component with the executor above."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
