"""TF Serving's test cases about starting its server (model config files, --monitoring_config_file,
--grpc_channel_arguments), each against a `cnnpipe serve` of its own."""

import shutil
import subprocess
import time

import pytest
import requests
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from cnnpipe.serving import warmup
from conftest import free_ports, wait_until

from .conftest import (
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    MISSING_TESTDATA,
    TESTDATA,
    add_model,
    model_version,
    one_model,
    prediction_service,
    serve_command,
    serving,
    verify_predict_request,
    write_config,
)

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason=MISSING_TESTDATA)

MONITORING_CONFIG = 'prometheus_config: {\n  enable: true,\n  path: "/monitoring/prometheus/metrics"\n}\n'  # upstream's


def test_bad_model_config():
    """tensorflow_model_server_test.py TensorflowModelServerTest.testBadModelConfig: the server does not start
    (upstream reads its stderr to the end) and says why on stderr."""
    result = subprocess.run(serve_command(TESTDATA / "bad_model_config.txt", *free_ports(2)), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in result.stderr


def available(server, name: str) -> bool:
    """Whether `name` has a version AVAILABLE (GET /v1/models/NAME)."""
    response = requests.get(f"{server.rest}/v1/models/{name}", timeout=30)
    return response.ok and any(status["state"] == "AVAILABLE" for status in response.json()["model_version_status"])


def test_model_config_reload(tmp_path):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testModelConfigReload: the config file rewritten
    to list half_plus_three instead of half_plus_two is served within upstream's 10 s (polled every 0.2 s here)."""
    config = write_config(tmp_path / "model_config.txt", one_model("half_plus_two", HALF_PLUS_TWO))
    with serving(config, tmp_path / "server.log") as server:
        stub = prediction_service(server)
        verify_predict_request(stub, model_name="half_plus_two", expected_output=3.0, specify_output=False,
                               expected_version=model_version(HALF_PLUS_TWO))
        write_config(config, one_model("half_plus_three", HALF_PLUS_THREE))
        wait_until(lambda: available(server, "half_plus_three"), seconds=10)
        verify_predict_request(stub, model_name="half_plus_three", expected_output=4.0, specify_output=False,
                               expected_version=model_version(HALF_PLUS_THREE))


def test_model_config_reload_with_zero_poll_period(tmp_path):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testModelConfigReloadWithZeroPollPeriod: with the
    config's poll period 0 the rewritten file is not read; half_plus_two is still served after more than a poll."""
    config = write_config(tmp_path / "model_config.txt", one_model("half_plus_two", HALF_PLUS_TWO))
    with serving(config, tmp_path / "server.log", "--model-config-poll-seconds", "0") as server:
        stub = prediction_service(server)
        verify_predict_request(stub, model_name="half_plus_two", expected_output=3.0, specify_output=False,
                               expected_version=model_version(HALF_PLUS_TWO))
        write_config(config, one_model("half_plus_three", HALF_PLUS_THREE))
        time.sleep(1)  # upstream's poll period + 1 s; versions are polled every 0.2 s meanwhile
        verify_predict_request(stub, model_name="half_plus_two", expected_output=3.0, specify_output=False,
                               expected_version=model_version(HALF_PLUS_TWO))
        assert not available(server, "half_plus_three")


def test_good_grpc_channel_args(tmp_path):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testGoodGrpcChannelArgs"""
    config = write_config(tmp_path / "model_config.txt", one_model("default", HALF_PLUS_TWO))
    arguments = "grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb"
    with serving(config, tmp_path / "server.log", "--grpc-channel-arguments", arguments) as server:
        verify_predict_request(prediction_service(server), expected_output=3.0, specify_output=False,
                               expected_version=model_version(HALF_PLUS_TWO))


def test_prometheus_endpoint(tmp_path):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testPrometheusEndpoint: with upstream's
    monitoring_config.txt, the metrics path answers with metric type information."""
    config = write_config(tmp_path / "model_config.txt", one_model("default", HALF_PLUS_TWO))
    monitoring = tmp_path / "monitoring_config.txt"
    monitoring.write_text(MONITORING_CONFIG)
    with serving(config, tmp_path / "server.log", "--monitoring-config-file", str(monitoring)) as server:
        response = requests.get(f"{server.rest}/monitoring/prometheus/metrics", timeout=30)
    assert response.status_code == 200
    assert "# TYPE" in response.text


def warmup_logs() -> list[prediction_log_pb2.PredictionLog]:
    """One request of each kind TF Serving replays, for half_plus_two served as "warm" (a MultiInference task needs
    the model's name, on TF Serving too)."""
    predict = predict_pb2.PredictRequest()
    predict.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0], [2.0]], tf.float32))
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.CopyFrom(classify.input)
    multi = inference_pb2.MultiInferenceRequest(input=classify.input)
    task = multi.tasks.add(method_name="tensorflow/serving/regress")
    task.model_spec.name, task.model_spec.signature_name = "warm", "regress_x_to_y"
    return [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=predict)),
            prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=classify)),
            prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(request=regress)),
            prediction_log_pb2.PredictionLog(multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=multi))]


def metric_samples(server) -> dict[str, float]:
    """The Prometheus endpoint's samples as printed (name{labels} → value), once a Prometheus parser has read the
    page."""
    text = requests.get(f"{server.rest}/monitoring/prometheus/metrics", timeout=30).text
    assert list(text_string_to_metric_families(text))
    return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_warmup_requests_are_replayed_before_a_version_serves_and_the_metrics_count_traffic(tmp_path):
    """A version with TF Serving's warmup file (a predict, classify, regress and multi-inference record) is served
    after its 4 records were replayed twice; one whose warmup request fails is END with the error, the model's other
    version serving. After traffic the Prometheus endpoint counts the requests by model and status and times the
    successful ones by API and entry point."""
    warm = tmp_path / "warm"
    shutil.copytree(HALF_PLUS_TWO / "00000123", warm / "1")
    warmup.write(str(warm / "1"), warmup_logs())
    shutil.copytree(HALF_PLUS_TWO / "00000123", warm / "2")
    failing = predict_pb2.PredictRequest()
    failing.model_spec.signature_name = "no_such_signature"
    warmup.write(str(warm / "2"), [prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=failing))])
    config = model_server_config_pb2.ModelServerConfig()
    add_model(config, "warm", warm, versions=(1, 2))
    config = write_config(tmp_path / "model_config.txt", config)
    monitoring = tmp_path / "monitoring_config.txt"
    monitoring.write_text(MONITORING_CONFIG)
    with serving(config, tmp_path / "server.log", "--monitoring-config-file", str(monitoring),
                 "--warmup-iterations", "2") as server:
        status = {entry["version"]: entry for entry in
                  requests.get(f"{server.rest}/v1/models/warm", timeout=30).json()["model_version_status"]}
        for _ in range(3):
            assert requests.post(f"{server.rest}/v1/models/warm/versions/1:predict", json={"instances": [1.0]},
                                 timeout=30).json() == {"predictions": [2.5]}
        assert requests.post(f"{server.rest}/v1/models/warm/versions/1:predict", json={"instances": ["x"]},
                             timeout=30).status_code == 400
        stub = prediction_service(server)
        request = warmup_logs()[1].classify_log.request
        request.model_spec.name = "warm"
        assert stub.Classify(request, timeout=30).result.classifications[0].classes[0].score == 3.0
        samples = metric_samples(server)
        log = (tmp_path / "server.log").read_text()
    assert status["1"]["state"] == "AVAILABLE"
    assert status["2"]["state"] == "END" and "no_such_signature" in status["2"]["status"]["error_message"], log
    warmed, failed = warm / "1", warm / "2"
    assert samples[f':tensorflow:serving:model_warmup_records_read{{model_path="{warmed}",status="OK"}}'] == 4
    # the status, 3 predictions over REST (TF Serving counts every REST request), 1 Classify over gRPC
    assert samples[':tensorflow:serving:request_count{model_name="warm",status="OK"}'] == 5
    assert samples[':tensorflow:serving:request_count{model_name="warm",status="INVALID_ARGUMENT"}'] == 1
    latency = ":tensorflow:serving:request_latency_count"
    assert samples[f'{latency}{{model_name="warm",API="predict",entrypoint="REST"}}'] == 3
    assert samples[f'{latency}{{model_name="warm",API="Classify",entrypoint="GRPC"}}'] == 1
    assert samples[':tensorflow:serving:model_version_state{model_name="warm",version="1",state="AVAILABLE"}'] == 1
    assert samples[f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{failed}",status="fail"}}'] >= 1
