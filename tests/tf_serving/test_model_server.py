"""TF Serving's own test cases, over the wire against one `cnnpipe serve` (conftest.py's `server`): gRPC through
tensorflow_serving.apis' stubs, REST through `requests`. Each test names the upstream test it ports; what an
upstream test checks in-process only (thread pools, *WithModelSpec overrides, the path regex object) is left out,
and its wire-visible part is kept."""

import json
from typing import Callable, NamedTuple, Optional

import grpc
import pytest
import requests
from google.protobuf import text_format
from google.protobuf.message import Message
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from .conftest import (
    COUNTER_MODEL,
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    HALF_PLUS_TWO_TF2,
    MISSING_TESTDATA,
    REST_MODEL,
    RPC_TIMEOUT,
    STATUS_MODEL,
    TEST_MODEL,
    TESTDATA,
    TF2_MODEL,
    TWO_VERSIONS,
    VERSION_LABEL,
    model_version,
    verify_model_spec,
    verify_predict_request,
)

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason=MISSING_TESTDATA)

OK, INVALID_ARGUMENT, NOT_FOUND = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
REGRESS, CLASSIFY, PREDICT = "tensorflow/serving/regress", "tensorflow/serving/classify", "tensorflow/serving/predict"
HTTP_TIMEOUT = 30


def parse(text: str, message_type: type[Message]) -> Message:
    """A message from its text format, as upstream's test_util::CreateProto."""
    return text_format.Parse(text, message_type())


def as_text(message: Message) -> str:
    """What upstream's EqualsProto compares: the text format (a field set to an empty message shows as such)."""
    return text_format.MessageToString(message)


def rpc_code(call: Callable, request: Message) -> grpc.StatusCode:
    """The status a gRPC call answers `request` with: OK, or the error's code."""
    try:
        call(request, RPC_TIMEOUT)
    except grpc.RpcError as error:
        return error.code()
    return OK


def assert_rpc_error(call: Callable, request: Message, code: grpc.StatusCode, message: str) -> None:
    """The call fails with `code`, its details containing `message` (upstream's ExpectStatusError)."""
    with pytest.raises(grpc.RpcError) as raised:
        call(request, RPC_TIMEOUT)
    assert (raised.value.code(), message in raised.value.details()) == (code, True), raised.value.details()


def call_rest(server, path: str, body: Optional[dict] = None):
    """The test base's CallREST: POSTs `body` as JSON (GETs without one); the answer's JSON, which must come with
    200 (urlopen raises on anything else)."""
    url = f"{server.rest}{path}"
    response = requests.post(url, json=body, timeout=HTTP_TIMEOUT) if body is not None else \
        requests.get(url, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def sorted_object(obj):
    """The test base's SortedObject: objects as sorted (key, value) lists and lists sorted, recursively."""
    if isinstance(obj, dict):
        return sorted((key, sorted_object(value)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return sorted(sorted_object(item) for item in obj)
    return obj


# tensorflow_model_server_test.py

def test_get_model_status(model_service):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testGetModelStatus"""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    result = model_service.GetModelStatus(request, RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0  # OK


def test_get_model_metadata(predictions):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testGetModelMetadata"""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    result = predictions.GetModelMetadata(request, RPC_TIMEOUT)
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == model_version(HALF_PLUS_TWO)
    assert len(result.metadata) == 1
    assert "signature_def" in result.metadata


TF1_AND_TF2 = pytest.mark.parametrize("model_name, base_path", [("default", HALF_PLUS_TWO),
                                                                 (TF2_MODEL, HALF_PLUS_TWO_TF2)], ids=["TF1", "TF2"])


def example_x(request: Message, x: float) -> None:
    """Adds an example with feature x = [x] to a request's input."""
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)


@TF1_AND_TF2
def test_classify(predictions, model_name, base_path):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testClassify (TF1) and testClassifyTf2 (TF2)"""
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = "classify_x_to_y"
    example_x(request, 2.0)
    result = predictions.Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    verify_model_spec(result.model_spec, model_name, "classify_x_to_y", model_version(base_path))


@TF1_AND_TF2
def test_regress(predictions, model_name, base_path):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testRegress (TF1) and testRegressTf2 (TF2)"""
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = "regress_x_to_y"
    example_x(request, 2.0)
    result = predictions.Regress(request, RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    verify_model_spec(result.model_spec, model_name, "regress_x_to_y", model_version(base_path))


@TF1_AND_TF2
def test_multi_inference(predictions, model_name, base_path):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testMultiInference (TF1) and
    testMultiInferenceTf2 (TF2)"""
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", REGRESS), ("classify_x_to_y", CLASSIFY)):
        task = request.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = model_name, signature
    example_x(request, 2.0)
    result = predictions.MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for answer, task in zip(result.results, request.tasks):
        verify_model_spec(answer.model_spec, task.model_spec.name, task.model_spec.signature_name,
                          model_version(base_path))


def test_predict_saved_model(predictions):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testPredictSavedModel"""
    version = model_version(HALF_PLUS_TWO)
    verify_predict_request(predictions, expected_output=3.0, expected_version=version)
    verify_predict_request(predictions, expected_output=3.0, specify_output=False, expected_version=version)


def test_good_model_config(predictions):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testGoodModelConfig: the shared server's config
    holds good_model_config.txt's two models."""
    for name, output, base_path in (("half_plus_two", 3.0, HALF_PLUS_TWO), ("half_plus_three", 4.0, HALF_PLUS_THREE)):
        verify_predict_request(predictions, model_name=name, expected_output=output,
                               expected_version=model_version(base_path))
        verify_predict_request(predictions, model_name=name, expected_output=output, specify_output=False,
                               expected_version=model_version(base_path))


def test_classify_rest(server):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testClassifyREST"""
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert call_rest(server, "/v1/models/default:classify", body) == {"results": [[["", 3.0]]]}


def test_regress_rest(server):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testRegressREST"""
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert call_rest(server, "/v1/models/default:regress", body) == {"results": [3.0]}


def test_predict_rest(server):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testPredictREST"""
    answer = call_rest(server, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]})
    assert answer == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(server):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testPredictColumnarREST"""
    assert call_rest(server, "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}) == {"outputs": [3.0, 3.5, 4.0]}


AVAILABLE_123 = {"model_version_status": [
    {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def test_get_status_rest(server):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testGetStatusREST"""
    assert call_rest(server, "/v1/models/default") == AVAILABLE_123


def test_get_model_metadata_rest(server):
    """tensorflow_model_server_test.py TensorflowModelServerTest.testGetModelMetadataREST (compared sorted, as
    upstream does)"""
    expected = json.loads((TESTDATA / "half_plus_two_model_metadata.json").read_text())
    assert sorted_object(call_rest(server, "/v1/models/default/metadata")) == sorted_object(expected)


def test_tf_saved_model_save(predictions):
    """tensorflow_model_server_test.py TensorflowModelServerTest.test_tf_saved_model_save"""
    verify_predict_request(predictions, model_name="tf_saved_model_save", expected_output=12.0, specify_output=False,
                           expected_version=123)


def test_tf_saved_model_save_multiple_signatures(predictions):
    """tensorflow_model_server_test.py TensorflowModelServerTest.test_tf_saved_model_save_multiple_signatures"""
    name = "tf_saved_model_save_multiple_signatures"
    verify_predict_request(predictions, model_name=name, expected_output=2.0, expected_version=123,
                           signature_name="custom_signature_key")
    verify_predict_request(predictions, model_name=name, expected_output=1.0, expected_version=123)


@pytest.mark.parametrize("name", ["keras_sequential_saved_model_save", "distrat_keras_sequential_saved_model_save"])
def test_sequential_keras_saved_model_save(predictions, name):
    """tensorflow_model_server_test.py TensorflowModelServerTest.test_sequential_keras_saved_model_save and
    test_distrat_sequential_keras_saved_model_save (the model built under a MirroredStrategy on two CPUs)"""
    verify_predict_request(predictions, model_name=name, batch_input=True, specify_output=False, expected_output=2.0,
                           expected_version=123)


# http_rest_api_handler_test.cc: REST_MODEL is version 123 of half_plus_two, labelled Version_Label

def test_path_regex_api_path(server):
    """http_rest_api_handler_test.cc HttpRestApiHandlerTest.kPathRegex: /v1/models is the API's path (the regex
    object itself is in-process): answered by the API, which wants a model name."""
    response = requests.get(f"{server.rest}/v1/models", timeout=HTTP_TIMEOUT)
    assert response.status_code == 400
    assert "Missing model name" in response.json()["error"]


@pytest.mark.parametrize("path", ["/statuspage", "/index"])
def test_path_regex_other_paths(server, path):
    """http_rest_api_handler_test.cc HttpRestApiHandlerTest.kPathRegex: paths outside the API are not found."""
    assert requests.get(f"{server.rest}{path}", timeout=HTTP_TIMEOUT).status_code == 404


MALFORMED = "Malformed request"
UNSUPPORTED_API_CALLS = [
    ("GET", "/v1/foo", MALFORMED),
    ("POST", "/v1/foo", MALFORMED),
    ("GET", "/v1/models", "Missing model name"),
    ("GET", "/v1/models/debug/model_name", MALFORMED),
    ("POST", "/v1/models", MALFORMED),
    ("GET", "/v1/models/foo:predict", MALFORMED),
    ("GET", "/v1/models/foo/version/50:predict", MALFORMED),
    ("POST", "/v1/models/foo/version/50:regress", MALFORMED),
    ("POST", "/v1/models/foo/versions/HELLO:regress", MALFORMED),
    ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "Failed to convert version"),  # uint64's max
    ("POST", "/v1/models/foo/metadata", MALFORMED),
    ("POST", "/v1/models/foo/label/some_label:regress", MALFORMED),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", MALFORMED),
    ("POST", "/v1/models/foo/versions/some_label:regress", MALFORMED),
]


@pytest.mark.parametrize("method, path, message", UNSUPPORTED_API_CALLS,
                         ids=[f"{method} {path}" for method, path, _ in UNSUPPORTED_API_CALLS])
def test_unsupported_api_calls(server, method, path, message):
    """http_rest_api_handler_test.cc HttpRestApiHandlerTest.UnsupportedApiCalls: INVALID_ARGUMENT, so 400."""
    response = requests.request(method, f"{server.rest}{path}", data="", timeout=HTTP_TIMEOUT)
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize("path", ["/v1/models/foo:predict", "/v1/models/foo/versions/50:predict",
                                  f"/v1/models/{REST_MODEL}99:predict"])  # upstream's path, without /versions/
def test_predict_model_name_version_errors(server, path):
    """http_rest_api_handler_test.cc HttpRestApiHandlerTest.PredictModelNameVersionErrors: NOT_FOUND, so 404."""
    response = requests.post(f"{server.rest}{path}", data='{ "instances": [1] }', timeout=HTTP_TIMEOUT)
    assert response.status_code == 404


PREDICT_REQUEST_ERRORS = [
    pytest.param(":predict", "", "JSON Parse error: The document is empty", id="empty document"),
    pytest.param(":predict", "instances = [1, 2]", "JSON Parse error: Invalid value", id="badly formatted JSON"),
    pytest.param(":predict", '{ "instances": ["x", "y"] }', "not of expected type: float", id="incorrect type"),
    pytest.param("/labels/Version_Nonexistent:predict", '{ "instances": ["x", "y"] }',
                 "Unrecognized servable version label", id="nonexistent version label"),
    pytest.param(":predict", '{ "signature_name": 100 }', "'signature_name' key must be a string value.",
                 id="incorrect signature_name type"),
]


@pytest.mark.parametrize("where, body, message", PREDICT_REQUEST_ERRORS)
def test_predict_request_errors(server, where, body, message):
    """http_rest_api_handler_test.cc HttpRestApiHandlerTest.PredictRequestErrors: INVALID_ARGUMENT, so 400."""
    response = requests.post(f"{server.rest}/v1/models/{REST_MODEL}{where}", data=body, timeout=HTTP_TIMEOUT)
    assert response.status_code == 400
    assert message in response.json()["error"]


def assert_json_answer(response: requests.Response, expected) -> None:
    """200, Content-Type application/json (the one header upstream's handler sets) and the JSON expected."""
    assert (response.status_code, response.headers["Content-Type"]) == (200, "application/json"), response.text
    assert response.json() == expected


LATEST, VERSION_123, LABELLED = "", "/versions/123", f"/labels/{VERSION_LABEL}"


@pytest.mark.parametrize("where, body, expected", [
    pytest.param(LATEST, '{"instances": [[1.0, 2.0], [3.0, 4.0]]}', {"predictions": [[2.5, 3.0], [3.5, 4.0]]},
                 id="latest"),
    pytest.param(VERSION_123, '{"instances": [1.0, 2.0]}', {"predictions": [2.5, 3.0]}, id="version"),
    pytest.param(LABELLED, '{"instances": [1.0, 2.0]}', {"predictions": [2.5, 3.0]}, id="label"),
    pytest.param(VERSION_123, '{"signature_name": "serving_default", "instances": [3.0, 4.0]}',
                 {"predictions": [3.5, 4.0]}, id="version, signature_name"),
    pytest.param(VERSION_123, '{"signature_name": "serving_default", "inputs": [3.0, 4.0]}', {"outputs": [3.5, 4.0]},
                 id="version, signature_name, columnar"),
])
def test_rest_predict(server, where, body, expected):
    """http_rest_api_handler_test.cc HttpRestApiHandlerTest.Predict"""
    assert_json_answer(requests.post(f"{server.rest}/v1/models/{REST_MODEL}{where}:predict", data=body,
                                     timeout=HTTP_TIMEOUT), expected)


@pytest.mark.parametrize("where", [LATEST, VERSION_123, LABELLED], ids=["latest", "version", "label"])
def test_rest_regress(server, where):
    """http_rest_api_handler_test.cc HttpRestApiHandlerTest.Regress"""
    body = '{"signature_name": "regress_x_to_y", "examples": [ { "x": 80.0 } ] }'
    assert_json_answer(requests.post(f"{server.rest}/v1/models/{REST_MODEL}{where}:regress", data=body,
                                     timeout=HTTP_TIMEOUT), {"results": [42]})


@pytest.mark.parametrize("where, x, score", [(LATEST, 20.0, 12), (LABELLED, 10.0, 7)], ids=["latest", "label"])
def test_rest_classify(server, where, x, score):
    """http_rest_api_handler_test.cc HttpRestApiHandlerTest.Classify"""
    body = f'{{"signature_name": "classify_x_to_y", "examples": [ {{ "x": {x} }} ] }}'
    assert_json_answer(requests.post(f"{server.rest}/v1/models/{REST_MODEL}{where}:classify", data=body,
                                     timeout=HTTP_TIMEOUT), {"results": [[["", score]]]})


@pytest.mark.parametrize("where", [LATEST, VERSION_123, LABELLED], ids=["all versions", "version", "label"])
def test_rest_get_status(server, where):
    """http_rest_api_handler_test.cc HttpRestApiHandlerTest.GetStatus"""
    assert_json_answer(requests.get(f"{server.rest}/v1/models/{REST_MODEL}{where}", timeout=HTTP_TIMEOUT),
                       AVAILABLE_123)


def test_rest_get_model_metadata(server):
    """http_rest_api_handler_test.cc HttpRestApiHandlerTest.GetModelMetadata"""
    expected = json.loads((TESTDATA / "saved_model_half_plus_two_2_versions_metadata.json").read_text())
    assert_json_answer(requests.get(f"{server.rest}/v1/models/{REST_MODEL}/metadata", timeout=HTTP_TIMEOUT), expected)


# predict_impl_test.cc: TEST_MODEL is half_plus_two at version 123 (conftest.py), COUNTER_MODEL the counter

X_IS_2 = 'inputs { key: "x" value { dtype: DT_FLOAT float_val: 2 } }'


def predict_request(model: str = TEST_MODEL, fields: str = "") -> predict_pb2.PredictRequest:
    """A PredictRequest for version 123 of `model`, with more `fields` in text format."""
    return parse(f'model_spec {{ name: "{model}" version {{ value: 123 }} }} {fields}', predict_pb2.PredictRequest)


def predict_response(signature: str, output: str, value: float,
                     model: str = TEST_MODEL) -> predict_pb2.PredictResponse:
    """The answer of version 123 of `model`'s `signature`: one scalar float output."""
    return parse(f'model_spec {{ name: "{model}" version {{ value: 123 }} signature_name: "{signature}" }} '
                 f'outputs {{ key: "{output}" value {{ dtype: DT_FLOAT tensor_shape {{ }} float_val: {value} }} }}',
                 predict_pb2.PredictResponse)


def test_predict_missing_or_empty_model_spec(predictions):
    """predict_impl_test.cc PredictImplTest.MissingOrEmptyModelSpec"""
    request = predict_pb2.PredictRequest()
    assert rpc_code(predictions.Predict, request) == INVALID_ARGUMENT
    request.model_spec.SetInParent()  # a model spec without a name
    assert rpc_code(predictions.Predict, request) == INVALID_ARGUMENT
    request.model_spec.name = "test"
    assert rpc_code(predictions.Predict, request) == NOT_FOUND


def test_predict_empty_input_list(predictions):
    """predict_impl_test.cc PredictImplTest.EmptyInputList"""
    assert rpc_code(predictions.Predict, predict_request()) == INVALID_ARGUMENT


def test_predict_input_tensors_dont_match_model_spec_inputs(predictions):
    """predict_impl_test.cc PredictImplTest.InputTensorsDontMatchModelSpecInputs"""
    request = predict_request(fields='inputs { key: "key" value { dtype: DT_STRING tensor_shape { dim { size: 1 } } '
                                     'string_val: "any_key" } }')
    assert rpc_code(predictions.Predict, request) == INVALID_ARGUMENT


def test_predict_output_filters_dont_match_model_spec_outputs(predictions):
    """predict_impl_test.cc PredictImplTest.OutputFiltersDontMatchModelSpecOutputs"""
    request = predict_request(fields=X_IS_2 + ' output_filter: "output_filter"')
    assert rpc_code(predictions.Predict, request) == INVALID_ARGUMENT
    request.output_filter[:] = ["y"]
    assert rpc_code(predictions.Predict, request) == OK
    request.output_filter.append("y")  # twice
    assert rpc_code(predictions.Predict, request) == INVALID_ARGUMENT


def test_predict_input_tensors_have_wrong_type(predictions):
    """predict_impl_test.cc PredictImplTest.InputTensorsHaveWrongType"""
    request = predict_request(fields='inputs { key: "x" value { dtype: DT_STRING tensor_shape { dim { size: 1 } } '
                                     'string_val: "any_key" } } output_filter: "y"')
    assert rpc_code(predictions.Predict, request) == INVALID_ARGUMENT


def test_prediction_success(predictions):
    """predict_impl_test.cc PredictImplTest.PredictionSuccess, and ThreadPoolFactory's request (the same; counting
    what ran on the thread pools handed in is in-process only)"""
    answer = predictions.Predict(predict_request(fields=X_IS_2), RPC_TIMEOUT)
    assert as_text(answer) == as_text(predict_response("serving_default", "y", 3))


@pytest.mark.parametrize("signature, output", [("regress_x2_to_y3", "outputs"), ("classify_x2_to_y3", "scores")],
                         ids=["PredictionWithNamedRegressionSignature", "PredictionWithNamedClassificationSignature"])
def test_prediction_with_named_signature(predictions, signature, output):
    """predict_impl_test.cc PredictImplTest.PredictionWithNamedRegressionSignature and
    PredictionWithNamedClassificationSignature: Predict runs regress and classify signatures too (y3 = x/2 + 3)."""
    request = predict_request(fields='inputs { key: "inputs" value { dtype: DT_FLOAT float_val: 2 } }')
    request.model_spec.signature_name = signature
    assert as_text(predictions.Predict(request, RPC_TIMEOUT)) == as_text(predict_response(signature, output, 4))


def test_prediction_with_customized_signatures(predictions):
    """predict_impl_test.cc PredictImplTest.PredictionWithCustomizedSignatures: the counter model's signatures
    get_counter, incr_counter, reset_counter, incr_counter (output filtered) and incr_counter_by(3), in order."""
    request = predict_request(COUNTER_MODEL)

    def answers(signature: str, value: float) -> None:
        request.model_spec.signature_name = signature
        expected = predict_response(signature, "output", value, COUNTER_MODEL)
        assert as_text(predictions.Predict(request, RPC_TIMEOUT)) == as_text(expected)

    answers("get_counter", 0)
    answers("incr_counter", 1)
    answers("reset_counter", 0)
    request.output_filter.append("output")
    answers("incr_counter", 1)
    del request.output_filter[:]
    request.inputs["delta"].CopyFrom(parse("dtype: DT_FLOAT float_val: 3", tensor_pb2.TensorProto))
    answers("incr_counter_by", 4)


# get_model_metadata_impl_test.cc (instantiated upstream for SavedModel only, as TF Serving's OSS build runs it)

def metadata_request(fields: str = "") -> get_model_metadata_pb2.GetModelMetadataRequest:
    return parse(fields, get_model_metadata_pb2.GetModelMetadataRequest)


def test_metadata_empty_or_invalid_metadata_field_list(predictions):
    """get_model_metadata_impl_test.cc GetModelMetadataImplTest.EmptyOrInvalidMetadataFieldList"""
    request = metadata_request()
    assert rpc_code(predictions.GetModelMetadata, request) == INVALID_ARGUMENT
    request.metadata_field.append("some_stuff")
    assert rpc_code(predictions.GetModelMetadata, request) == INVALID_ARGUMENT


def test_metadata_missing_or_empty_model_spec(predictions):
    """get_model_metadata_impl_test.cc GetModelMetadataImplTest.MissingOrEmptyModelSpec"""
    request = metadata_request('metadata_field: "signature_def"')
    assert rpc_code(predictions.GetModelMetadata, request) == INVALID_ARGUMENT
    request.model_spec.SetInParent()  # a model spec without a name
    assert rpc_code(predictions.GetModelMetadata, request) == INVALID_ARGUMENT
    request.model_spec.name = "test"
    assert rpc_code(predictions.GetModelMetadata, request) == NOT_FOUND


def test_metadata_returns_signatures_for_valid_model(predictions):
    """get_model_metadata_impl_test.cc GetModelMetadataImplTest.ReturnsSignaturesForValidModel: the signature defs
    of the SavedModel served"""
    request = metadata_request(f'model_spec {{ name: "{TEST_MODEL}" version {{ value: 123 }} }} '
                               'metadata_field: "signature_def"')
    response = predictions.GetModelMetadata(request, RPC_TIMEOUT)
    assert as_text(response.model_spec) == as_text(request.model_spec)
    assert len(response.metadata) == 1
    received = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(received)
    saved_model = saved_model_pb2.SavedModel.FromString((TWO_VERSIONS / "00000123" / "saved_model.pb").read_bytes())
    expected = saved_model.meta_graphs[0].signature_def
    assert len(received.signature_def) == len(expected)
    for name in ("regress_x_to_y", "serving_default"):
        assert as_text(received.signature_def[name]) == as_text(expected[name])


# classification_service_test.cc and regression_service_test.cc: the same cases for Classify and Regress

class Service(NamedTuple):
    method: str
    request_type: type[Message]
    response_type: type[Message]
    signature: str
    result: str  # the result of x = 80 in text format


SERVICES = [
    pytest.param(Service("Classify", classification_pb2.ClassificationRequest,
                         classification_pb2.ClassificationResponse, "classify_x_to_y",
                         "classifications { classes { score: 42 } }"), id="Classify"),
    pytest.param(Service("Regress", regression_pb2.RegressionRequest, regression_pb2.RegressionResponse,
                         "regress_x_to_y", "regressions { value: 42 }"), id="Regress"),
]
EXAMPLE = ('input { example_list { examples { features { '
           'feature { key: "x" value { float_list { value: [ 80.0 ] } } } '
           'feature { key: "locale" value { bytes_list { value: [ "pt_BR" ] } } } '
           'feature { key: "age" value { float_list { value: [ 19.0 ] } } } } } } }')


@pytest.mark.parametrize("service", SERVICES)
def test_service_invalid_model_spec(predictions, service):
    """classification_service_test.cc ClassificationServiceTest.InvalidModelSpec and regression_service_test.cc
    RegressionServiceTest.InvalidModelSpec"""
    call, request = getattr(predictions, service.method), service.request_type()
    assert rpc_code(call, request) == INVALID_ARGUMENT
    request.model_spec.SetInParent()  # a model spec without a name
    assert rpc_code(call, request) == INVALID_ARGUMENT
    request.model_spec.name = "foo"
    assert rpc_code(call, request) == NOT_FOUND


@pytest.mark.parametrize("service", SERVICES)
def test_service_invalid_signature(predictions, service):
    """classification_service_test.cc ClassificationServiceTest.InvalidSignature and regression_service_test.cc
    RegressionServiceTest.InvalidSignature"""
    request = parse(f'model_spec {{ name: "{TEST_MODEL}" signature_name: "invalid_signature_name" }}',
                    service.request_type)
    assert rpc_code(getattr(predictions, service.method), request) == INVALID_ARGUMENT


@pytest.mark.parametrize("service", SERVICES)
def test_service_success(predictions, service):
    """classification_service_test.cc ClassificationServiceTest.ClassificationSuccess and regression_service_test.cc
    RegressionServiceTest.RegressionSuccess, and both ThreadPoolOptions' requests (the same; counting what ran on the
    thread pools handed in is in-process only)"""
    request = parse(f'model_spec {{ name: "{TEST_MODEL}" signature_name: "{service.signature}" }} {EXAMPLE}',
                    service.request_type)
    expected = parse(f'result {{ {service.result} }} model_spec {{ name: "{TEST_MODEL}" '
                     f'signature_name: "{service.signature}" version {{ value: 123 }} }}', service.response_type)
    assert as_text(getattr(predictions, service.method)(request, RPC_TIMEOUT)) == as_text(expected)


# multi_inference_test.cc: a typed test, for the TF1 model (TEST_MODEL) and the TF2 one. Upstream runs each request
# through TensorFlowMultiInferenceRunner::Infer and RunMultiInference in-process, with version 1 handed in; over the
# wire it is the one MultiInference call, answered with the version served, 123.

TF1_OR_TF2 = pytest.mark.parametrize("model", [TEST_MODEL, TF2_MODEL], ids=["TF1", "TF2"])


def inference_request(model: str, *tasks: tuple[str, str], x: Optional[float] = 2.0) -> Message:
    """A MultiInferenceRequest of (signature, method) tasks on `model`, with one example x = [x] (none for None)."""
    request = inference_pb2.MultiInferenceRequest()
    if x is not None:
        example_x(request, x)
    for signature, method in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = model, signature
    return request


def inference_response(model: str, *results: tuple[str, str]) -> Message:
    """The answer with a result (in text format) for each signature, from version 123."""
    return parse(" ".join(f'results {{ model_spec {{ name: "{model}" signature_name: "{signature}" '
                          f'version {{ value: 123 }} }} {result} }}' for signature, result in results),
                 inference_pb2.MultiInferenceResponse)


@TF1_OR_TF2
def test_multi_inference_missing_input(predictions, model):
    """multi_inference_test.cc MultiInferenceTest.MissingInputTest"""
    request = inference_request(model, ("regress_x_to_y", REGRESS), x=None)
    assert_rpc_error(predictions.MultiInference, request, INVALID_ARGUMENT, "Input is empty")


@TF1_OR_TF2
def test_multi_inference_undefined_signature(predictions, model):
    """multi_inference_test.cc MultiInferenceTest.UndefinedSignatureTest"""
    request = inference_request(model, ("ThisSignatureDoesNotExist", REGRESS))
    assert_rpc_error(predictions.MultiInference, request, INVALID_ARGUMENT, "signature not found")


@TF1_OR_TF2
def test_multi_inference_inconsistent_model_specs(predictions, model):
    """multi_inference_test.cc MultiInferenceTest.InconsistentModelSpecsInRequestTest"""
    request = inference_request(model, ("regress_x_to_y", REGRESS))
    task = request.tasks.add(method_name=REGRESS)
    task.model_spec.name, task.model_spec.signature_name = "ModelDoesNotExist", "regress_x_to_y"
    assert_rpc_error(predictions.MultiInference, request, INVALID_ARGUMENT, "must access the same model name")


@TF1_OR_TF2
def test_multi_inference_evaluate_duplicate_signatures(predictions, model):
    """multi_inference_test.cc MultiInferenceTest.EvaluateDuplicateSignaturesTest"""
    request = inference_request(model, ("regress_x_to_y", REGRESS), ("regress_x_to_y", REGRESS))
    assert_rpc_error(predictions.MultiInference, request, INVALID_ARGUMENT,
                     "Duplicate evaluation of signature: regress_x_to_y")


@TF1_OR_TF2
def test_multi_inference_unsupported_signature_type(predictions, model):
    """multi_inference_test.cc MultiInferenceTest.UsupportedSignatureTypeTest"""
    request = inference_request(model, ("serving_default", PREDICT))
    assert_rpc_error(predictions.MultiInference, request, grpc.StatusCode.UNIMPLEMENTED, "Unsupported signature")


@TF1_OR_TF2
def test_multi_inference_valid_single_signature(predictions, model):
    """multi_inference_test.cc MultiInferenceTest.ValidSingleSignatureTest, and ThreadPoolOptions' request (the
    same; counting what ran on the thread pools handed in is in-process only)"""
    answer = predictions.MultiInference(inference_request(model, ("regress_x_to_y", REGRESS)), RPC_TIMEOUT)
    expected = inference_response(model, ("regress_x_to_y", "regression_result { regressions { value: 3 } }"))
    assert as_text(answer) == as_text(expected)


@TF1_OR_TF2
def test_multi_inference_multiple_valid_regress_signatures(predictions, model):
    """multi_inference_test.cc MultiInferenceTest.MultipleValidRegressSignaturesTest: y = x/2 + 2, y2 = x/2 + 3"""
    request = inference_request(model, ("regress_x_to_y", REGRESS), ("regress_x_to_y2", REGRESS))
    expected = inference_response(model, ("regress_x_to_y", "regression_result { regressions { value: 3 } }"),
                                  ("regress_x_to_y2", "regression_result { regressions { value: 4 } }"))
    assert as_text(predictions.MultiInference(request, RPC_TIMEOUT)) == as_text(expected)


@TF1_OR_TF2
def test_multi_inference_regress_and_classify_signatures(predictions, model):
    """multi_inference_test.cc MultiInferenceTest.RegressAndClassifySignaturesTest"""
    request = inference_request(model, ("regress_x_to_y", REGRESS), ("classify_x_to_y", CLASSIFY))
    expected = inference_response(
        model, ("regress_x_to_y", "regression_result { regressions { value: 3 } }"),
        ("classify_x_to_y", "classification_result { classifications { classes { score: 3 } } }"))
    assert as_text(predictions.MultiInference(request, RPC_TIMEOUT)) == as_text(expected)


# get_model_status_impl_test.cc: STATUS_MODEL serves versions 123 and 124

def status_request(fields: str = "") -> get_model_status_pb2.GetModelStatusRequest:
    return parse(fields, get_model_status_pb2.GetModelStatusRequest)


def test_status_missing_or_empty_model_spec_failure(model_service):
    """get_model_status_impl_test.cc GetModelStatusImplTest.MissingOrEmptyModelSpecFailure"""
    assert rpc_code(model_service.GetModelStatus, status_request()) == INVALID_ARGUMENT


def test_status_invalid_model_name_failure(model_service):
    """get_model_status_impl_test.cc GetModelStatusImplTest.InvalidModelNameFailure (a failed call has no
    response, so none with statuses)"""
    request = status_request('model_spec { name: "nonexistent_model" }')
    assert rpc_code(model_service.GetModelStatus, request) == NOT_FOUND


def test_status_invalid_model_version_failure(model_service):
    """get_model_status_impl_test.cc GetModelStatusImplTest.InvalidModelVersionFailure (no response, as above)"""
    request = status_request(f'model_spec {{ name: "{STATUS_MODEL}" version {{ value: 125 }} }}')
    assert rpc_code(model_service.GetModelStatus, request) == NOT_FOUND


def test_status_all_versions_success(model_service):
    """get_model_status_impl_test.cc GetModelStatusImplTest.AllVersionsSuccess"""
    response = model_service.GetModelStatus(status_request(f'model_spec {{ name: "{STATUS_MODEL}" }}'), RPC_TIMEOUT)
    assert len(response.model_version_status) == 2
    assert {status.version for status in response.model_version_status} == {123, 124}
    for status in response.model_version_status:
        assert (status.status.error_code, status.status.error_message) == (0, "")  # OK


def test_status_single_version_success(model_service):
    """get_model_status_impl_test.cc GetModelStatusImplTest.SingleVersionSuccess"""
    request = status_request(f'model_spec {{ name: "{STATUS_MODEL}" version {{ value: 123 }} }}')
    response = model_service.GetModelStatus(request, RPC_TIMEOUT)
    assert len(response.model_version_status) == 1
    status = response.model_version_status[0]
    assert (status.version, status.status.error_code, status.status.error_message) == (123, 0, "")


# ModelSpecOverride, in five suites: *WithModelSpec(override, request) answers for the override's model, not the
# request's. That entry point is in-process; over the wire the override's name goes in the request.

@pytest.mark.parametrize("method, request_type, model, fields, code", [
    pytest.param("Predict", predict_pb2.PredictRequest, TEST_MODEL, "", INVALID_ARGUMENT,  # no inputs
                 id="PredictImplTest"),
    pytest.param("GetModelMetadata", get_model_metadata_pb2.GetModelMetadataRequest, TEST_MODEL,
                 'metadata_field: "signature_def"', OK, id="GetModelMetadataImplTest"),
    pytest.param("Classify", classification_pb2.ClassificationRequest, TEST_MODEL, "", INVALID_ARGUMENT,
                 id="ClassificationServiceTest"),
    pytest.param("Regress", regression_pb2.RegressionRequest, TEST_MODEL, "", INVALID_ARGUMENT,
                 id="RegressionServiceTest"),
    pytest.param("GetModelStatus", get_model_status_pb2.GetModelStatusRequest, STATUS_MODEL, "", OK,
                 id="GetModelStatusImplTest"),
])
def test_model_spec_override(predictions, model_service, method, request_type, model, fields, code):
    """predict_impl_test.cc PredictImplTest.ModelSpecOverride, get_model_metadata_impl_test.cc
    GetModelMetadataImplTest.ModelSpecOverride, classification_service_test.cc
    ClassificationServiceTest.ModelSpecOverride, regression_service_test.cc RegressionServiceTest.ModelSpecOverride
    and get_model_status_impl_test.cc GetModelStatusImplTest.ModelSpecOverride: the request naming the served model
    is not NOT_FOUND (here: exactly the code TF Serving answers it with); the same request naming
    "nonexistent_model" is."""
    call = getattr(model_service if method == "GetModelStatus" else predictions, method)
    request = parse(f'model_spec {{ name: "{model}" }} {fields}', request_type)
    assert rpc_code(call, request) == code
    request.model_spec.name = "nonexistent_model"
    assert rpc_code(call, request) == NOT_FOUND
