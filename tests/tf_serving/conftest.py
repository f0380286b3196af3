"""`cnnpipe serve` over TF Serving's own test models, for the ports of its tests: the SavedModels of its testdata,
read in place from ../shared/tfserving_peer/testdata (never copied into the repo), and the models its Python test
builds, built here at run time. One server (`server`) serves them all under the names upstream's suites use; only
the cases about start-up run servers of their own (`serving`)."""

import contextlib
import os
import pathlib
import subprocess
import sys
from typing import Iterator, Optional

import grpc
import pytest
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import model_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

import conftest
from conftest import Server, running_server

TESTDATA = (pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "tfserving_peer" / "testdata").resolve()
MISSING_TESTDATA = f"TF Serving's test models are not at {TESTDATA} (see its PROVENANCE.txt)"
if os.environ.get("CI") == "true" and not TESTDATA.is_dir():  # CI has shared/ beside the clone: never skip there
    pytest.fail(MISSING_TESTDATA, pytrace=False)
HALF_PLUS_TWO = TESTDATA / "saved_model_half_plus_two_cpu"
HALF_PLUS_THREE = TESTDATA / "saved_model_half_plus_three"
HALF_PLUS_TWO_TF2 = TESTDATA / "saved_model_half_plus_two_tf2_cpu"
TWO_VERSIONS = TESTDATA / "saved_model_half_plus_two_2_versions"
COUNTER = TESTDATA / "saved_model_counter"

RPC_TIMEOUT = 20.0  # tensorflow_model_server_test.py's

# The names upstream's suites serve their models under, one each where two suites would collide:
# tensorflow_model_server_test.py serves saved_model_half_plus_two_cpu as "default" (and half_plus_two/half_plus_three
# from good_model_config.txt); its *Tf2 tests serve the TF2 model as "default" too, multi_inference_test.cc as
# "test_model": here it is TF2_MODEL for both.
TF2_MODEL = "half_plus_two_tf2"
# The *_impl_test.cc files serve TensorFlow's copy of half_plus_two (cc/saved_model/testdata/half_plus_two, version 123
# only) as "test_model". That copy is not in the testdata; saved_model_half_plus_two_cpu lacks its classify_x2_to_y3
# signature, so saved_model_half_plus_two_2_versions, the same half-plus-two model with the same six signatures,
# stands in, pinned to version 123.
TEST_MODEL = "test_model"
COUNTER_MODEL = "saved_model_counter"  # predict_impl_test.cc's counter model, there "test_model" too
# http_rest_api_handler_test.cc's model, also TensorFlow's copy there: the same stand-in, labelled Version_Label.
REST_MODEL = "saved_model_half_plus_two_2_versions"
VERSION_LABEL = "Version_Label"
STATUS_MODEL = "saved_model_half_plus_two_both_versions"  # get_model_status_impl_test.cc's, with 123 and 124


def model_version(base_path: pathlib.Path) -> int:
    """The test base's _GetModelVersion: the version of the one version folder under `base_path` (00000123 is 123)."""
    (folder,) = base_path.iterdir()
    return int(folder.name)


def add_model(config: model_server_config_pb2.ModelServerConfig, name: str, base_path: pathlib.Path,
              versions: tuple[int, ...] = (), labels: Optional[dict[str, int]] = None) -> None:
    """Lists a model in `config`: the latest version, or the `versions` given (`specific`), with version labels."""
    model = config.model_config_list.config.add(name=name, base_path=str(base_path), model_platform="tensorflow")
    if versions:
        model.model_version_policy.specific.versions.extend(versions)
    model.version_labels.update(labels or {})


def one_model(name: str, base_path: pathlib.Path) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    add_model(config, name, base_path)
    return config


def good_model_config() -> model_server_config_pb2.ModelServerConfig:
    """good_model_config.txt with its placeholders filled in, as upstream's __BuildModelConfigFile does."""
    text = (TESTDATA / "good_model_config.txt").read_text()
    text = text.replace("${TEST_HALF_PLUS_TWO_DIR}", str(HALF_PLUS_TWO))
    text = text.replace("${TEST_HALF_PLUS_THREE_DIR}", str(HALF_PLUS_THREE))
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def write_config(path: pathlib.Path, config: model_server_config_pb2.ModelServerConfig) -> pathlib.Path:
    path.write_text(text_format.MessageToString(config))
    return path


def serve_command(config_file: pathlib.Path, rest_port: int, grpc_port: int, *options: str) -> list[str]:
    """`cnnpipe serve` of the models `config_file` lists, on loopback ports."""
    return conftest.serve_command(rest_port, grpc_port, "--model-config", str(config_file), *options)


def serving(config_file: pathlib.Path, log_file: pathlib.Path, *options: str) -> contextlib.AbstractContextManager:
    """`cnnpipe serve --model-config config_file` in its own process, its output in `log_file`."""
    return running_server(None, "--model-config", str(config_file), *options, log_file=log_file)


def prediction_service(server: Server) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc))


def verify_predict_request(stub: prediction_service_pb2_grpc.PredictionServiceStub, expected_output: float,
                           expected_version: int, model_name: str = "default", specify_output: bool = True,
                           batch_input: bool = False, signature_name: str = "serving_default") -> None:
    """The test base's VerifyPredictRequest: Predict x = [2.0] (shape [1], or [1, 1] with `batch_input`), asking for
    output y or (not `specify_output`) for all outputs; y is one float, `expected_output`, and the model spec
    answered names the model, signature and version."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    x = request.inputs["x"]
    x.dtype = types_pb2.DT_FLOAT
    x.float_val.append(2.0)
    x.tensor_shape.dim.add(size=1)
    if batch_input:
        x.tensor_shape.dim.add(size=1)
    if specify_output:
        request.output_filter.append("y")
    result = stub.Predict(request, RPC_TIMEOUT)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert list(result.outputs["y"].float_val) == [expected_output]
    verify_model_spec(result.model_spec, model_name, signature_name, expected_version)


def verify_model_spec(spec: model_pb2.ModelSpec, name: str, signature_name: str, version: int) -> None:
    """The test base's _VerifyModelSpec: the model spec of an answer names this model, signature and version."""
    assert (spec.name, spec.signature_name, spec.version.value) == (name, signature_name, version)


def build_models(out_dir: pathlib.Path) -> None:
    """tensorflow_model_server_test.py's models (build_models.py), in a process of its own."""
    script = pathlib.Path(__file__).with_name("build_models.py")
    result = subprocess.run([sys.executable, str(script), str(out_dir)], capture_output=True, text=True, timeout=600)
    if result.returncode:
        pytest.fail(f"building the models failed ({result.returncode}):\n{result.stderr[-3000:]}")


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    """One `cnnpipe serve` for every case not about start-up, serving each suite's models under its names."""
    root = tmp_path_factory.mktemp("tf_serving")
    build_models(root / "built")
    config = good_model_config()  # half_plus_two and half_plus_three, for testGoodModelConfig
    add_model(config, "default", HALF_PLUS_TWO)
    add_model(config, TF2_MODEL, HALF_PLUS_TWO_TF2)
    add_model(config, TEST_MODEL, TWO_VERSIONS, versions=(123,))
    add_model(config, COUNTER_MODEL, COUNTER)
    add_model(config, REST_MODEL, TWO_VERSIONS, versions=(123,), labels={VERSION_LABEL: 123})
    add_model(config, STATUS_MODEL, TWO_VERSIONS, versions=(123, 124))
    for built in sorted((root / "built").iterdir()):  # each under its name in build_models.py
        add_model(config, built.name, built)
    with serving(write_config(root / "models.config", config), root / "server.log") as running:
        yield running


@pytest.fixture(scope="session")
def predictions(server) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service(server)


@pytest.fixture(scope="session")
def model_service(server) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.grpc))
