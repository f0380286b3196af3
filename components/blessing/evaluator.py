"""BlessingEvaluator: TFX's Evaluator, deciding the blessing from TFMA's thresholds, the evaluation key and the
retrieval gate.

- **No served model**: ServedModel always hands over a baseline Model artifact; when nothing was served yet it holds
  no model, and it is dropped, so the run is evaluated as a first one is (no baseline, and TFX's rubber stamp: the
  change thresholds are not applied).
- **The evaluation key** (evaluation_key.py): when the metrics pushed with the served model have the key it would
  have now, TFMA evaluates the candidate alone: each change threshold becomes a lower bound at the served model's
  stored value less the allowed drop, and the stored metrics and those bounds are kept in the evaluation
  (evaluation_results.REUSED_BASELINE, SERVED_BOUNDS) for the summary and the report. The evaluation gets its
  candidate's key, which the Pusher pushes with the metrics.
- **The retrieval gate**: a candidate that EmbeddingIndex measured below its search thresholds (its `retrieval.json`
  lists `failures`) is not blessed, whatever TFMA found.
"""

import json
import os
from typing import Any, Optional, Sequence

import tensorflow_model_analysis as tfma
from absl import logging
from google.protobuf import json_format

from tfx import types
from tfx.components.evaluator import constants, executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.types.standard_component_specs import (BASELINE_MODEL_KEY, BLESSING_KEY, EVAL_CONFIG_KEY, EVALUATION_KEY,
                                                 EXAMPLES_KEY, MODEL_KEY)
from tfx.utils import io_utils, json_utils, path_utils

from cnnpipe.components.blessing import evaluation_key
from cnnpipe.components.blessing.eval_config import EVALUATED_THRESHOLDS, eval_config
from cnnpipe.components.blessing.evaluation_results import (REUSED_BASELINE, Metrics, ServedBound, metric_key,
                                                            metrics_by_slice, spec_slice, write_served_bounds)
from cnnpipe.components.blessing.thresholds import Thresholds
from cnnpipe.components.embedding_index import retrieval_failures
from cnnpipe.components.parameters import json_parameter
from cnnpipe.components.served_model import baseline_dir


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
                # TFMA's absolute change allowed is -drop (a tiny margin below it, eval_config.py)
                bound = ServedBound(slice_, name, served[("", slice_)][name],
                                    -threshold.change_threshold.absolute.value, lower)
                threshold.value_threshold.lower_bound.value = bound.bound
                threshold.ClearField("change_threshold")
                bounds.append(bound)
    return alone, bounds


RETRIEVAL_GATE_KEY = "retrieval_gate"  # the indexed model whose retrieval.json failures un-bless the candidate
ATTACKS_KEY = "attacks"


class BlessingEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    """TFX's Evaluator spec, plus the retrieval gate, and the thresholds and attacks the EvalConfig is built from."""

    INPUTS = {
        **standard_component_specs.EvaluatorSpec.INPUTS,
        RETRIEVAL_GATE_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        **{name: ExecutionParameter(type=float, optional=True) for name in EVALUATED_THRESHOLDS},
        ATTACKS_KEY: ExecutionParameter(type=str),
    }


def evaluation_config(exec_properties: dict) -> tfma.EvalConfig:
    """The EvalConfig of the thresholds and attacks in `exec_properties` (a threshold left out gates nothing)."""
    thresholds = Thresholds(**{name: exec_properties.get(name) for name in EVALUATED_THRESHOLDS})
    return eval_config(thresholds, json_parameter(exec_properties[ATTACKS_KEY]))


class BlessingExecutor(evaluator_executor.Executor):
    """TFX's Evaluator executor, without a baseline that holds no model or whose metrics it reuses, and with the
    retrieval gate."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict) -> None:
        data_key = evaluation_key.read_data_key(input_dict[EXAMPLES_KEY][0].uri)  # none without attacks
        config = evaluation_config(exec_properties)
        exec_properties = {**exec_properties, EVAL_CONFIG_KEY: json_format.MessageToJson(config)}
        baselines = input_dict.get(BASELINE_MODEL_KEY) or []
        served = baseline_dir(baselines[0]) if baselines else None
        stored = evaluation_key.stored_metrics(served, data_key, config) if served else None
        if stored:
            alone, bounds = with_served_values(config, metrics_by_slice(stored))
            exec_properties = {**exec_properties, EVAL_CONFIG_KEY: json_format.MessageToJson(alone)}
            logging.info("The served model's metrics are reused from its own evaluation (%s).", stored)
        if served is None or stored:
            input_dict = {**input_dict, BASELINE_MODEL_KEY: []}
        super().Do(input_dict, output_dict, exec_properties)
        evaluation = output_dict[EVALUATION_KEY][0]
        if stored:
            io_utils.copy_dir(stored, os.path.join(evaluation.uri, REUSED_BASELINE))
            write_served_bounds(bounds, evaluation.uri)
        if data_key:
            candidate = path_utils.serving_model_path(input_dict[MODEL_KEY][0].uri)
            evaluation_key.write(evaluation.uri, evaluation_key.key(data_key, config, candidate))
        gates = input_dict.get(RETRIEVAL_GATE_KEY) or []
        failed = retrieval_failures(gates[0].uri) if gates else []
        blessing = output_dict[BLESSING_KEY][0]
        if failed and blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY):
            fileio.remove(os.path.join(blessing.uri, constants.BLESSED_FILE_NAME))
            io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), "")
            blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.NOT_BLESSED_VALUE)
            logging.info("Not blessed: %s", " ".join(failed))


class BlessingEvaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator with the executor above: the candidate `model` evaluated on `examples` under the EvalConfig of
    `thresholds` (EVALUATED_THRESHOLDS by name; each may be a RuntimeParameter) and `attacks`, against `baseline_model`
    (ServedModel's, which may hold none), and gated by `retrieval_gate` (EmbeddingIndex's indexed model, when there is
    one). Outputs `evaluation` and `blessing`, as TFX's Evaluator."""

    SPEC_CLASS = BlessingEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(BlessingExecutor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, thresholds: dict[str, Any],
                 attacks: Sequence[str] = (), baseline_model: Optional[types.BaseChannel] = None,
                 retrieval_gate: Optional[types.BaseChannel] = None):
        super().__init__(spec=BlessingEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, retrieval_gate=retrieval_gate,
            **thresholds, attacks=json.dumps(list(attacks)), example_splits=json_utils.dumps(None),
            fairness_indicator_thresholds=json_utils.dumps(None),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
