"""Evaluator: TFX's, comparing with the served model only when there is one.

ServedModel always hands the Evaluator a baseline Model artifact; when nothing was served yet it holds no model,
and this executor drops it, so the run is evaluated as a first one is: no baseline, and TFX's rubber stamp (the
change thresholds are not applied).
"""

from tfx import types
from tfx.components import Evaluator as TfxEvaluator
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types.standard_component_specs import BASELINE_MODEL_KEY

from cnnpipe.components.served_model import baseline_dir


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor, without a baseline that holds no model."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict) -> None:
        baselines = input_dict.get(BASELINE_MODEL_KEY) or []
        if baselines and baseline_dir(baselines[0]) is None:
            input_dict = {**input_dict, BASELINE_MODEL_KEY: []}
        super().Do(input_dict, output_dict, exec_properties)


class Evaluator(TfxEvaluator):
    """TFX's Evaluator component with the executor above."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
