"""ServedModel: the model being served, the baseline a candidate must beat, read where the Pusher writes.

The served version (the `stable` one when the serving directory's models.config labels the model's versions,
serving/rollout.py; else the newest integer version that holds a complete SavedModel, as a server serves it) is
copied into this step's Model artifact (`Format-Serving`), so the Evaluator compares with it, the
Trainer warm-starts from it and the attacks reach it with no resolver: on the local runner, on open-source
Kubeflow Pipelines and on Vertex AI alike. With nothing served yet, the artifact holds no model
(`served_version` 0) and the others go on without a baseline. The version's push record (the pipeline run and
the Model artifact it was trained as, `components/pusher.py` writes it) becomes the artifact's custom
properties: the lineage to that training run, in ML Metadata.

What is served changes between runs, so the step is cached only by `served_state`: the served version's identity,
read when the pipeline is built (`served_state()`; the local runner builds it at each run's start). A run killed and
started again with the same version served takes the baseline, and every step after it that finished, from the
cache. On Kubeflow the spec is compiled before what is served is known: there the step has no state and is never
cached (`dag.UNCACHED`).
"""

import hashlib
import os
from typing import Optional

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.components.statistics_gen.stats_artifact_utils import BINARY_PB_BASENAME
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils, path_utils

from cnnpipe.core.names import TRAIN, TRAINING_STATISTICS
from cnnpipe.models.warm_start import holds_saved_model
from cnnpipe.serving import model_config, rollout

SERVED_VERSION, SERVED_FROM = "served_version", "served_from"  # the artifact's custom properties
NOTHING_SERVED = "none"


def newest_served(base_path: str) -> Optional[str]:
    """The newest version under `base_path` with its saved_model.pb (written last on object stores), or None."""
    newest_first = (os.path.join(base_path, str(version)) for version in reversed(model_config.versions(base_path)))
    return next((path for path in newest_first if holds_saved_model(path)), None)


def served_version(base_path: str) -> Optional[str]:
    """The version under `base_path` clients are served: `stable` under labels, else the newest complete one."""
    stable = rollout.stable_version(model_config.entry(*os.path.split(base_path.rstrip("/"))))
    if stable is not None and holds_saved_model(os.path.join(base_path, str(stable))):
        return os.path.join(base_path, str(stable))
    return newest_served(base_path)


def served_state(base_path: str) -> str:
    """The identity of what is served under `base_path`: the served version's path and a digest of its SavedModel
    fingerprint (of saved_model.pb when the version has none), or NOTHING_SERVED."""
    served = served_version(base_path)
    if served is None:
        return NOTHING_SERVED
    fingerprint = os.path.join(served, "fingerprint.pb")
    with tf.io.gfile.GFile(fingerprint if tf.io.gfile.exists(fingerprint) else os.path.join(served, "saved_model.pb"),
                           "rb") as file:
        return f"{served}@{hashlib.sha256(file.read()).hexdigest()[:16]}"


def baseline_dir(model: types.Artifact) -> Optional[str]:
    """The SavedModel directory of ServedModel's Model artifact, or None when nothing was served."""
    path = path_utils.serving_model_path(model.uri)
    return path if holds_saved_model(path) else None


@component
def ServedModel(serving_base: Parameter[str], baseline: OutputArtifact[standard_artifacts.Model],
                served_statistics: OutputArtifact[standard_artifacts.ExampleStatistics],
                served_state: Parameter[str] = "") -> None:
    """Copies the served version under `serving_base` into `baseline`, with where it came from, and the
    statistics of the data it was trained on (pushed with it) into `served_statistics`' train split
    (none: no splits). `served_state` (`served_state()` when the pipeline was built) is the cache key only."""
    served = served_version(serving_base)
    served_statistics.split_names = artifact_utils.encode_split_names([])
    if served is None:
        baseline.set_int_custom_property(SERVED_VERSION, 0)
        logging.info("No model is served under %s yet: there is no baseline to beat.", serving_base)
        return
    if tf.io.gfile.exists(os.path.join(served, TRAINING_STATISTICS)):
        served_statistics.split_names = artifact_utils.encode_split_names([TRAIN])
        split_dir = artifact_utils.get_split_uri([served_statistics], TRAIN)
        tf.io.gfile.makedirs(split_dir)
        tf.io.gfile.copy(os.path.join(served, TRAINING_STATISTICS), os.path.join(split_dir, BINARY_PB_BASENAME))
    io_utils.copy_dir(served, path_utils.serving_model_path(baseline.uri))
    baseline.set_int_custom_property(SERVED_VERSION, int(os.path.basename(served)))
    baseline.set_string_custom_property(SERVED_FROM, served)
    for key, value in rollout.push_record(served).items():
        baseline.set_string_custom_property(f"pushed_{key}", str(value))
    logging.info("The baseline is the served version %s.", served)
