"""The evaluation key: what an evaluation measured, so that a later run may reuse the served model's metrics.

The Evaluator keys its candidate's metrics; the Pusher pushes both with the model (under EVALUATION in the version).
A later run computes the key the served model's metrics would have if it measured them now: the same eval images and
attack settings (`data_digest`, written by AdversarialExamples beside its copies), the same measurements of the
EvalConfig (slices, metrics, the candidate's ModelSpec; thresholds may change), the same SavedModel (its
fingerprint), and the same attack code and TFMA. When that key is the stored one, the served model is neither
attacked (AdversarialExamples) nor evaluated (the Evaluator) again: its stored metrics stand for it. Any part that
differs is named in the log.
"""

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import pathlib
from typing import Optional

import tensorflow as tf
import tensorflow_model_analysis as tfma
from absl import logging

from cnnpipe import attacks, robustness
from cnnpipe.core.names import PUSHED_EVALUATION
from cnnpipe.robustness.settings import AttackSettings

KEY_FILE = "evaluation_key.json"  # in an evaluation, and in a pushed version's PUSHED_EVALUATION
DATA_KEY_FILE = "data_key.txt"  # beside AdversarialExamples' copies: data_digest of what they hold
FINGERPRINT_FILE = "fingerprint.pb"


def data_digest(files: list[str], settings: AttackSettings) -> str:
    """The source records of the copies (in any order) and every attack setting, as a digest."""
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if settings.max_examples:
        records = records.take(settings.max_examples)
    digests = sorted(hashlib.sha256(record).digest() for record in records.as_numpy_iterator())
    described = json.dumps(dataclasses.asdict(settings), sort_keys=True).encode()
    return hashlib.sha256(described + b"".join(digests)).hexdigest()


def config_digest(config: tfma.EvalConfig) -> str:
    """What an EvalConfig measures, as a digest: its slices, metrics and the candidate's ModelSpec, without the
    thresholds (which decide the blessing, not the values) and without the baseline's spec."""
    measured = tfma.EvalConfig()
    measured.CopyFrom(config)
    del measured.model_specs[:]
    measured.model_specs.extend(spec for spec in config.model_specs if not spec.is_baseline)
    for metrics_spec in measured.metrics_specs:
        metrics_spec.ClearField("thresholds")
        for metric in metrics_spec.metrics:
            metric.ClearField("threshold")
            metric.ClearField("per_slice_thresholds")
            metric.ClearField("cross_slice_thresholds")
    return hashlib.sha256(measured.SerializeToString(deterministic=True)).hexdigest()


def model_fingerprint(saved_model_dir: str) -> str:
    """The SavedModel's fingerprint (TensorFlow's fingerprint.pb), or a digest of its saved_model.pb without one."""
    if tf.io.gfile.exists(os.path.join(saved_model_dir, FINGERPRINT_FILE)):
        return tf.saved_model.experimental.read_fingerprint(saved_model_dir).singleprint()
    with tf.io.gfile.GFile(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def code_digest() -> str:
    """The attack code's source (cnnpipe's attacks/ and robustness/ packages): the copies change when it does."""
    sources = sorted(path for package in (attacks, robustness) for path in pathlib.Path(package.__file__).parent
                     .glob("*.py"))
    return hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()


def key(data: str, config: tfma.EvalConfig, saved_model_dir: str) -> dict[str, str]:
    """The key of a model's metrics on copies of digest `data` under `config`."""
    return {"data": data, "eval_config": config_digest(config), "model": model_fingerprint(saved_model_dir),
            "attack_code": code_digest(), "tfma": importlib.metadata.version("tensorflow-model-analysis")}


def write(directory: str, evaluation_key: dict[str, str]) -> None:
    with tf.io.gfile.GFile(os.path.join(directory, KEY_FILE), "w") as file:
        file.write(json.dumps(evaluation_key, indent=1, sort_keys=True))


def read(directory: str) -> dict[str, str]:
    """The key written in `directory`, or {} when there is none."""
    path = os.path.join(directory, KEY_FILE)
    return json.loads(tf.io.gfile.GFile(path).read()) if tf.io.gfile.exists(path) else {}


def read_data_key(examples_uri: str) -> str:
    """The data_digest AdversarialExamples wrote beside its copies ("" for examples it did not write)."""
    path = os.path.join(examples_uri, DATA_KEY_FILE)
    return tf.io.gfile.GFile(path).read().strip() if tf.io.gfile.exists(path) else ""


def changed_parts(served_dir: str, data: str, config: tfma.EvalConfig) -> Optional[list[str]]:
    """The parts of the key stored with the served model's metrics that differ from the key they would have now
    (copies of digest `data`, `config`): [] when the metrics stand for the served model; None when there is nothing
    to compare (no stored key, or copies without a digest)."""
    stored = read(os.path.join(served_dir, PUSHED_EVALUATION))
    if not stored or not data:
        return None
    expected = key(data, config, served_dir)
    return [part for part in expected if stored.get(part) != expected[part]]


def stored_metrics(served_dir: str, data: str, config: tfma.EvalConfig) -> Optional[str]:
    """The directory of the metrics pushed with the served model when their key is the one it would have now, else
    None; the parts that differ are logged."""
    differ = changed_parts(served_dir, data, config)
    if differ is None:
        return None
    if differ:
        logging.info("The served model's stored metrics are not reused: %s changed.", ", ".join(differ))
        return None
    return os.path.join(served_dir, PUSHED_EVALUATION)
