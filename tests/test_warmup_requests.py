"""Every pushed version carries warmup requests (TF Serving's assets.extra/tf_serving_warmup_requests), written by the
push check from the real eval examples it checked, one request per exported signature, which the server replays."""

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from conftest import versions
from cnnpipe.components.warmup_requests import EXAMPLES
from cnnpipe.core import names
from cnnpipe.serving import api, warmup
from cnnpipe.serving.servable import Servable


def pushed_version(pushed_run) -> str:
    return os.path.join(pushed_run.serving_base, versions(pushed_run.serving_base)[-1])


def test_the_pushed_version_holds_a_request_for_every_signature_it_exports(pushed_run):
    version = pushed_version(pushed_run)
    path = warmup.warmup_file(version)
    logs = [prediction_log_pb2.PredictionLog.FromString(record)
            for record in tf.compat.v1.io.tf_record_iterator(path)]
    exported = set(tf.saved_model.load(version).signatures)
    requested = {log.classify_log.request.model_spec.signature_name if log.HasField("classify_log")
                 else log.predict_log.request.model_spec.signature_name for log in logs}
    assert requested == exported and len(logs) == len(exported)
    for log in logs:
        if log.HasField("classify_log"):
            assert len(log.classify_log.request.input.example_list.examples) == EXAMPLES
            continue
        request = log.predict_log.request
        (tensor,) = request.inputs.values()
        batch = tf.make_ndarray(tensor)
        assert list(request.inputs) == [names.INPUTS[request.model_spec.signature_name]]
        assert len(batch) == (1 if request.model_spec.signature_name == names.PREDICT_PIXELS else EXAMPLES)
        if request.model_spec.signature_name == names.PREDICT_IMAGE:  # real eval images, PNG-encoded
            assert all(image.startswith(b"\x89PNG") for image in batch)


def test_the_server_replays_them_before_the_version_serves(pushed_run):
    version = pushed_version(pushed_run)
    servable = Servable(pushed_run.name, int(os.path.basename(version)), version)
    replayed = api.warm_up(servable, max_batch_images=1024)
    assert replayed == len(tf.saved_model.load(version).signatures)
    log = next(prediction_log_pb2.PredictionLog.FromString(record)
               for record in tf.compat.v1.io.tf_record_iterator(warmup.warmup_file(version))
               if prediction_log_pb2.PredictionLog.FromString(record).predict_log.request.model_spec.signature_name
               == names.PREDICT_IMAGE)
    answer = api.predict_response(servable, log.predict_log.request, 1024)
    probabilities = tf.make_ndarray(answer.outputs[names.PROBABILITIES])
    assert probabilities.shape == (EXAMPLES, len(pushed_run.class_names))
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
