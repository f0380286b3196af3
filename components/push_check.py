"""PushCheck: before a push, the blessed candidate, loaded in a separate process, answers every
signature on the real eval examples as the Evaluator measured it. It is what TFX's InfraValidator
is for, and like it emits an `InfraBlessing` that the Pusher requires.

`check(model_dir, eval_files, evaluator_accuracy)` starts `python -m cnnpipe.components.signature_check`,
which loads the SavedModel afresh (as a server would), runs `serving_default` over every eval
example and compares its accuracy with the Evaluator's, and sends a sample through
`predict_image`, `predict_pixels`, `classify` and `embed`, comparing them with `serving_default`. A model that
fails to load or disagrees raises PushCheckError; the component records it as not blessed, with
the reason, and the Pusher does not push it.
"""

import json
import logging
import os
import subprocess
import sys
from typing import Optional

from tfx.components.util import model_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.components.blessing.evaluation_results import candidate_accuracy
from cnnpipe.core.names import EVAL

TIMEOUT_SECONDS = 1800
BLESSED, REASON = "blessed", "reason"  # the InfraBlessing's custom properties (TFX's Pusher reads `blessed`)


class PushCheckError(CnnpipeError):
    """The candidate model fails to load in a fresh process or answers differently from the Evaluator."""


def check(model_dir: str, eval_files: str, evaluator_accuracy: Optional[float], warmup_dir: str = "") -> str:
    """Checks the candidate at `model_dir` in a separate process; returns a one-line report. A model that passes gets
    its warmup requests written under `warmup_dir`, if given (serving.warmup.warmup_file).

    `eval_files` is a glob of the eval split's GZIP TFRecords of tf.Examples (ExampleGen's output).
    """
    process = subprocess.run(
        [sys.executable, "-m", "cnnpipe.components.signature_check", model_dir, eval_files, warmup_dir],
        capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False,
    )
    if process.returncode != 0:
        last_lines = "\n".join(process.stderr.strip().splitlines()[-5:])
        raise PushCheckError(
            f"not pushed: the model at {model_dir} fails to load or to answer in a fresh process, so a server "
            f"could not serve it:\n{last_lines}\nRetrain it (a cut or damaged export), or check the disk it was "
            "written to."
        )
    result = json.loads(process.stdout.strip().splitlines()[-1])
    if result["problems"]:
        raise PushCheckError(f"not pushed: the model at {model_dir} disagrees with itself across signatures on "
                             f"real eval examples: {'; '.join(result['problems'])}.")
    count, accuracy = result["count"], result["accuracy"]
    if evaluator_accuracy is not None and abs(accuracy - evaluator_accuracy) > 1 / count + 1e-9:
        raise PushCheckError(
            f"not pushed: loaded in a fresh process, the model at {model_dir} classifies {accuracy:.4%} of the "
            f"{count} eval examples ({eval_files}) correctly, but the Evaluator measured {evaluator_accuracy:.4%}. "
            "The exported model is not the one evaluated (or not deterministic); run the pipeline again."
        )
    report = f"push check: {', '.join(result['signatures'])} answered on {count} eval examples, accuracy {accuracy:.4%}"
    logging.info("%s (%s)", report, model_dir)
    return report


@component
def PushCheck(
    model: InputArtifact[standard_artifacts.Model],
    examples: InputArtifact[standard_artifacts.Examples],
    infra_blessing: OutputArtifact[standard_artifacts.InfraBlessing],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing] = None,
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation] = None,
) -> None:
    """Blesses the candidate for serving when `check` passes, with the warmup requests the check wrote in the
    blessing (serving.warmup.warmup_file(infra_blessing.uri)); a model the Evaluator did not bless is not checked.
    Without an evaluation (`cnnpipe index`: the served weights with a new catalog) the accuracy is not compared,
    and the model answers every split's examples (a small catalog's hash split may leave eval empty)."""
    if model_blessing is not None and not model_utils.is_model_blessed(model_blessing):
        infra_blessing.set_int_custom_property(BLESSED, 0)
        infra_blessing.set_string_custom_property(REASON, "not checked: the Evaluator did not bless the model")
        return
    splits = EVAL if evaluation is not None else "*"  # ExampleGen writes a split's files under Split-<name>/
    eval_files = os.path.join(examples.uri, f"Split-{splits}", "*")
    try:
        report = check(path_utils.serving_model_path(model.uri), eval_files,
                       candidate_accuracy(evaluation.uri) if evaluation is not None else None, infra_blessing.uri)
    except PushCheckError as error:
        infra_blessing.set_int_custom_property(BLESSED, 0)
        infra_blessing.set_string_custom_property(REASON, str(error))
        return
    infra_blessing.set_int_custom_property(BLESSED, 1)
    infra_blessing.set_string_custom_property(REASON, report)
