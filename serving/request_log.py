"""Request logging (`cnnpipe serve --log-requests DIR`): a sample of the predictions each served version makes, as
TF Serving's request logging writes them: PredictionLog records (the PredictRequest and its PredictResponse) in
TFRecord files, under DIR/<model>/<version>/, a new file once one passes `max_file_bytes`.

A request never waits for the log and never fails because of it: records go through a bounded queue to one
writer thread. When the queue is full (the disk is slow) or a write fails (the disk is full), the record is
dropped and counted, and the first failure is logged once; logging resumes when writes succeed again.
"""

import contextlib
import logging
import os
import queue
import random
import threading
import time

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from cnnpipe.serving import tensors

MAX_FILE_BYTES = 64 << 20
QUEUE_RECORDS = 256  # records waiting for the writer; past that a request's record is dropped
FILE_PREFIX = "requests-"

logger = logging.getLogger(__name__)


def prediction_log(model: str, version: int, signature_name: str, inputs: dict[str, np.ndarray],
                   outputs: dict[str, np.ndarray]) -> prediction_log_pb2.PredictionLog:
    """One prediction as TF Serving logs it: the request (model spec and input tensors) and the response."""
    log = prediction_log_pb2.PredictionLog()
    for spec in (log.predict_log.request.model_spec, log.predict_log.response.model_spec):
        spec.name, spec.signature_name = model, signature_name
        spec.version.value = version
    for name, array in inputs.items():
        tensors.write_proto(np.asarray(array), log.predict_log.request.inputs[name])
    for name, array in outputs.items():
        tensors.write_proto(np.asarray(array), log.predict_log.response.outputs[name])
    return log


class RequestLog:
    """Logs a `sample_rate` share of predictions under `directory`; `close` writes what is queued and stops."""

    def __init__(self, directory: str, sample_rate: float = 1.0, max_file_bytes: int = MAX_FILE_BYTES,
                 queue_records: int = QUEUE_RECORDS):
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"--log-sample-rate must be in (0, 1], not {sample_rate}")
        self.directory, self.sample_rate, self.max_file_bytes = directory, sample_rate, max_file_bytes
        self.dropped = 0
        self._dropped_lock = threading.Lock()  # request threads and the writer count drops
        self._queue: queue.Queue = queue.Queue(queue_records)
        self._files: dict[tuple[str, int], tuple[tf.io.TFRecordWriter, str, int]] = {}  # writer, path, bytes written
        self._failing = False
        self._writer = threading.Thread(target=self._write_all, name="request-log", daemon=True)
        self._writer.start()

    def record(self, model: str, version: int, signature_name: str, inputs: dict[str, np.ndarray],
               outputs: dict[str, np.ndarray]) -> None:
        """Queues a sampled prediction for writing; returns at once."""
        if random.random() >= self.sample_rate:
            return
        record = prediction_log(model, version, signature_name, inputs, outputs).SerializeToString()
        try:
            self._queue.put_nowait((model, version, record))
        except queue.Full:
            self._drop()

    def _drop(self) -> None:
        with self._dropped_lock:
            self.dropped += 1

    def close(self) -> None:
        self._queue.put((None, 0, b""))
        self._writer.join()

    def _write_all(self) -> None:
        while True:
            model, version, record = self._queue.get()
            if model is None:
                break
            try:
                self._write(model, version, record)
                self._failing = False
            except (OSError, tf.errors.OpError) as error:
                self._drop()
                self._discard(model, version)
                if not self._failing:
                    logger.warning("Request log: cannot write under %s (%s); dropping records until it can.",
                                   self.directory, error)
                self._failing = True
        for model, version in list(self._files):
            self._files.pop((model, version))[0].close()

    def _write(self, model: str, version: int, record: bytes) -> None:
        writer, path, _ = self._files.get((model, version)) or self._open(model, version)
        writer.write(record)
        writer.flush()
        size = os.path.getsize(path)
        self._files[(model, version)] = writer, path, size
        if size >= self.max_file_bytes:
            self._files.pop((model, version))[0].close()

    def _open(self, model: str, version: int) -> tuple[tf.io.TFRecordWriter, str, int]:
        directory = os.path.join(self.directory, model, str(version))
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{FILE_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}"
                                       f"-{os.getpid()}.tfrecord")
        self._files[(model, version)] = tf.io.TFRecordWriter(path), path, 0
        return self._files[(model, version)]

    def _discard(self, model: str, version: int) -> None:
        """After a failed write: the file cut back to its whole records, closed; the next record opens a new one."""
        writer, path, whole = self._files.pop((model, version), (None, "", 0))
        with contextlib.suppress(OSError, tf.errors.OpError):
            if writer is not None:
                writer.close()
        with contextlib.suppress(OSError):
            if os.path.getsize(path) > whole:
                os.truncate(path, whole)


def read(directory: str) -> dict[tuple[str, int], list[prediction_log_pb2.PredictionLog]]:
    """The logged predictions under `directory`, by model and version (a partial record at a file's end, left by a
    server that was killed, is skipped)."""
    found: dict[tuple[str, int], list[prediction_log_pb2.PredictionLog]] = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(directory, "*", "*", f"{FILE_PREFIX}*"))):
        version_dir = os.path.dirname(path)
        key = (os.path.basename(os.path.dirname(version_dir)), int(os.path.basename(version_dir)))
        records = found.setdefault(key, [])
        try:
            for record in tf.data.TFRecordDataset(path):
                records.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()))
        except tf.errors.DataLossError:  # a file whose writer was killed mid-record: its whole records count
            logger.warning("Request log: %s ends in a partial record; reading the records before it.", path)
    return found
