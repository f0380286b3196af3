"""Model warmup: the sample requests a SavedModel version ships in assets.extra/tf_serving_warmup_requests (a TFRecord
file of PredictionLog records), replayed when the version loads so that its first live requests do not pay for lazy
initialization. A version without the file loads without warmup; a file the server refuses, or a warmup request that
fails, fails the load.
"""

import logging
import os
import time
from typing import Callable, Iterator, Sequence

import grpc
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

from cnnpipe.serving.errors import ServingError

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_RECORDS = 1000
DEFAULT_ITERATIONS = 1
# Log types the server does not replay: warming up with them fails the load.
UNSUPPORTED_LOG_TYPES = ("session_run_log", "predict_streamed_log")

logger = logging.getLogger(__name__)

_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


class WarmupError(ServingError):
    """A warmup file the server refuses: its status code and a message naming the file (and record)."""


def warmup_file(version_dir: str) -> str:
    """Where a version's warmup requests are."""
    return os.path.join(version_dir, WARMUP_FILE)


def replay(version_dir: str, run: Callable[[prediction_log_pb2.PredictionLog], None],
           iterations: int = DEFAULT_ITERATIONS) -> int:
    """Replays the version's warmup requests, if it has any: calls `run` with each PredictionLog record `iterations`
    times, in file order; returns how many records were read (0 without a warmup file). A record with no log type is
    read but not run. Raises WarmupError for a file the server refuses: one record too many (that record has been
    run, as TF Serving runs it), a record of an unsupported log type, a record that is not a PredictionLog, or a file
    that is not TFRecord. Errors raised by `run` propagate."""
    path = warmup_file(version_dir)
    if not _exists(path):
        return 0
    started, count = time.monotonic(), 0
    for count, log in enumerate(_records(path), start=1):
        if _runnable(log, count, path):
            for _ in range(iterations):
                run(log)
        if count > MAX_RECORDS:
            raise WarmupError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}")
    logger.info("Finished reading warmup data at %s: %d records, each run %d times, in %.3f s.", path, count,
                iterations, time.monotonic() - started)
    return count


def write(version_dir: str, logs: Sequence[prediction_log_pb2.PredictionLog]) -> str:
    """Writes a version's warmup file; returns its path."""
    path = warmup_file(version_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def _exists(path: str) -> bool:
    """Whether the warmup file exists; a path that cannot be checked counts as no file."""
    try:
        found = tf.io.gfile.exists(path)
    except tf.errors.OpError as error:
        logger.warning("No warmup data: cannot check %s (%s).", path, error.message)
        return False
    if not found:
        logger.debug("No warmup data file found at %s.", path)
    return found


def _records(path: str) -> Iterator[prediction_log_pb2.PredictionLog]:
    """The file's records, parsed; a file that is not TFRecord, or cannot be read, raises WarmupError."""
    number = 0
    try:
        for number, record in enumerate(tf.compat.v1.io.tf_record_iterator(path), start=1):
            yield _parse(record, number, path)
    except tf.errors.DataLossError as error:
        raise WarmupError(grpc.StatusCode.DATA_LOSS, f"{error.message} (record {number + 1} of {path}). Please verify "
                                                     "your warmup data is in TFRecord format.") from error
    except tf.errors.OpError as error:
        raise WarmupError(_STATUS_CODES.get(error.error_code, grpc.StatusCode.UNKNOWN),
                          f"{error.message} (reading warmup data at {path})") from error


def _parse(record: bytes, number: int, path: str) -> prediction_log_pb2.PredictionLog:
    try:
        return prediction_log_pb2.PredictionLog.FromString(record)
    except DecodeError as error:
        raise WarmupError(grpc.StatusCode.INVALID_ARGUMENT, f"Failed to parse warmup record: record {number} "
                                                            f"({len(record)} bytes) from {path}") from error


def _runnable(log: prediction_log_pb2.PredictionLog, number: int, path: str) -> bool:
    """Whether the record is a request to run (False: it has no log type); raises WarmupError for a log type the
    server does not replay."""
    kind = log.WhichOneof("log_type")
    if kind in UNSUPPORTED_LOG_TYPES:
        field = log.DESCRIPTOR.fields_by_name[kind].number  # TF Serving names the type by its field number
        raise WarmupError(grpc.StatusCode.UNIMPLEMENTED,
                          f"Unsupported log_type for warmup: {field} ({kind}, record {number} of {path})")
    if kind is None:
        logger.warning("Warmup record %d of %s has no log type; skipping it.", number, path)
    return kind is not None
