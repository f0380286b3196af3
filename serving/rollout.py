"""Safe rollout with TF Serving's version labels in `models.config`: `stable` is what clients are pinned to, `canary`
the newest push beside it; `promote` moves `stable`, `rollback` moves it back.

A model whose entry has no labels is served as before (its newest version). Once a version is promoted, the entry
has labels and a `specific` version policy: the labelled versions and the one `stable` replaced (so that a rollback
is instant) stay loaded, and each later push becomes the `canary`. Who promoted which version, when, and what it
replaced is recorded in that version's push record (`core.names.PUSH_RECORD`).
"""

import datetime
import getpass
import json
import os
import uuid
from typing import Optional, Union

import tensorflow as tf
from tensorflow_serving.config import model_server_config_pb2

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import PUSH_RECORD
from cnnpipe.serving import model_config

STABLE, CANARY = "stable", "canary"
ModelConfig = model_server_config_pb2.ModelConfig


class RolloutError(CnnpipeError):
    """A promote or rollback that cannot be done: the model, version or record it needs is missing."""


def push_record(version_dir: str) -> dict:
    """What the Pusher (and promote/rollback) recorded about a version; empty for a version pushed otherwise."""
    path = os.path.join(version_dir, PUSH_RECORD)
    return json.loads(tf.io.gfile.GFile(path).read()) if tf.io.gfile.exists(path) else {}


def _record(version_dir: str, **facts: object) -> None:
    """Adds `facts` to a version's push record, atomically (servers ignore the file)."""
    path = os.path.join(version_dir, PUSH_RECORD)
    tf.io.gfile.makedirs(os.path.dirname(path))
    staging = f"{path}.{uuid.uuid4().hex}"
    with tf.io.gfile.GFile(staging, "w") as file:
        file.write(json.dumps({**push_record(version_dir), **facts}, indent=1, sort_keys=True))
    tf.io.gfile.rename(staging, path, overwrite=True)


def previous_stable(entry: ModelConfig) -> Optional[int]:
    """The version `stable` replaced when it was promoted (its push record says), if any."""
    stable = entry.version_labels.get(STABLE)
    found = push_record(os.path.join(entry.base_path, str(stable))).get("previous_stable") if stable else None
    return int(found) if found is not None else None


def protected_versions(entry: Optional[ModelConfig]) -> set[int]:
    """The versions kept loaded and never pruned: the labelled ones and the previous stable one."""
    if entry is None or not entry.version_labels:
        return set()
    return set(entry.version_labels.values()) | ({previous_stable(entry)} - {None})


def _serve_labelled(entry: ModelConfig) -> None:
    """The entry's policy: the protected versions, and no other."""
    entry.model_version_policy.Clear()
    entry.model_version_policy.specific.versions.extend(sorted(protected_versions(entry)))


def stable_version(entry: Optional[ModelConfig]) -> Optional[int]:
    """The `stable` version, when the entry uses labels."""
    return entry.version_labels.get(STABLE) if entry is not None else None


def push(serving_dir: str, model: str, version: int) -> ModelConfig:
    """Records a push of `version` in models.config (merged, written atomically): under labels it becomes the
    `canary`, served beside `stable`. Returns the model's entry."""
    def change(entry: ModelConfig) -> ModelConfig:
        if entry.version_labels:
            entry.version_labels[CANARY] = version
            _serve_labelled(entry)
        return entry
    return model_config.update(serving_dir, model, change)


def promote(serving_dir: str, model: str, target: Union[int, str]) -> tuple[int, Optional[int]]:
    """Points `stable` at version `target` (or at the `canary`'s version); returns the new and the old stable."""
    def change(entry: ModelConfig) -> tuple[int, Optional[int]]:
        labels = dict(entry.version_labels)
        if target == CANARY and CANARY not in labels:
            raise RolloutError(f"model '{model}' has no canary: push a model under labels first, or promote a "
                               "version by number.")
        version = labels[CANARY] if target == CANARY else int(target)
        if version not in model_config.versions(entry.base_path):
            raise RolloutError(f"model '{model}' has no version {version} in {entry.base_path} (versions: "
                               f"{', '.join(map(str, model_config.versions(entry.base_path))) or 'none'}).")
        old = labels.get(STABLE)
        if old == version:
            raise RolloutError(f"version {version} of model '{model}' is stable already.")
        entry.version_labels[STABLE] = version
        if labels.get(CANARY) == version:
            del entry.version_labels[CANARY]
        _record(os.path.join(entry.base_path, str(version)), previous_stable=old, promoted_by=getpass.getuser(),
                promoted_at=_now())
        _serve_labelled(entry)
        return version, old
    return model_config.update(serving_dir, model, change)


def rollback(serving_dir: str, model: str) -> tuple[int, int]:
    """Points `stable` back at the version it replaced, keeping both loaded; returns the new and the old stable."""
    def change(entry: ModelConfig) -> tuple[int, int]:
        current = entry.version_labels.get(STABLE)
        previous = previous_stable(entry)
        if current is None or previous is None:
            raise RolloutError(f"model '{model}' has no stable version that replaced another: nothing to roll back "
                               "to (promote a version first).")
        entry.version_labels[STABLE] = previous  # the policy keeps `current` loaded, to promote again at once
        _record(os.path.join(entry.base_path, str(current)), rolled_back_by=getpass.getuser(), rolled_back_at=_now())
        return previous, current
    return model_config.update(serving_dir, model, change)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
