"""AtomicPusher: TFX's Pusher, but no server loads a new version before it is complete.

It pushes a model that both the Evaluator (`model_blessing`) and the push check (`infra_blessing`,
components/push_check.py) blessed. On a local filesystem the model is copied to a hidden staging
directory beside the versions and renamed to its integer version when complete (TF Serving ignores
names that are not integers), so a server polling `<base>/<model>/` never sees a half-written version.
On an object store (gs://, s3://), where a rename is a copy object by object, the version is written in
place with its saved_model.pb last: a server may see the directory early, but cannot load it before it
is complete. Each version holds a push record (the run and Model artifact it came from) and, given the run's
`statistics`, the statistics of the training data it learned from, both of which ServedModel reads back (the
next run's drift check compares its data with those statistics); given the Evaluator's `evaluation`, the
candidate's metrics on the attacked eval images with the key of what they measured (the next run reuses them as
the served model's when its key is the same: components/blessing/evaluator.py), and the warmup requests the push
check wrote. Versions only increase. After a push the Pusher updates `<serving_dir>/models.config` (merged: labels
and policies kept; under labels the new version is the canary, serving/rollout.py) and keeps only the newest
`keep_versions` versions (all by default) and the labelled ones.
"""

import contextlib
import json
import os
import re
import socket
import time
import uuid
from typing import Collection, Iterator, Optional

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import filesystem
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, proto_utils

from cnnpipe.components.blessing import evaluation_key
from cnnpipe.components.served_model import newest_served
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import PUSH_RECORD, PUSHED_EVALUATION, TRAIN, TRAINING_STATISTICS
from cnnpipe.serving import rollout, warmup
from cnnpipe.serving.model_config import versions as existing_versions

SAVED_MODEL_PB = "saved_model.pb"
STAGING_PREFIX = ".staging-"
DELETING_PREFIX = ".deleting-"
KEEP_VERSIONS_KEY = "keep_versions"
STATISTICS_KEY = "statistics"
EVALUATION_KEY = "evaluation"
_STAGING = re.compile(re.escape(STAGING_PREFIX) + r"(?P<pid>\d+)@(?P<host>.+)-[0-9a-f]{32}$")


class PushError(CnnpipeError):
    """A version cannot be written to the serving directory; the versions already there are untouched."""


def next_version(base_dir: str) -> int:
    """The current Unix time, or one more than the newest version when that is later."""
    return max([int(time.time())] + [version + 1 for version in existing_versions(base_dir)])


def _fingerprint(model_dir: str) -> Optional[tuple[int, int, int]]:
    """The SavedModel's hashes of its graph, its signatures and its weights (fingerprint.pb), or None without one.

    Not the object graph's hash: exporting one model twice (EmbeddingIndex exports the Trainer's again on every
    run with a new baseline) gives the same graph, signatures and weights but a different object graph."""
    if not tf.io.gfile.exists(os.path.join(model_dir, "fingerprint.pb")):
        return None
    found = tf.saved_model.experimental.read_fingerprint(model_dir)
    return found.graph_def_program_hash, found.signature_def_hash, found.checkpoint_hash


def _staging_name() -> str:
    """A staging directory's name: hidden from servers, and naming the process that writes it."""
    return f"{STAGING_PREFIX}{os.getpid()}@{socket.gethostname()}-{uuid.uuid4().hex}"


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_abandoned_staging(base_dir: str) -> list[str]:
    """Deletes the staging and half-deleted directories that pushes killed on this host left; returns them."""
    abandoned = []
    for name in tf.io.gfile.listdir(base_dir) if tf.io.gfile.isdir(base_dir) else []:
        name = name.rstrip("/")
        staging = _STAGING.match(name)
        killed_push = staging and staging["host"] == socket.gethostname() and _process_is_gone(int(staging["pid"]))
        if killed_push or name.startswith(DELETING_PREFIX):
            tf.io.gfile.rmtree(os.path.join(base_dir, name))
            abandoned.append(os.path.join(base_dir, name))
    return abandoned


@contextlib.contextmanager
def _writing_under(base_dir: str) -> Iterator[None]:
    """Turns a failure to write a version into a PushError naming the cause."""
    try:
        yield
    except (tf.errors.OpError, OSError, filesystem.NotFoundError) as error:
        cause = "the disk is full" if isinstance(error, tf.errors.ResourceExhaustedError) else \
            (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PushError(
            f"not pushed: the model cannot be written under {base_dir} ({cause}). Nothing was published and the "
            "versions already served are untouched; free space or fix the directory (or choose another "
            "--serving-dir), then run again."
        ) from None


def _write_extras(version_dir: str, extras: dict[str, bytes]) -> None:
    """Writes each extra file (path in the version -> content) into a version being written."""
    for name, content in extras.items():
        path = os.path.join(version_dir, name)
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(content)


def _publish_by_rename(model_dir: str, base_dir: str, extras: dict[str, bytes]) -> str:
    """On a local filesystem: the model is written to a hidden staging directory, then renamed to its version."""
    for path in remove_abandoned_staging(base_dir):
        logging.info("Removed %s, left by a push that was killed", path)
    staging = os.path.join(base_dir, _staging_name())
    try:
        with _writing_under(base_dir):
            io_utils.copy_dir(model_dir, staging)
            _write_extras(staging, extras)
        destination = os.path.join(base_dir, str(next_version(base_dir)))
        tf.io.gfile.rename(staging, destination)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return destination


def _publish_graph_last(model_dir: str, base_dir: str, extras: dict[str, bytes]) -> str:
    """On an object store, where a rename is a copy object by object: the version's files are written in place and
    its saved_model.pb, without which no server loads a SavedModel, last. A push that fails removes what it wrote."""
    destination = os.path.join(base_dir, str(next_version(base_dir)))
    graph = os.path.join(destination, SAVED_MODEL_PB)
    try:
        with _writing_under(base_dir):
            io_utils.copy_dir(model_dir, destination, deny_regex_patterns=[f"^{re.escape(model_dir.rstrip('/'))}/"
                                                                          f"{re.escape(SAVED_MODEL_PB)}$"])
            _write_extras(destination, extras)
            tf.io.gfile.copy(os.path.join(model_dir, SAVED_MODEL_PB), graph)
    finally:
        if not tf.io.gfile.exists(graph) and tf.io.gfile.exists(destination):
            tf.io.gfile.rmtree(destination)
    return destination


def publish(model_dir: str, base_dir: str, record: Optional[dict] = None,
            extras: Optional[dict[str, bytes]] = None) -> str:
    """Copies `model_dir` to `<base_dir>/<next version>` so that no server loads it before it is complete;
    returns the version's path. `record` (JSON) is written into the version as core.names.PUSH_RECORD, and each
    of `extras` (path in the version -> content: the training statistics, the evaluation) as well.

    A local `base_dir` gets the version by a rename (atomic), an object store (a URI such as gs://) gets its
    saved_model.pb last. When the newest complete version already is this model (same graph, signatures and weights),
    nothing is copied and that version's path is returned.
    """
    if not tf.io.gfile.exists(os.path.join(model_dir, SAVED_MODEL_PB)):
        raise FileNotFoundError(f"{model_dir}: no {SAVED_MODEL_PB}, so there is no model to push")
    newest = newest_served(base_dir)  # a version a killed push left without its saved_model.pb is none
    fingerprint = _fingerprint(model_dir)
    if newest and fingerprint and fingerprint == _fingerprint(newest):
        return newest
    tf.io.gfile.makedirs(base_dir)
    publish_version = _publish_graph_last if "://" in base_dir else _publish_by_rename
    extras = {**({PUSH_RECORD: json.dumps(record, indent=1, sort_keys=True).encode()} if record else {}),
              **(extras or {})}
    return publish_version(model_dir, base_dir, extras)


def prune(base_dir: str, keep: int, protected: Collection[int] = ()) -> list[str]:
    """Deletes all but the newest `keep` versions under `base_dir`, and those `protected` (labelled: rollout.py);
    returns the deleted paths.

    Each is renamed to a hidden name first, so no server sees a half-deleted version."""
    if keep < 1:
        raise ValueError(f"keep_versions must be at least 1, not {keep}")
    old = [os.path.join(base_dir, str(version)) for version in existing_versions(base_dir)[:-keep]
           if version not in protected]
    for path in old:
        hidden = os.path.join(base_dir, f"{DELETING_PREFIX}{os.path.basename(path)}-{uuid.uuid4().hex}")
        tf.io.gfile.rename(path, hidden)
        tf.io.gfile.rmtree(hidden)
    return old


def training_statistics(input_dict: dict[str, list[types.Artifact]]) -> dict[str, bytes]:
    """The serialized statistics of the training split of the run's `statistics`, if it has them, as the version's
    core.names.TRAINING_STATISTICS."""
    found = input_dict.get(STATISTICS_KEY) or []
    if not found or TRAIN not in artifact_utils.decode_split_names(found[0].split_names):
        return {}
    return {TRAINING_STATISTICS: stats_artifact_utils.load_statistics(found[0], TRAIN).proto().SerializeToString()}


def evaluation_files(input_dict: dict[str, list[types.Artifact]]) -> dict[str, bytes]:
    """The Evaluator's metrics of the candidate with the key of what they measured, as the version's
    core.names.PUSHED_EVALUATION files, when the Evaluator keyed them (it does when it evaluated attacked copies)."""
    found = input_dict.get(EVALUATION_KEY) or []
    if not found or not evaluation_key.read(found[0].uri):
        return {}
    names = [evaluation_key.KEY_FILE,
             *(os.path.basename(path) for path in tf.io.gfile.glob(os.path.join(found[0].uri, "metrics*")))]
    return {os.path.join(PUSHED_EVALUATION, name): tf.io.gfile.GFile(os.path.join(found[0].uri, name), "rb").read()
            for name in names}


def warmup_requests(input_dict: dict[str, list[types.Artifact]]) -> dict[str, bytes]:
    """The warmup requests the push check wrote in its InfraBlessing, as the version's warmup file (TF Serving's
    assets.extra/tf_serving_warmup_requests), when it wrote them."""
    found = input_dict.get(standard_component_specs.INFRA_BLESSING_KEY) or []
    path = warmup.warmup_file(found[0].uri) if found else ""
    if not path or not tf.io.gfile.exists(path):
        return {}
    return {warmup.WARMUP_FILE: tf.io.gfile.GFile(path, "rb").read()}


class AtomicPusherSpec(standard_component_specs.PusherSpec):
    """The Pusher's spec, plus how many versions to keep and the training data's statistics to push along."""

    PARAMETERS = {
        **standard_component_specs.PusherSpec.PARAMETERS,
        KEEP_VERSIONS_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
    }


class Executor(pusher_executor.Executor):
    """Pushes a model blessed by the Evaluator and the push check to a filesystem destination with `publish`."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict) -> None:
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_dir = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base_dir = destination.filesystem.base_directory
        serving_path = publish(model_dir, base_dir, self._push_record(input_dict),
                               {**training_statistics(input_dict), **evaluation_files(input_dict),
                                **warmup_requests(input_dict)})
        serving_dir, name = os.path.split(base_dir.rstrip("/"))
        entry = rollout.push(serving_dir, name, int(os.path.basename(serving_path)))  # under labels, the canary
        keep = exec_properties.get(KEEP_VERSIONS_KEY)
        if keep:
            for path in prune(base_dir, keep, rollout.protected_versions(entry)):
                logging.info("Removed old version %s (keeping the newest %d and the labelled ones)", path, keep)
        io_utils.copy_dir(model_dir, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=os.path.basename(serving_path))


    def _push_record(self, input_dict: dict[str, list[types.Artifact]]) -> dict:
        """The pipeline run and the Model artifact a version comes from (ServedModel reads it back)."""
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        context = self._context
        return {
            "model_uri": model.uri,
            "model_id": model.id,
            "pipeline": context.pipeline_info.id if context and context.pipeline_info else "",
            "pipeline_run_id": (context.pipeline_run_id if context else None) or "",
        }


class AtomicPusher(base_component.BaseComponent):
    """Pusher whose versions become visible only when fully written and checked."""

    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        push_destination: pusher_pb2.PushDestination,
        model_blessing: Optional[types.BaseChannel] = None,
        infra_blessing: Optional[types.BaseChannel] = None,
        keep_versions: Optional[int] = None,
        statistics: Optional[types.BaseChannel] = None,
        evaluation: Optional[types.BaseChannel] = None,
    ):
        """`model_blessing` is the Evaluator's (none for `cnnpipe index`: the served weights, a new catalog),
        `infra_blessing` PushCheck's; `keep_versions` keeps only the newest versions (None keeps all); `statistics`,
        StatisticsGen's, puts the training split's statistics into the version; `evaluation`, the Evaluator's, its
        keyed metrics (the next run reuses them as the served model's: components/blessing/evaluator.py)."""
        super().__init__(spec=AtomicPusherSpec(
            model=model,
            model_blessing=model_blessing,
            infra_blessing=infra_blessing,
            push_destination=push_destination,
            keep_versions=keep_versions,
            statistics=statistics,
            evaluation=evaluation,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
        ))
