"""Request logging (`cnnpipe serve --log-requests DIR`): the predictions a served version made, logged as TF
Serving logs them (PredictionLog records), sampled, rotated by size, and never in a request's way."""

import base64
import glob
import os
import random
import subprocess
import time

import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from conftest import encode, fashion_mnist, freezable_disk, running_server, small_disk, wait_until
from cnnpipe.serving import request_log
from cnnpipe.serving.model_config import versions

IMAGES = 6


def logged_probabilities(log) -> np.ndarray:
    return tf.make_ndarray(log.predict_log.response.outputs["probabilities"])


def test_rest_and_grpc_predictions_are_logged_under_the_version_that_answered(pushed_run, tmp_path):
    images = [encode(pixels) for pixels in fashion_mnist("t10k", IMAGES)[0]]
    logs = tmp_path / "requests"
    name, version = pushed_run.name, versions(pushed_run.serving_base)[-1]
    with running_server(os.path.dirname(pushed_run.serving_base), "--log-requests", str(logs)) as server:
        rest = requests.post(f"{server.rest}/v1/models/{name}:predict", timeout=60, json={
            "signature_name": "predict_image", "instances": [{"b64": base64.b64encode(i).decode()} for i in images]})
        assert rest.status_code == 200, rest.text
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = name, "predict_image"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images[:2]))
        grpc_answer = server.predict_stub().Predict(request, timeout=60)
        server.process.terminate()  # the drain writes what is queued
        assert server.process.wait(timeout=60) == 0
    logged = request_log.read(str(logs))
    assert list(logged) == [(name, version)]
    by_size = sorted(logged[(name, version)], key=lambda log: -len(log.predict_log.request.inputs["images"].string_val))
    assert len(by_size) == 2
    rest_probabilities = np.array([prediction["probabilities"] for prediction in rest.json()["predictions"]])
    for log, sent, answered in ((by_size[0], images, rest_probabilities),
                                (by_size[1], images[:2], tf.make_ndarray(grpc_answer.outputs["probabilities"]))):
        spec = log.predict_log.request.model_spec
        assert (spec.name, spec.version.value, spec.signature_name) == (name, version, "predict_image")
        assert list(log.predict_log.request.inputs["images"].string_val) == sent  # the image bytes as sent
        np.testing.assert_allclose(logged_probabilities(log), answered, rtol=1e-6)


def test_a_sample_is_logged_and_files_rotate_by_size(tmp_path):
    random.seed(0)
    log = request_log.RequestLog(str(tmp_path), sample_rate=0.25, max_file_bytes=20_000)
    pixels = fashion_mnist("t10k", 1)[0][None, ..., None].astype(np.float32)
    for index in range(400):
        log.record("fashion", 7, "predict_pixels", {"pixels": pixels},
                   {"class_ids": np.array([index % 10], np.int64)})
    log.close()
    logged = request_log.read(str(tmp_path))[("fashion", 7)]
    assert 70 <= len(logged) <= 130  # a quarter of 400
    np.testing.assert_array_equal(tf.make_ndarray(logged[0].predict_log.request.inputs["pixels"]), pixels)
    files = os.listdir(tmp_path / "fashion" / "7")
    assert len(files) >= 3 and all(os.path.getsize(tmp_path / "fashion" / "7" / f) < 20_000 + 4_000 for f in files)
    assert log.dropped == 0


@pytest.mark.fault("serving", "the request log's disk is full (a 1 MB tmpfs) while requests arrive",
                   "every request answered; records that do not fit are dropped and counted, one warning")
def test_a_full_disk_drops_records_and_never_fails_a_request(tmp_path, observed, caplog):
    with small_disk(tmp_path, "1m") as disk:
        log = request_log.RequestLog(str(disk))
        pixels = np.zeros((64, 28, 28, 1), np.float32)  # 200 kB a record: the disk holds four
        started = time.monotonic()
        for _ in range(30):
            log.record("fashion", 1, "predict_pixels", {"pixels": pixels}, {"class_ids": np.zeros(64, np.int64)})
        queued_in = time.monotonic() - started
        log.close()
        kept = len(request_log.read(str(disk)).get(("fashion", 1), []))
    assert 0 < kept < 30 and log.dropped == 30 - kept
    assert len([r for r in caplog.records if "Request log: cannot write" in r.message]) == 1
    observed(f"{kept} of 30 records written, {log.dropped} dropped, one warning; recording took {queued_in:.2f} s")


@pytest.mark.fault("serving", "the request log's disk hangs (an ext4 file system frozen by fsfreeze) while requests "
                   "arrive", "recording never waits: past the queue records are dropped and counted; the queued ones "
                   "are written once the disk is back")
def test_a_hung_disk_never_blocks_a_request(tmp_path, observed):
    outputs = {"class_ids": np.zeros(1, np.int64)}
    pixels = {"pixels": np.zeros((1, 28, 28, 1), np.float32)}
    with freezable_disk(tmp_path) as disk:
        log = request_log.RequestLog(str(disk), queue_records=16)
        log.record("fashion", 1, "predict_pixels", pixels, outputs)
        written = lambda: [f for f in glob.glob(str(disk / "fashion" / "1" / "*")) if os.path.getsize(f)]  # noqa: E731
        wait_until(lambda: bool(written()))
        subprocess.run(["fsfreeze", "-f", str(disk)], check=True)
        try:  # were record() to wait for the disk, this loop would never end
            for _ in range(200):
                log.record("fashion", 1, "predict_pixels", pixels, outputs)
            dropped_while_hung = log.dropped
        finally:
            subprocess.run(["fsfreeze", "-u", str(disk)], check=True)
        log.close()
        kept = len(request_log.read(str(disk))[("fashion", 1)])
    assert dropped_while_hung >= 200 - 16 - 1  # all but the queue's 16 and the record in the writer's hands
    assert kept + log.dropped == 201 and kept >= 2
    observed(f"200 records while the disk hung: {dropped_while_hung} dropped at once; {kept} of 201 written after it "
             "came back")
