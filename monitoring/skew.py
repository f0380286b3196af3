"""`cnnpipe skew`: the images served versions received (their request logs) against the data they were trained on.

For each model version in the request log (serving/request_log.py), the logged images are decoded as ingestion
decodes them (brightness, height, width: components/ingestion/formats.decoded_summary), TFDV computes their
statistics, and TFDV's skew comparators (Jensen-Shannon divergence) compare them with the statistics of the
version's training data, which the Pusher put into the version. A feature past its threshold is skew.
"""

import dataclasses
import os

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tensorflow_serving.apis import prediction_log_pb2

from cnnpipe.components.ingestion.formats import decoded_summary
from cnnpipe.core.names import TRAINING_STATISTICS
from cnnpipe.core import features
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import PREDICT_PIXELS
from cnnpipe.serving import request_log

COMPARED = (features.BRIGHTNESS, features.HEIGHT, features.WIDTH)
THRESHOLD = 0.1  # Jensen-Shannon divergence, as the drift check's


@dataclasses.dataclass(frozen=True)
class VersionSkew:
    """What one version's logged requests showed: how many, and each feature's divergence from training."""

    model: str
    version: int
    requests: int
    images: int
    divergence: dict[str, float]

    @property
    def skewed(self) -> list[str]:
        return [name for name, value in self.divergence.items() if value > THRESHOLD]

    def format(self) -> str:
        measured = ", ".join(f"{name} {value:.4f}" for name, value in self.divergence.items())
        verdict = (f"skew in {', '.join(self.skewed)} (Jensen-Shannon divergence over {THRESHOLD:g})" if self.skewed
                   else "no skew")
        return (f"{self.model} version {self.version}: {self.requests} logged requests, {self.images} images; "
                f"{verdict}; against its training data: {measured}")


def logged_images(log: prediction_log_pb2.PredictionLog) -> list[bytes]:
    """The encoded images a logged request sent, whichever image signature it called."""
    request = log.predict_log.request
    if request.model_spec.signature_name == PREDICT_PIXELS:
        pixels = tf.make_ndarray(request.inputs["pixels"])
        return [tf.io.encode_png(np.clip(image, 0, 255).astype(np.uint8)).numpy() for image in pixels]
    images = []
    for proto in request.inputs.values():
        for value in proto.string_val:
            example = _example(value)
            images += list(example.features.feature[features.IMAGE].bytes_list.value) if example else [value]
    return images


def _example(value: bytes):
    """`value` as a tf.Example holding an image (serving_default's input), or None (an encoded image)."""
    try:
        example = tf.train.Example.FromString(value)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError
        return None
    return example if features.IMAGE in example.features.feature else None


def serving_statistics(
    logs: list[prediction_log_pb2.PredictionLog],
) -> tuple[statistics_pb2.DatasetFeatureStatisticsList, int]:
    """TFDV statistics of the logged images' brightness, height and width, and how many images there were."""
    rows = [summary for log in logs for image in logged_images(log) if (summary := decoded_summary(image))]
    frame = pd.DataFrame(rows, columns=[features.HEIGHT, features.WIDTH, features.BRIGHTNESS])
    return tfdv.generate_statistics_from_dataframe(frame), len(rows)


def _schema(training: statistics_pb2.DatasetFeatureStatisticsList) -> schema_pb2.Schema:
    """The compared features of the training statistics, each with a Jensen-Shannon skew comparator."""
    schema = tfdv.infer_schema(training)
    kept = [feature for feature in schema.feature if feature.name in COMPARED]
    del schema.feature[:]
    for feature in kept:
        feature.skew_comparator.jensen_shannon_divergence.threshold = THRESHOLD
        schema.feature.append(feature)
    return schema


def version_skew(serving_dir: str, model: str, version: int,
                 logs: list[prediction_log_pb2.PredictionLog]) -> VersionSkew:
    path = os.path.join(serving_dir, model, str(version), TRAINING_STATISTICS)
    if not tf.io.gfile.exists(path):
        raise CnnpipeError(f"{path}: not found, so there is nothing to compare {model} version {version}'s requests "
                           "with; give the --serving-dir that served them (versions pushed by cnnpipe carry their "
                           "training statistics).")
    training = tfdv.load_stats_binary(path)
    serving, images = serving_statistics(logs)
    anomalies = tfdv.validate_statistics(training, _schema(training), serving_statistics=serving)
    divergence = {".".join(info.path.step): measurement.value for info in anomalies.drift_skew_info
                  for measurement in info.skew_measurements}
    return VersionSkew(model, version, len(logs), images, divergence)


def find_skew(requests_dir: str, serving_dir: str) -> list[VersionSkew]:
    """Each logged version's skew against its training data."""
    logged = request_log.read(requests_dir)
    if not logged:
        raise CnnpipeError(f"{requests_dir}: no request logs here; give the --log-requests directory of "
                           "`cnnpipe serve`.")
    return [version_skew(serving_dir, model, version, logs) for (model, version), logs in sorted(logged.items())]
