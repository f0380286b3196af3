"""AdversarialExamples: the eval examples' FGSM and PGD copies, for the Evaluator to slice on.

Placed after the Trainer. Each model is attacked white box, through the whole exported SavedModel
(Transform graph included) from raw pixels: see cnnpipe.robustness.
"""

import os
from typing import List

import tensorflow as tf
from absl import logging

from tfx.components.util import examples_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils, path_utils

from cnnpipe.components.parameters import json_parameter
from cnnpipe.components.served_model import EVALUATION_KEY_FILE, baseline_dir, stored_evaluation
from cnnpipe.core.errors import RobustnessError
from cnnpipe.core.names import BASELINE, CANDIDATE, EVAL
from cnnpipe.robustness.adversarial_examples import evaluation_key, write
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
    baseline_model: InputArtifact[standard_artifacts.Model] = None,
    split: Parameter[str] = EVAL,
    attacks: Parameter[List[str]] = None,
    epsilons: Parameter[List[float]] = None,
    pgd_steps: Parameter[int] = AttackSettings.pgd_steps,
    pgd_step_fraction: Parameter[float] = AttackSettings.pgd_step_fraction,
    worst_case_epsilon: Parameter[float] = None,
    max_examples: Parameter[int] = AttackSettings.max_examples,
    batch_size: Parameter[int] = AttackSettings.batch_size,
    seed: Parameter[int] = AttackSettings.seed,
) -> None:
    """Writes the clean copy and the attacked copies (FGSM, PGD, APGD) of the examples' `split`.

    Inputs:
      examples: ExampleGen's Examples (tf.Examples with an encoded `image` and an int64 `label`).
      model: the candidate, the Trainer's Model.
      baseline_model: optional, the served model (ServedModel's output; it may hold none); attacked with its
        own gradients.
      No transform graph: each exported model carries its own and is attacked through it.
    Parameters:
      split: the split to attack and write (default "eval").
      attacks: of "fgsm", "pgd", "apgd-ce" and "apgd-dlr" (default fgsm and pgd).
      epsilons: L-inf bounds on the [0, 1] pixel scale, each in (0, 1] (default 0.05, 0.1, 0.2, 0.3);
        the clean copy (ε 0) is always written. Each is applied as round(255 ε) 8-bit levels.
      pgd_steps: PGD's iterations (default 10); pgd_step_fraction: its step size as a fraction of ε
        (default 0.25); PGD starts from a uniform random point of the ε-ball, drawn from `seed`.
      worst_case_epsilon: with more than one attack, the ε at which to write their worst case too (attack
        "worst-case": per image the first attacked image that fools the model, else the last); default none.
      max_examples: attack the first N examples only (default 0: all); batch_size: images per batch.
    Output adversarial_examples: Examples with the one split `split`, gzipped TFRecords of
      tf.Example as ExampleGen writes them. Per source example: one clean copy (attack "none",
      epsilon 0, attacked_model "none"), then per attacked model ("candidate", "baseline"), attack and
      ε one copy (PNG, at the model's input size) with the source's other features and `attack`,
      `epsilon`, `attacked_model`, `weight_candidate` and `weight_baseline` (see
      cnnpipe.robustness.adversarial_examples: the Evaluator's ModelSpecs use the weights as
      `example_weight_key` so each model is measured on its own attacks). Custom properties:
      `source_examples`, `attacked_models`, `evaluation_key` (what the copies measure:
      robustness.adversarial_examples.evaluation_key; also the file served_model.EVALUATION_KEY_FILE beside the
      split) and `baseline_reused`: 1 when the served model carries metrics of the same key (pushed with it, from
      the run it was the candidate of), so that it was not attacked again and the Evaluator reuses those metrics.
    """
    settings = AttackSettings(
        attacks=tuple(json_parameter(attacks) or AttackSettings.attacks),
        epsilons=tuple(json_parameter(epsilons) or AttackSettings.epsilons),
        pgd_steps=pgd_steps,
        pgd_step_fraction=pgd_step_fraction,
        worst_case_epsilon=worst_case_epsilon,
        max_examples=max_examples,
        batch_size=batch_size,
        seed=seed,
    )
    available = artifact_utils.decode_split_names(examples.split_names)
    if split not in available:
        raise RobustnessError(f"{examples.uri} has no split '{split}'; set `split` to one of {', '.join(available)}.")
    pattern = io_utils.all_files_pattern(artifact_utils.get_split_uri([examples], split))
    key = evaluation_key(sorted(tf.io.gfile.glob(pattern)), settings)
    models = {CANDIDATE: PixelModel(serving_model_dir(model))}
    baseline = baseline_dir(baseline_model) if baseline_model is not None else None
    reused = baseline is not None and stored_evaluation(baseline)[1] == key
    if baseline and not reused:
        models[BASELINE] = PixelModel(baseline)
    if reused:
        logging.info("The served model's metrics on these copies were pushed with it: it is not attacked again.")
    adversarial_examples.split_names = artifact_utils.encode_split_names([split])
    sources = write(pattern, artifact_utils.get_split_uri([adversarial_examples], split), models, settings)
    examples_utils.set_payload_format(adversarial_examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    adversarial_examples.set_int_custom_property("source_examples", sources)
    adversarial_examples.set_string_custom_property("attacked_models", ",".join(models))
    io_utils.write_string_file(os.path.join(adversarial_examples.uri, EVALUATION_KEY_FILE), key)
    adversarial_examples.set_string_custom_property("evaluation_key", key)
    adversarial_examples.set_int_custom_property("baseline_reused", int(reused))
