"""Evaluator: TFX's, comparing with the served model only when there is one, and heeding the search thresholds.

ServedModel always hands the Evaluator a baseline Model artifact; when nothing was served yet it holds no model,
and this executor drops it, so the run is evaluated as a first one is: no baseline, and TFX's rubber stamp (the
change thresholds are not applied). A candidate that EmbeddingIndex measured below its search thresholds
(`retrieval.json`'s `failures`) is not blessed, whatever TFMA found.
"""

import os

from absl import logging

from tfx import types
from tfx.components import Evaluator as TfxEvaluator
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.components.evaluator import constants
from tfx.dsl.io import fileio
from tfx.types.standard_component_specs import BASELINE_MODEL_KEY, BLESSING_KEY, MODEL_KEY
from tfx.utils import io_utils

from cnnpipe.components.embedding_index import retrieval_failures
from cnnpipe.components.served_model import baseline_dir


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor, without a baseline that holds no model, and with the search thresholds."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict) -> None:
        baselines = input_dict.get(BASELINE_MODEL_KEY) or []
        if baselines and baseline_dir(baselines[0]) is None:
            input_dict = {**input_dict, BASELINE_MODEL_KEY: []}
        super().Do(input_dict, output_dict, exec_properties)
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
