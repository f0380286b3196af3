"""`models.config`: TF Serving's model_config_list (text format) for a serving directory.

Each subdirectory of the serving directory that holds integer versions is a model named after
it. The Pusher rewrites the file after each push; `cnnpipe serve` and tensorflow_model_server
read it.
"""

import os
import uuid

import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

MODELS_CONFIG = "models.config"
PLATFORM = "tensorflow"


def versions(base_path: str) -> list[int]:
    """Integer version directories under a model base path, ascending."""
    if not tf.io.gfile.isdir(base_path):
        return []
    return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(base_path) if name.rstrip("/").isdigit())


def scan(serving_dir: str) -> model_server_config_pb2.ModelServerConfig:
    """One model per subdirectory of `serving_dir` that has at least one integer version."""
    config = model_server_config_pb2.ModelServerConfig()
    names = sorted(name.rstrip("/") for name in tf.io.gfile.listdir(serving_dir)) if tf.io.gfile.isdir(serving_dir) else []
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


def read(path: str) -> model_server_config_pb2.ModelServerConfig:
    """A models.config file; a ValueError names the file and what is wrong with it."""
    try:
        with tf.io.gfile.GFile(path) as f:
            config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ValueError(f"{path}: not a TF Serving model config (model_config_list text format): {error}") from None
    if config.HasField("custom_model_config"):
        raise ValueError(f"{path}: custom_model_config is not supported; list the models in model_config_list.")
    return config
