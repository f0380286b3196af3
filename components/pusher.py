"""AtomicPusher: TFX's Pusher, but a new version appears in the serving directory all at once.

The model is copied to a hidden staging directory beside the versions and renamed to its
integer version when complete (TF Serving ignores names that are not integers), so a server
polling `<base>/<model>/` never loads a half-written version. Versions only increase.
"""

import os
import time
import uuid

import tensorflow as tf
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.components.pusher.component import Pusher
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

STAGING_PREFIX = ".staging-"


def existing_versions(base_dir: str) -> list[int]:
    """Integer version directories under `base_dir`, ascending."""
    if not tf.io.gfile.isdir(base_dir):
        return []
    return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(base_dir) if name.rstrip("/").isdigit())


def next_version(base_dir: str) -> int:
    """The current Unix time, or one more than the newest version when that is later."""
    return max([int(time.time())] + [version + 1 for version in existing_versions(base_dir)])


def _fingerprint(model_dir: str) -> bytes:
    """The SavedModel's fingerprint.pb (checksums of its graph, signatures and weights)."""
    path = os.path.join(model_dir, "fingerprint.pb")
    return tf.io.gfile.GFile(path, "rb").read() if tf.io.gfile.exists(path) else b""


def publish(model_dir: str, base_dir: str) -> str:
    """Copies `model_dir` to `<base_dir>/<next version>` atomically; returns the version's path.

    When the newest version already is this model (same SavedModel fingerprint), nothing is
    copied and that version's path is returned.
    """
    if not tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        raise FileNotFoundError(f"{model_dir}: no saved_model.pb, so there is no model to push")
    versions = existing_versions(base_dir)
    if versions:
        newest = os.path.join(base_dir, str(versions[-1]))
        fingerprint = _fingerprint(model_dir)
        if fingerprint and fingerprint == _fingerprint(newest):
            return newest
    tf.io.gfile.makedirs(base_dir)
    staging = os.path.join(base_dir, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    try:
        io_utils.copy_dir(model_dir, staging)
        destination = os.path.join(base_dir, str(next_version(base_dir)))
        tf.io.gfile.rename(staging, destination)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return destination


class Executor(pusher_executor.Executor):
    """Pushes a blessed model to a filesystem destination with `publish`."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict) -> None:
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_dir = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        serving_path = publish(model_dir, destination.filesystem.base_directory)
        io_utils.copy_dir(model_dir, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=os.path.basename(serving_path))


class AtomicPusher(Pusher):
    """Pusher whose versions become visible only when fully written."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
