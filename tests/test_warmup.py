"""Model warmup: a version's assets.extra/tf_serving_warmup_requests replayed at load, and the files TF Serving
refuses refused with its status codes and wordings."""

import os

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, inference_pb2, predict_pb2, prediction_log_pb2,
                                     regression_pb2)

from cnnpipe.serving import warmup
from cnnpipe.serving.warmup import WarmupError

PredictionLog = prediction_log_pb2.PredictionLog


def predict_log(index: int) -> PredictionLog:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "fashion", "predict_pixels"
    request.inputs["pixels"].CopyFrom(tf.make_tensor_proto([[float(index)] * 4]))
    return PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def mixed_logs() -> list[PredictionLog]:
    """One log of each kind the server replays."""
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "fashion"
    classify.input.example_list.examples.add().features.feature["x"].float_list.value.append(1.0)
    regress = regression_pb2.RegressionRequest()
    regress.input.CopyFrom(classify.input)
    multi = inference_pb2.MultiInferenceRequest(input=classify.input)
    multi.tasks.add().method_name = "tensorflow/serving/classify"
    return [predict_log(0), PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=classify)),
            PredictionLog(regress_log=prediction_log_pb2.RegressLog(request=regress)),
            PredictionLog(multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=multi))]


class Recorder:
    """A `run` that records the logs it is called with."""

    def __init__(self):
        self.calls: list[PredictionLog] = []

    def __call__(self, log: PredictionLog) -> None:
        self.calls.append(log)


def refusal(version_dir, code: grpc.StatusCode) -> tuple[WarmupError, Recorder]:
    run = Recorder()
    with pytest.raises(WarmupError) as caught:
        warmup.replay(str(version_dir), run)
    assert caught.value.code == code, caught.value.message
    return caught.value, run


def test_a_version_without_a_warmup_file_loads_without_warmup(tmp_path):
    run = Recorder()
    assert warmup.replay(str(tmp_path), run) == 0
    (tmp_path / "assets.extra").mkdir()
    assert warmup.replay(str(tmp_path), run) == 0
    assert run.calls == []


def test_write_puts_the_records_where_tf_serving_reads_them(tmp_path):
    logs = mixed_logs()
    path = warmup.write(str(tmp_path), logs)
    assert path == os.path.join(str(tmp_path), "assets.extra", "tf_serving_warmup_requests")
    assert [PredictionLog.FromString(record.numpy()) for record in tf.data.TFRecordDataset(path)] == logs


def test_each_record_is_run_the_given_number_of_times_in_file_order(tmp_path):
    logs = mixed_logs()
    warmup.write(str(tmp_path), logs)
    run = Recorder()
    assert warmup.replay(str(tmp_path), run, iterations=3) == 4
    assert run.calls == [log for log in logs for _ in range(3)]


def test_an_empty_warmup_file_is_no_warmup(tmp_path):
    warmup.write(str(tmp_path), [])
    run = Recorder()
    assert warmup.replay(str(tmp_path), run) == 0
    assert run.calls == []


def test_up_to_the_maximum_number_of_records_is_replayed(tmp_path):
    assert warmup.MAX_RECORDS == 1000
    warmup.write(str(tmp_path), [predict_log(i) for i in range(warmup.MAX_RECORDS)])
    run = Recorder()
    assert warmup.replay(str(tmp_path), run) == warmup.MAX_RECORDS
    assert len(run.calls) == warmup.MAX_RECORDS


def test_one_record_over_the_maximum_fails_the_load(tmp_path):
    path = warmup.write(str(tmp_path), [predict_log(i) for i in range(warmup.MAX_RECORDS + 1)])
    error, run = refusal(tmp_path, grpc.StatusCode.INVALID_ARGUMENT)
    assert error.message == f"Number of warmup records exceeds the maximum (1000) at {path}"
    assert len(run.calls) == warmup.MAX_RECORDS + 1  # TF Serving runs the record before counting it


def test_a_file_that_is_not_tfrecord_fails_the_load(tmp_path):
    path = warmup.write(str(tmp_path), [])
    with open(path, "wb") as file:
        file.write(b"these are not TFRecord bytes, nor PredictionLog ones")
    error, run = refusal(tmp_path, grpc.StatusCode.DATA_LOSS)
    assert error.message == (f"corrupted record at 0 (Is this even a TFRecord file?) (record 1 of {path}). "
                             "Please verify your warmup data is in TFRecord format.")
    assert run.calls == []


def test_a_truncated_record_fails_the_load_after_the_whole_ones_ran(tmp_path):
    logs = [predict_log(i) for i in range(3)]
    path = warmup.write(str(tmp_path), logs)
    with open(path, "rb+") as file:
        file.truncate(os.path.getsize(path) - 5)  # cuts into the last record's data
    error, run = refusal(tmp_path, grpc.StatusCode.DATA_LOSS)
    assert error.message.startswith("truncated record at ")
    assert f"(record 3 of {path})" in error.message
    assert error.message.endswith("Please verify your warmup data is in TFRecord format.")
    assert run.calls == logs[:2]


def test_a_record_that_is_not_a_prediction_log_fails_the_load(tmp_path):
    path = warmup.write(str(tmp_path), [predict_log(0)])
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(predict_log(0).SerializeToString())
        writer.write(b"malformed_record")
    error, run = refusal(tmp_path, grpc.StatusCode.INVALID_ARGUMENT)
    assert error.message == f"Failed to parse warmup record: record 2 (16 bytes) from {path}"
    assert run.calls == [predict_log(0)]


STREAMED = prediction_log_pb2.PredictStreamedLog(request=[predict_log(0).predict_log.request])


@pytest.mark.parametrize("log, field", [(PredictionLog(session_run_log=prediction_log_pb2.SessionRunLog()), 5),
                                        (PredictionLog(predict_streamed_log=STREAMED), 7)],
                         ids=["session_run", "predict_streamed"])
def test_a_log_type_the_server_does_not_replay_fails_the_load_before_it_runs(tmp_path, log, field):
    path = warmup.write(str(tmp_path), [predict_log(0), log, predict_log(1)])
    error, run = refusal(tmp_path, grpc.StatusCode.UNIMPLEMENTED)
    kind = log.WhichOneof("log_type")
    assert error.message == f"Unsupported log_type for warmup: {field} ({kind}, record 2 of {path})"
    assert run.calls == [predict_log(0)]


def test_a_record_without_a_log_type_is_read_but_not_run(tmp_path):
    warmup.write(str(tmp_path), [predict_log(0), PredictionLog(), predict_log(1)])
    run = Recorder()
    assert warmup.replay(str(tmp_path), run, iterations=2) == 3
    assert run.calls == [predict_log(0)] * 2 + [predict_log(1)] * 2


def test_a_failing_warmup_request_propagates_and_stops_the_replay(tmp_path):
    warmup.write(str(tmp_path), mixed_logs())
    failure = RuntimeError("the signature rejected the warmup request")
    calls = []

    def run(log: PredictionLog) -> None:
        calls.append(log)
        if log.HasField("classify_log"):
            raise failure

    with pytest.raises(RuntimeError) as caught:
        warmup.replay(str(tmp_path), run, iterations=2)
    assert caught.value is failure
    assert calls == mixed_logs()[:1] * 2 + mixed_logs()[1:2]
