"""AdversarialExamples: the eval examples' FGSM and PGD copies, for the Evaluator to slice on.

Placed after the Trainer. Each model is attacked white box, through the whole exported SavedModel
(Transform graph included) from raw pixels: see cnnpipe.robustness.
"""

import os
import tensorflow as tf
import tensorflow_model_analysis as tfma
from absl import logging
from google.protobuf import json_format

from tfx.components.util import examples_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils, path_utils

from cnnpipe.components.blessing import evaluation_key
from cnnpipe.components.served_model import baseline_dir
from cnnpipe.core.errors import RobustnessError
from cnnpipe.core.names import BASELINE, CANDIDATE, EVAL
from cnnpipe.robustness.adversarial_examples import write
from cnnpipe.robustness.settings import AttackSettings
from cnnpipe.robustness.pixel_model import PixelModel


def serving_model_dir(model: standard_artifacts.Model) -> str:
    """The SavedModel directory of a Trainer's Model artifact (its Format-Serving)."""
    return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


@component
def AdversarialExamples(
    examples: InputArtifact[standard_artifacts.Examples],
    model: InputArtifact[standard_artifacts.Model],
    adversarial_examples: OutputArtifact[standard_artifacts.Examples],
    attack_settings: Parameter[str],
    eval_config: Parameter[str],
    baseline_model: InputArtifact[standard_artifacts.Model] = None,
    split: Parameter[str] = EVAL,
) -> None:
    """Writes the clean copy and the attacked copies (FGSM, PGD, APGD) of the examples' `split`.

    Inputs:
      examples: ExampleGen's Examples (tf.Examples with an encoded `image` and an int64 `label`).
      model: the candidate, the Trainer's Model.
      baseline_model: optional, the served model (ServedModel's output; it may hold none); attacked with its
        own gradients, unless the metrics pushed with it have the evaluation key it would have now.
      No transform graph: each exported model carries its own and is attacked through it.
    Parameters:
      attack_settings: robustness.settings.AttackSettings as JSON (`to_json`): the attacks, ε, steps, seed, the
        worst case's ε, how many examples and the batch size. The clean copy (ε 0) is always written.
      eval_config: the Evaluator's EvalConfig as JSON, for the evaluation key (components/blessing/evaluation_key.py).
      split: the split to copy (default eval).
    Output adversarial_examples: Examples with the one split `split`, gzipped TFRecords of
      tf.Example as ExampleGen writes them. Per source example: one clean copy (attack "none",
      epsilon 0, attacked_model "none"), then per attacked model ("candidate", "baseline"), attack and
      ε one copy (PNG, at the model's input size) with the source's other features and `attack`,
      `epsilon`, `attacked_model`, `weight_candidate` and `weight_baseline` (see
      cnnpipe.robustness.adversarial_examples: the Evaluator's ModelSpecs use the weights as
      `example_weight_key` so each model is measured on its own attacks). Custom properties:
      `source_examples`, `attacked_models` and `baseline_reused`: 1 when the served model's pushed metrics have the
      evaluation key it would have now, so that it was not attacked again and the Evaluator reuses them. The
      copies' data digest (evaluation_key.DATA_KEY_FILE) is written beside the split.
    """
    settings = AttackSettings.from_json(attack_settings)
    available = artifact_utils.decode_split_names(examples.split_names)
    if split not in available:
        raise RobustnessError(f"{examples.uri} has no split '{split}'; set `split` to one of {', '.join(available)}.")
    pattern = io_utils.all_files_pattern(artifact_utils.get_split_uri([examples], split))
    data_key = evaluation_key.data_digest(sorted(tf.io.gfile.glob(pattern)), settings)
    models = {CANDIDATE: PixelModel(serving_model_dir(model))}
    baseline = baseline_dir(baseline_model) if baseline_model is not None else None
    config = json_format.Parse(eval_config, tfma.EvalConfig())
    reused = baseline is not None and evaluation_key.stored_metrics(baseline, data_key, config) is not None
    if baseline and not reused:
        models[BASELINE] = PixelModel(baseline)
    if reused:
        logging.info("The served model's metrics on these copies were pushed with it: it is not attacked again.")
    adversarial_examples.split_names = artifact_utils.encode_split_names([split])
    sources = write(pattern, artifact_utils.get_split_uri([adversarial_examples], split), models, settings)
    examples_utils.set_payload_format(adversarial_examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    adversarial_examples.set_int_custom_property("source_examples", sources)
    adversarial_examples.set_string_custom_property("attacked_models", ",".join(models))
    io_utils.write_string_file(os.path.join(adversarial_examples.uri, evaluation_key.DATA_KEY_FILE), data_key)
    adversarial_examples.set_int_custom_property("baseline_reused", int(reused))
