"""`models.config`: TF Serving's model_config_list (text format) for a serving directory.

Each subdirectory of the serving directory that holds integer versions is a model named after
it. The Pusher updates the file after each push, keeping what is in it (labels, version policies:
serving/rollout.py); `cnnpipe serve` and tensorflow_model_server read it.
"""

import os
import uuid
from typing import Callable, Optional, TypeVar

import tensorflow as tf
from google.protobuf import text_format
from google.protobuf.message import Message
from tensorflow_serving.config import model_server_config_pb2

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.versions import version_names

MODELS_CONFIG = "models.config"
T = TypeVar("T")
PLATFORM = "tensorflow"


def version_dirs(base_path: str) -> dict[int, str]:
    """The integer versions under a model base path (local or a bucket), ascending, each with its directory; none
    when the base path is missing."""
    names = version_names(tf.io.gfile.listdir(base_path)) if tf.io.gfile.isdir(base_path) else {}
    return {version: os.path.join(base_path, name) for version, name in names.items()}


def versions(base_path: str) -> list[int]:
    """The integer versions under a model base path (local or a bucket), ascending; none when it is missing."""
    return list(version_dirs(base_path))


def scan(serving_dir: str) -> model_server_config_pb2.ModelServerConfig:
    """One model per subdirectory of `serving_dir` that has at least one integer version."""
    config = model_server_config_pb2.ModelServerConfig()
    names = (sorted(name.rstrip("/") for name in tf.io.gfile.listdir(serving_dir)) if tf.io.gfile.isdir(serving_dir)
             else [])
    for name in names:
        base_path = os.path.join(serving_dir, name)
        if versions(base_path):
            absolute = base_path if "://" in base_path else os.path.abspath(base_path)  # buckets stay as they are
            config.model_config_list.config.add(name=name, base_path=absolute, model_platform=PLATFORM)
    return config


def merged(serving_dir: str) -> model_server_config_pb2.ModelServerConfig:
    """`<serving_dir>/models.config` as it is (labels, version policies and every other field kept) but for the models
    whose base path holds no version any more, and with each new model directory added."""
    path = os.path.join(serving_dir, MODELS_CONFIG)
    if not tf.io.gfile.exists(path):
        return scan(serving_dir)
    try:
        config = read(path)
    except ModelConfigError as error:
        raise ModelConfigError(f"{error} It cannot be merged with what is pushed: fix it, or move it away and a new "
                               "one is written from the directory.") from None
    kept = [entry for entry in config.model_config_list.config if versions(entry.base_path)]
    listed = {entry.name for entry in kept}
    del config.model_config_list.config[:]
    config.model_config_list.config.extend(kept)
    config.model_config_list.config.extend(entry for entry in scan(serving_dir).model_config_list.config
                                           if entry.name not in listed)
    return config


def write(serving_dir: str, config: Optional[model_server_config_pb2.ModelServerConfig] = None) -> str:
    """Writes `<serving_dir>/models.config` (default: `merged`), atomically (a temporary file, then a rename)."""
    config = config if config is not None else merged(serving_dir)
    path = os.path.join(serving_dir, MODELS_CONFIG)
    staging = os.path.join(serving_dir, f".{MODELS_CONFIG}-{uuid.uuid4().hex}")
    with tf.io.gfile.GFile(staging, "w") as f:
        f.write(text_format.MessageToString(config))
    tf.io.gfile.rename(staging, path, overwrite=True)
    return path


def entry_of(config: model_server_config_pb2.ModelServerConfig,
             model: str) -> Optional[model_server_config_pb2.ModelConfig]:
    return next((entry for entry in config.model_config_list.config if entry.name == model), None)


def entry(serving_dir: str, model: str) -> Optional[model_server_config_pb2.ModelConfig]:
    """`model`'s entry in `<serving_dir>/models.config`, as the file has it; None without the file or the entry."""
    path = os.path.join(serving_dir, MODELS_CONFIG)
    return entry_of(read(path), model) if tf.io.gfile.exists(path) else None


def update(serving_dir: str, model: str, change: Callable[[model_server_config_pb2.ModelConfig], T]) -> T:
    """Applies `change` to `model`'s entry of the merged models.config and writes it; returns what `change` returns.
    A model the directory does not serve raises CnnpipeError naming those it does."""
    config = merged(serving_dir)
    found = entry_of(config, model)
    if found is None:
        served = ", ".join(listed.name for listed in config.model_config_list.config) or "none"
        raise CnnpipeError(f"{serving_dir} serves no model '{model}' (models: {served}); give --model-name.")
    result = change(found)
    write(serving_dir, config)
    return result


class ModelConfigError(CnnpipeError, ValueError):
    """A models.config that cannot be read or is not a model_config_list."""


def read_text_proto(path: str, message: Message, what: str, error: type[Exception]) -> Message:
    """`message` parsed from the text-format file at `path` (local or a bucket); `error` names the file and what is
    wrong with it: unreadable, not UTF-8 text, or not `what` (e.g. "a TF Serving model config (...)")."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            text = f.read().decode("utf-8")
        return text_format.Parse(text, message)
    except tf.errors.OpError as failure:
        raise error(f"{path}: cannot read it: {failure.message}") from None
    except UnicodeDecodeError as failure:
        raise error(f"{path}: not {what}: byte {failure.start} is not UTF-8 text "
                    f"(0x{failure.object[failure.start]:02x}); is it a binary file?") from None
    except text_format.ParseError as failure:
        raise error(f"{path}: not {what}: {failure}") from None


def read(path: str) -> model_server_config_pb2.ModelServerConfig:
    """A models.config file; a ModelConfigError (a ValueError) names the file and what is wrong with it."""
    config = read_text_proto(path, model_server_config_pb2.ModelServerConfig(), "a TF Serving model config (Error "
                             "parsing text-format tensorflow.serving.ModelServerConfig)", ModelConfigError)
    if config.HasField("custom_model_config"):
        raise ModelConfigError(f"{path}: custom_model_config is not supported; list the models in model_config_list.")
    return config
