"""Every pushed version carries warmup requests (TF Serving's assets.extra/tf_serving_warmup_requests), written by the
push check from the real eval examples it checked: each exported signature at each warmup batch size, which the
server replays."""

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from conftest import versions
from cnnpipe.components.warmup_requests import BATCH_SIZES
from cnnpipe.core import names
from cnnpipe.serving import api, warmup
from cnnpipe.serving.servable import Servable


def pushed_version(pushed_run) -> str:
    return os.path.join(pushed_run.serving_base, versions(pushed_run.serving_base)[-1])


def test_the_pushed_version_holds_requests_for_every_signature_it_exports_at_each_batch_size(pushed_run):
    version = pushed_version(pushed_run)
    path = warmup.warmup_file(version)
    logs = [prediction_log_pb2.PredictionLog.FromString(record)
            for record in tf.compat.v1.io.tf_record_iterator(path)]
    exported = set(tf.saved_model.load(version).signatures)
    sizes = {}
    for log in logs:
        if log.HasField("classify_log"):
            request = log.classify_log.request
            size = len(request.input.example_list.examples)
        else:
            request = log.predict_log.request
            assert list(request.inputs) == [names.INPUTS[request.model_spec.signature_name]]
            batch = tf.make_ndarray(request.inputs[names.INPUTS[request.model_spec.signature_name]])
            size = len(batch)
            if request.model_spec.signature_name == names.PREDICT_IMAGE:  # real eval images, PNG-encoded
                assert all(image.startswith(b"\x89PNG") for image in batch)
        sizes.setdefault(request.model_spec.signature_name, []).append(size)
    assert set(sizes) == exported
    assert sizes == {name: [1] if name == names.PREDICT_PIXELS else list(BATCH_SIZES) for name in exported}


def test_the_server_replays_them_before_the_version_serves(pushed_run):
    version = pushed_version(pushed_run)
    servable = Servable(pushed_run.name, int(os.path.basename(version)), version)
    replayed = api.warm_up(servable, max_batch_images=1024)
    assert replayed == 1 + (len(tf.saved_model.load(version).signatures) - 1) * len(BATCH_SIZES)
    log = next(prediction_log_pb2.PredictionLog.FromString(record)
               for record in tf.compat.v1.io.tf_record_iterator(warmup.warmup_file(version))
               if prediction_log_pb2.PredictionLog.FromString(record).predict_log.request.model_spec.signature_name
               == names.PREDICT_IMAGE)
    answer = api.predict_response(servable, log.predict_log.request, 1024)
    probabilities = tf.make_ndarray(answer.outputs[names.PROBABILITIES])
    assert probabilities.shape == (BATCH_SIZES[0], len(pushed_run.class_names))
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
