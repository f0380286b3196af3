"""`models.config`: TF Serving's model_config_list (text format) for a serving directory.

Each subdirectory of the serving directory that holds integer versions is a model named after
it. The Pusher rewrites the file after each push; `cnnpipe serve` and tensorflow_model_server
read it.
"""

import os
import uuid

import tensorflow as tf
from google.protobuf import text_format
from google.protobuf.message import Message
from tensorflow_serving.config import model_server_config_pb2

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.versions import version_names

MODELS_CONFIG = "models.config"
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


def write(serving_dir: str) -> str:
    """Writes `<serving_dir>/models.config` listing its models, atomically (a temporary file, then a rename)."""
    path = os.path.join(serving_dir, MODELS_CONFIG)
    staging = os.path.join(serving_dir, f".{MODELS_CONFIG}-{uuid.uuid4().hex}")
    with tf.io.gfile.GFile(staging, "w") as f:
        f.write(text_format.MessageToString(scan(serving_dir)))
    tf.io.gfile.rename(staging, path, overwrite=True)
    return path


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
