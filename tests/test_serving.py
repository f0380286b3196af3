"""`cnnpipe serve` and `cnnpipe predict` on a model the real pipeline pushed (a small real Fashion-MNIST
slice): TF Serving's REST and gRPC requests as documented, hot swap, broken versions, bad requests,
and the Pusher's check.
"""

import base64
import dataclasses
import json
import os
import shutil
import threading
import time
from typing import Iterator, Optional

import grpc
import numpy as np
from google.protobuf import wrappers_pb2
import pytest
from PIL import Image
import requests
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tfx import v1 as tfx

from conftest import Server, encode, fashion_mnist, headless_chromium, running_server
from cnnpipe.components.blessing import evaluation_results
from cnnpipe.components import push_check
from cnnpipe.components.ingestion.formats import make_example
from cnnpipe.components.pusher import existing_versions, publish
from cnnpipe.models import trainer
from cnnpipe.models.catalog import CLASS_WEIGHT
from cnnpipe.cli import main as cli
from cnnpipe.pipeline.config import PipelineConfig
from cnnpipe.pipeline.datasets import FASHION_MNIST
from cnnpipe.serving import json_body, model_config, tensors
from cnnpipe.serving.errors import ServingError
from cnnpipe.serving.options import ServerOptions
from cnnpipe.serving.server import model_server_command

MAX_REQUEST_BYTES = 1_000_000
SIGNATURES = ("serving_default", "predict_image", "predict_pixels", "embed", "search", "search_vector", "classify")


@pytest.fixture(scope="module")
def pipeline(pushed_run) -> PipelineConfig:
    """The session's pipeline run: it pushed one checked version."""
    return pushed_run


@pytest.fixture(scope="module")
def first_version(pipeline) -> str:
    versions = existing_versions(pipeline.serving_base)
    assert len(versions) == 1
    return os.path.join(pipeline.serving_base, str(versions[0]))


@pytest.fixture(scope="module")
def second_model(pipeline, pushed_outputs, tmp_path_factory) -> str:
    """Another model (seed 1) trained and exported by the real Trainer's run_fn on the same examples."""
    root = tmp_path_factory.mktemp("second")
    examples = pushed_outputs["transformed_examples"].uri
    training = dataclasses.replace(pipeline.training_config(FASHION_MNIST.class_names), seed=1)
    trainer.run_fn(tfx.components.FnArgs(
        train_files=[os.path.join(examples, "Split-train", "*")],
        eval_files=[os.path.join(examples, "Split-validation", "*")],
        transform_graph_path=pushed_outputs["transform_graph"].uri,
        serving_model_dir=str(root / "model"),
        model_run_dir=str(root / "run"),
        custom_config=dataclasses.asdict(training),
        data_accessor=trainer.tf_example_files(),
    ))
    return str(root / "model")


@pytest.fixture(scope="module")
def test_images() -> np.ndarray:
    return fashion_mnist("t10k", 8)[0]


def serialized_examples(images: np.ndarray) -> list[bytes]:
    return [make_example(encode(p), 0, "", f"client:{i}", 28, 28) for i, p in enumerate(images)]


def in_process(model_dir: str, signature: str, **inputs) -> dict[str, np.ndarray]:
    outputs = tf.saved_model.load(model_dir).signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {key: value.numpy() for key, value in outputs.items()}


def assert_same(answer: dict, expected: dict) -> None:
    """A server's answer (JSON lists or arrays) equals in-process outputs."""
    np.testing.assert_allclose(np.array(answer["probabilities"], dtype=np.float32), expected["probabilities"],
                               rtol=1e-5, atol=1e-7)
    names = [n.decode() if isinstance(n, bytes) else n for n in np.array(answer["class_names"], dtype=object)]
    assert names == [n.decode() for n in expected["class_names"]]


def columns(predictions: list[dict]) -> dict[str, list]:
    return {key: [row[key] for row in predictions] for key in predictions[0]}


@pytest.fixture(scope="module")
def server(pipeline) -> Iterator[Server]:
    """The pipeline's serving directory, served with batching and a 1 MB request limit."""
    with running_server(os.path.dirname(pipeline.serving_base), "--enable-batching",
                        "--max-request-bytes", str(MAX_REQUEST_BYTES)) as running:
        yield running


def rest_predict(server: Server, name: str, body, version=None, method: str = "predict") -> requests.Response:
    path = f"/v1/models/{name}" + (f"/versions/{version}" if version else "") + f":{method}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(server.rest + path, data=data, timeout=60)


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def grpc_request(name: str, signature: str, **inputs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


# --- the pushed model and the Pusher's check ---------------------------------------------------


def test_the_pusher_lists_the_pushed_model_in_models_config(pipeline, first_version):
    config = model_config.read(os.path.join(os.path.dirname(pipeline.serving_base), "models.config"))
    assert [(c.name, c.base_path) for c in config.model_config_list.config] == [
        (pipeline.name, os.path.abspath(pipeline.serving_base))
    ]
    assert set(tf.saved_model.load(first_version).signatures) == set(SIGNATURES)


def test_a_model_that_disagrees_with_the_evaluator_is_refused(pushed_outputs, first_version, second_model):
    eval_files = os.path.join(pushed_outputs["examples"].uri, "Split-eval", "*")
    evaluated = evaluation_results.candidate_accuracy(pushed_outputs["evaluation"].uri)
    report = push_check.check(first_version, eval_files, evaluated)
    assert report.startswith("push check: classify, embed, predict_image")
    with pytest.raises(push_check.PushCheckError, match=r"but the Evaluator measured"):
        push_check.check(second_model, eval_files, evaluated)  # another model than the one evaluated


# --- REST and gRPC as TF Serving documents them --------------------------------------------------


def test_rest_tf_examples_as_b64_instances(server, pipeline, first_version, test_images):
    examples = serialized_examples(test_images)
    answer = rest_predict(server, pipeline.name, {"instances": [b64(e) for e in examples]})
    assert answer.status_code == 200, answer.text
    assert_same(columns(answer.json()["predictions"]), in_process(first_version, "serving_default", examples=examples))


def test_rest_images_in_row_and_columnar_form(server, pipeline, first_version, test_images):
    pngs = [encode(p) for p in test_images]
    expected = in_process(first_version, "predict_image", images=pngs)
    rows = rest_predict(server, pipeline.name, {"signature_name": "predict_image", "instances": [b64(p) for p in pngs]})
    named_rows = rest_predict(server, pipeline.name,
                              {"signature_name": "predict_image", "instances": [{"images": b64(p)} for p in pngs]})
    columnar = rest_predict(server, pipeline.name,
                            {"signature_name": "predict_image", "inputs": {"images": [b64(p) for p in pngs]}})
    for answer in (rows, named_rows):
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert predictions[0]["all_class_names"] == list(FASHION_MNIST.class_names)
        assert_same(columns(predictions), expected)
    assert columnar.status_code == 200, columnar.text
    assert_same(columnar.json()["outputs"], expected)


def test_rest_pixel_instances_and_columns(server, pipeline, first_version, test_images):
    pixels = test_images[..., None].astype(np.float32)
    expected = in_process(first_version, "predict_pixels", pixels=pixels)
    rows = rest_predict(server, pipeline.name, {"signature_name": "predict_pixels", "instances": pixels.tolist()})
    columnar = rest_predict(server, pipeline.name, {"signature_name": "predict_pixels", "inputs": pixels.tolist()})
    assert rows.status_code == 200 and columnar.status_code == 200, rows.text + columnar.text
    assert_same(columns(rows.json()["predictions"]), expected)
    assert_same(columnar.json()["outputs"], expected)
    np.testing.assert_allclose(expected["probabilities"],
                               in_process(first_version, "predict_image", images=[encode(p) for p in test_images])[
                                   "probabilities"], atol=1e-6)


def test_grpc_predict_through_every_signature(server, pipeline, first_version, test_images):
    stub = server.predict_stub()
    pngs = [encode(p) for p in test_images]
    pixels = test_images[..., None].astype(np.float32)
    version = int(os.path.basename(first_version))
    for signature, inputs in [("serving_default", {"examples": serialized_examples(test_images)}),
                              ("predict_image", {"images": pngs}), ("predict_pixels", {"pixels": pixels})]:
        response = stub.Predict(grpc_request(pipeline.name, signature, **inputs), timeout=60)
        assert (response.model_spec.version.value, response.model_spec.signature_name) == (version, signature)
        assert_same({k: tf.make_ndarray(v) for k, v in response.outputs.items()},
                    in_process(first_version, signature, **inputs))
    response = stub.Predict(grpc_request(pipeline.name, "embed", images=pngs), timeout=60)
    embeddings = tf.make_ndarray(response.outputs["embeddings"])
    assert embeddings.shape == (8, 64)  # the default embedding
    np.testing.assert_allclose(embeddings, in_process(first_version, "embed", images=pngs)["embeddings"], atol=1e-5)


def assert_classified(labels: list[list[str]], scores: list[list[float]], expected: dict) -> None:
    """A Classify answer (each example's class labels and scores) equals serving_default's all_class_names and
    probabilities, in-process."""
    assert labels == [[name.decode() for name in row] for row in expected["all_class_names"]]
    assert labels[0] == list(FASHION_MNIST.class_names)
    np.testing.assert_allclose(np.array(scores, dtype=np.float32), expected["probabilities"], rtol=1e-5, atol=1e-7)


def test_rest_classify_tf_examples_as_tf_serving_documents_them(server, pipeline, first_version, test_images):
    """TF Serving's REST classify: each example's features as JSON, bytes as {"b64": ...}; each class's [label, score]
    is serving_default's all_class_names and probabilities."""
    expected = in_process(first_version, "serving_default", examples=serialized_examples(test_images))
    body = {"signature_name": "classify", "examples": [{"image": b64(encode(p))} for p in test_images]}
    for version in (None, int(os.path.basename(first_version))):
        answer = rest_predict(server, pipeline.name, body, version, method="classify")
        assert answer.status_code == 200, answer.text
        result = answer.json()["results"]
        assert_classified([[label for label, _ in row] for row in result],
                          [[score for _, score in row] for row in result], expected)


def test_grpc_classify_takes_an_example_list(server, pipeline, first_version, test_images):
    examples = serialized_examples(test_images)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = pipeline.name, "classify"
    request.input.example_list.examples.extend(tf.train.Example.FromString(e) for e in examples)
    response = server.predict_stub().Classify(request, timeout=60)
    version = int(os.path.basename(first_version))
    assert (response.model_spec.version.value, response.model_spec.signature_name) == (version, "classify")
    rows = response.result.classifications
    assert_classified([[c.label for c in row.classes] for row in rows],
                      [[c.score for c in row.classes] for row in rows],
                      in_process(first_version, "serving_default", examples=examples))


def test_status_and_metadata_over_rest_and_grpc(server, pipeline, first_version):
    version = os.path.basename(first_version)
    ok = {"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert server.status(pipeline.name) == [ok]
    by_version = requests.get(f"{server.rest}/v1/models/{pipeline.name}/versions/{version}", timeout=30).json()
    assert by_version == {"model_version_status": [ok]}
    metadata = requests.get(f"{server.rest}/v1/models/{pipeline.name}/metadata", timeout=30).json()
    assert metadata["model_spec"] == {"name": pipeline.name, "signature_name": "", "version": version}
    signature_defs = metadata["metadata"]["signature_def"]["signature_def"]
    assert set(SIGNATURES) <= set(signature_defs)
    assert signature_defs["predict_pixels"]["inputs"]["pixels"]["dtype"] == "DT_FLOAT"
    assert set(signature_defs["predict_image"]["outputs"]) == {"probabilities", "class_ids", "class_names",
                                                               "all_class_names"}

    channel = grpc.insecure_channel(server.grpc)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = pipeline.name
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert set(SIGNATURES) <= set(signature_map.signature_def)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = pipeline.name
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request, timeout=30)
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (int(version), get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]


# --- bad requests ----------------------------------------------------------------------------------

BAD_REST_REQUESTS = [
    ("non-image bytes", {"signature_name": "predict_image", "instances": [b64(b"this is not an image")]}, None, 400,
     "Unknown image file format"),
    ("non-image search", {"signature_name": "search", "instances": [b64(b"this is not an image")]}, None, 400,
     "Unknown image file format"),
    ("wrong shape", {"signature_name": "predict_pixels", "instances": [[1.0, 2.0]]}, None, 400,
     "'pixels' has shape [1, 2], the signature declares [-1, -1, -1, -1]"),
    ("wrong dtype", {"signature_name": "predict_pixels", "instances": [[[["dark"]]]]}, None, 400,
     'JSON Value: "dark" Type: String is not of expected type: float'),
    ("string for bytes", {"signature_name": "predict_image", "instances": [17]}, None, 400,
     'takes strings: send text, or binary data such as an image as {"b64"'),
    ("unknown signature", {"signature_name": "predict_everything", "instances": [1]}, None, 400,
     'signature name: "predict_everything" not found'),
    ("unknown version", {"instances": [b64(b"x")]}, 1, 404, "Servable not found for request: Specific("),
    ("malformed JSON", b'{"instances": [', None, 400, "JSON Parse error"),
    ("oversized payload", b" " * (2 * MAX_REQUEST_BYTES), None, 413, "over this server's limit of 1000000 bytes"),
]


@pytest.mark.parametrize("what, body, version, status, message", BAD_REST_REQUESTS,
                         ids=[r[0] for r in BAD_REST_REQUESTS])
def test_bad_rest_requests_get_tf_serving_errors_and_the_server_goes_on(server, pipeline, test_images, what, body,
                                                                        version, status, message):
    answer = rest_predict(server, pipeline.name, body, version)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    good = rest_predict(server, pipeline.name,
                        {"signature_name": "predict_image", "instances": [b64(encode(test_images[0]))]})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 1


def test_unknown_model_is_404_over_rest_and_not_found_over_grpc(server, pipeline):
    answer = rest_predict(server, "no_such_model", {"instances": [1]})
    assert answer.status_code == 404
    assert answer.json()["error"].startswith("Servable not found for request: Latest(no_such_model)")
    assert pipeline.name in answer.json()["error"]  # names what is served
    assert requests.get(f"{server.rest}/v1/models/no_such_model", timeout=30).status_code == 404
    with pytest.raises(grpc.RpcError) as error:
        server.predict_stub().Predict(grpc_request("no_such_model", "predict_image", images=[b"x"]), timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_bad_grpc_requests_get_status_codes_and_the_server_goes_on(server, pipeline, test_images):
    stub = server.predict_stub()
    bad = [
        (grpc_request(pipeline.name, "predict_image", images=[b"not an image"]), grpc.StatusCode.INVALID_ARGUMENT,
         "Unknown image file format"),
        (grpc_request(pipeline.name, "search", images=[b"not an image"]), grpc.StatusCode.INVALID_ARGUMENT,
         "Unknown image file format"),
        (grpc_request(pipeline.name, "predict_image", images=[1.0, 2.0]), grpc.StatusCode.INVALID_ARGUMENT,
         "takes string values, but float32 was sent"),
        (grpc_request(pipeline.name, "predict_pixels", pixels=np.zeros([2, 28], np.float32)),
         grpc.StatusCode.INVALID_ARGUMENT, "'pixels' has shape [2, 28], the signature declares [-1, -1, -1, -1]"),
        (grpc_request(pipeline.name, "predict_image", pictures=[b"x"]), grpc.StatusCode.INVALID_ARGUMENT,
         "input tensor alias not found in signature: pictures. Inputs expected to be in the set {images}."),
        (grpc_request(pipeline.name, "predict_image", images=[b"\0" * (2 * MAX_REQUEST_BYTES)]),
         grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ]
    for request, code, message in bad:
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(request, timeout=60)
        assert error.value.code() == code and message in error.value.details()
        good = stub.Predict(grpc_request(pipeline.name, "predict_image", images=[encode(test_images[0])]), timeout=60)
        assert tf.make_ndarray(good.outputs["probabilities"]).shape == (1, 10)
    assert server.process.poll() is None


def test_one_bad_image_in_a_batch_fails_only_its_own_request(server, pipeline, first_version, test_images):
    """With batching on, concurrent good and bad requests are stacked; the bad one must not spoil the others."""
    pngs = [encode(p) for p in test_images]
    expected = in_process(first_version, "predict_image", images=pngs)
    answers: dict[int, requests.Response] = {}

    def send(index: int) -> None:
        image = b"broken" if index == 3 else pngs[index]
        answers[index] = rest_predict(server, pipeline.name,
                                      {"signature_name": "predict_image", "instances": [b64(image)]})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers[3].status_code == 400
    for index in set(range(8)) - {3}:
        assert answers[index].status_code == 200, answers[index].text
        np.testing.assert_allclose(answers[index].json()["predictions"][0]["probabilities"],
                                   expected["probabilities"][index], rtol=1e-5, atol=1e-7)


# --- versions: hot swap and broken versions -----------------------------------------------------


def test_hot_swap_answers_every_request_and_switches_to_the_new_version(pipeline, first_version, second_model,
                                                                        test_images, tmp_path):
    base = tmp_path / "serving" / pipeline.name
    old = int(os.path.basename(publish(first_version, str(base))))
    pngs = [encode(p) for p in test_images]
    expected = {old: in_process(first_version, "predict_image", images=pngs)}
    with running_server(str(tmp_path / "serving")) as server:
        stop, answers, failures = threading.Event(), [], []

        def grpc_client() -> None:
            stub = server.predict_stub()
            while not stop.is_set() and len(answers) < 100_000:
                try:
                    response = stub.Predict(grpc_request(pipeline.name, "predict_image", images=pngs), timeout=60)
                    answers.append((response.model_spec.version.value,
                                    tf.make_ndarray(response.outputs["probabilities"])))
                except grpc.RpcError as error:
                    failures.append(f"gRPC {error.code()}: {error.details()}")

        def rest_client() -> None:
            while not stop.is_set() and len(answers) < 100_000:
                answer = rest_predict(server, pipeline.name,
                                      {"signature_name": "predict_image", "instances": [b64(p) for p in pngs]})
                if answer.status_code != 200:
                    failures.append(f"REST {answer.status_code}: {answer.text}")

        clients = [threading.Thread(target=grpc_client), threading.Thread(target=rest_client)]
        for client in clients:
            client.start()
        while len(answers) < 5 and not failures:
            time.sleep(0.05)
        new = int(os.path.basename(publish(second_model, str(base))))
        expected[new] = in_process(second_model, "predict_image", images=pngs)
        deadline = time.monotonic() + 120  # a bound against hanging, not a speed requirement
        while not any(version == new for version, _ in answers[-20:]) and time.monotonic() < deadline:
            time.sleep(0.1)
        seen_new = len(answers)
        while len(answers) < seen_new + 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for client in clients:
            client.join()
        statuses = {s["version"]: s["state"] for s in server.status(pipeline.name)}

    assert failures == []
    versions = [version for version, _ in answers]
    switch = versions.index(new)
    assert set(versions[:switch]) == {old} and set(versions[switch:]) == {new}  # one switch, never back
    for version, probabilities in answers:
        np.testing.assert_allclose(probabilities, expected[version]["probabilities"], rtol=1e-5, atol=1e-7)
    assert not np.allclose(expected[old]["probabilities"], expected[new]["probabilities"], atol=1e-3)
    assert statuses == {str(new): "AVAILABLE", str(old): "END"}  # the old version was unloaded


def test_a_broken_version_keeps_the_previous_one_serving(pipeline, first_version, second_model, test_images, tmp_path):
    base = tmp_path / "serving" / pipeline.name
    good = int(os.path.basename(publish(first_version, str(base))))
    pngs = [encode(p) for p in test_images]
    with running_server(str(tmp_path / "serving")) as server:
        staging = tmp_path / "staging"
        shutil.copytree(second_model, staging)
        data = next((staging / "variables").glob("variables.data-*"))
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # truncated variables
        os.rename(staging, base / str(good + 1))  # appears whole, as the Pusher publishes
        deadline = time.monotonic() + 120
        while (time.monotonic() < deadline
               and [s["state"] for s in server.status(pipeline.name)] != ["END", "AVAILABLE"]):
            time.sleep(0.1)  # newest first: the broken version has ended, the good one serves
        statuses = {s["version"]: s for s in server.status(pipeline.name)}
        response = server.predict_stub().Predict(grpc_request(pipeline.name, "predict_image", images=pngs), timeout=60)
        latest = rest_predict(server, pipeline.name,
                              {"signature_name": "predict_image", "instances": [b64(p) for p in pngs]})
        broken_version = rest_predict(server, pipeline.name, {"instances": [b64(b"x")]}, version=good + 1)
        assert server.process.poll() is None

    assert statuses[str(good)]["state"] == "AVAILABLE"
    broken = statuses[str(good + 1)]
    assert broken["state"] == "END" and broken["status"]["error_code"] != "OK"
    assert f"Failed to load {pipeline.name} version {good + 1} from {base / str(good + 1)}" in \
        broken["status"]["error_message"]
    assert response.model_spec.version.value == good
    assert_same(columns(latest.json()["predictions"]), in_process(first_version, "predict_image", images=pngs))
    assert broken_version.status_code == 404
    assert f"Specific({pipeline.name}, {good + 1}); loaded versions: {good}" in broken_version.json()["error"]


# --- cnnpipe predict ---------------------------------------------------------------------------------


@pytest.fixture()
def image_files(test_images, tmp_path) -> list[str]:
    """Three test images as PNG files of another size and colour mode than the training images."""
    files = []
    for index, pixels in enumerate(test_images[:3]):
        files.append(str(tmp_path / f"image{index}.png"))
        with open(files[-1], "wb") as f:
            f.write(encode(pixels, "RGB", (56, 56)))
    return files


def test_predict_prints_the_top_classes_locally_and_from_the_server(server, pipeline, first_version, image_files,
                                                                  capsys):
    serving_dir = os.path.dirname(pipeline.serving_base)
    printed = {}
    for mode, options in [("local", ["--serving-dir", serving_dir]),
                          ("rest", ["--server", server.rest.removeprefix("http://")]),
                          ("grpc", ["--server", server.grpc, "--grpc"])]:
        assert cli.main(["predict", *image_files, "--model", pipeline.name, "--top-k", "2", *options]) == 0
        printed[mode] = capsys.readouterr().out
    assert printed["local"] == printed["rest"] == printed["grpc"]
    expected = in_process(first_version, "predict_image", images=[open(f, "rb").read() for f in image_files])
    lines = printed["local"].splitlines()
    assert lines[0::3] == image_files
    for index, line in enumerate(lines[1::3]):
        name, percent = line.rsplit(maxsplit=1)
        assert name.strip() == expected["class_names"][index].decode()
        assert float(percent.rstrip("%")) == pytest.approx(100 * expected["probabilities"][index].max(), abs=0.006)


def test_predict_api_classify_prints_the_same_classes_locally_and_from_the_server(server, pipeline, image_files,
                                                                                  capsys):
    """`--api classify` sends tf.Examples to the classify signature (REST :classify, gRPC Classify, in-process) and
    prints the table `--api predict` prints."""
    serving_dir = os.path.dirname(pipeline.serving_base)
    printed = {}
    for mode, options in [("predict", ["--serving-dir", serving_dir]),
                          ("local", ["--api", "classify", "--serving-dir", serving_dir]),
                          ("rest", ["--api", "classify", "--server", server.rest.removeprefix("http://")]),
                          ("grpc", ["--api", "classify", "--server", server.grpc, "--grpc"])]:
        assert cli.main(["predict", *image_files, "--model", pipeline.name, "--top-k", "3", *options]) == 0, mode
        printed[mode] = capsys.readouterr().out
    assert printed["local"] == printed["rest"] == printed["grpc"] == printed["predict"]
    assert printed["predict"].splitlines()[0::4] == image_files


def test_predict_names_a_missing_model_and_the_models_there(pipeline, tmp_path, capsys):
    image = tmp_path / "x.png"
    image.write_bytes(encode(fashion_mnist("t10k", 1)[0][0]))
    assert cli.main(["predict", str(image), "--model", "nope",
                     "--serving-dir", os.path.dirname(pipeline.serving_base)]) == 1
    assert f"no pushed version of model 'nope' (models in {os.path.dirname(pipeline.serving_base)}: {pipeline.name})" \
        in capsys.readouterr().err


def test_with_tensorflow_model_server_the_same_models_and_options_are_passed():
    options = ServerOptions(serving_dir="/srv/models", rest_port=9501, grpc_port=9500, poll_seconds=2,
                            intra_op_parallelism=1)
    assert model_server_command("/usr/bin/tensorflow_model_server", options, "/srv/models/models.config", "/tmp/b") == [
        "/usr/bin/tensorflow_model_server", "--port=9500", "--rest_api_port=9501",
        "--model_config_file=/srv/models/models.config", "--model_config_file_poll_wait_seconds=2",
        "--file_system_poll_wait_seconds=2", "--tensorflow_intra_op_parallelism=1",
        "--enable_batching=true", "--batching_parameters_file=/tmp/b",
    ]


# --- tensors.py's own TensorProto conversions ------------------------------------------------------


def test_the_own_conversions_give_what_tensorflows_give():
    """tensors.py keeps its string reader and response writer for speed (bench/tensor_protos.py); a client reading
    with tf.make_ndarray must see what tf.make_tensor_proto would have sent, and strings read as TensorFlow reads
    them. The writer fills the typed field of each type (float_val ...), as TF Serving answers, never
    tensor_content."""
    fields = {np.float32: "float_val", np.float64: "double_val", np.int32: "int_val", np.int64: "int64_val",
              np.uint8: "int_val", np.float16: "half_val", np.complex64: "scomplex_val", np.bool_: "bool_val"}
    arrays = [np.arange(12, dtype=dtype).reshape(3, 4) for dtype in (np.float32, np.float64, np.int32, np.int64,
                                                                       np.uint8, np.float16)]
    arrays += [np.array([[1 + 2j, -0.5j]], np.complex64)]
    arrays += [np.array([True, False]), np.array(3.5, np.float32), np.zeros((0, 10), np.float32),
               np.array([[b"a", b"\xff\0"], [b"", b"b"]], dtype=object), np.array(b"x", dtype=object)]
    for array in arrays:
        written = tensor_pb2.TensorProto()
        tensors.write_proto(array, written)
        ours, theirs = tf.make_ndarray(written), tf.make_ndarray(tf.make_tensor_proto(array))
        assert written.dtype == tf.make_tensor_proto(array).dtype and not written.tensor_content
        if array.dtype != object:
            values_per_item = 2 if array.dtype.kind == "c" else 1
            assert len(getattr(written, fields[array.dtype.type])) == array.size * values_per_item
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape) and np.array_equal(ours, theirs)
    spec = tf.TensorSpec(None, tf.string)
    for values, shape in [([b"a", b"b"], [2]), ([b"a"], [3]), ([b"a", b"b", b"c", b"d"], [2, 2]), ([b"a"], [])]:
        proto = tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=values)
        proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape)
        ours, theirs = tensors.from_proto(proto, spec, "images"), tf.make_ndarray(proto)
        assert (ours.dtype, ours.shape, ours.tolist()) == (theirs.dtype, theirs.shape, theirs.tolist())
    too_many = tensor_pb2.TensorProto(dtype=tf.string.as_datatype_enum, string_val=[b"a", b"b", b"c"])
    too_many.tensor_shape.dim.add(size=2)
    with pytest.raises(ServingError, match="input 'images': the TensorProto cannot be read") as error:
        tensors.from_proto(too_many, spec, "images")
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


# --- json_body.py: large arrays of numbers read by NumPy --------------------------------------------

PIXELS = {"pixels": tf.TensorSpec([None, 28, 28, 1], tf.float32)}


def test_large_pixel_arrays_are_read_as_json_reads_them():
    """A body of real pixels, as floats and as integers, gives the arrays json.loads + from_rest give, read into an
    ndarray without a Python number per pixel."""
    images = fashion_mnist("t10k", 64)[0][..., None]
    for pixels in (images / 255, images.astype(int)):
        body = json.dumps({"signature_name": "predict_pixels", "instances": pixels.tolist()}, indent=1).encode()
        parsed = json_body.loads(body)
        assert isinstance(parsed["instances"], np.ndarray) and parsed["signature_name"] == "predict_pixels"
        ours, theirs = (tensors.from_rest(parsed, PIXELS)[0]["pixels"],
                        tensors.from_rest(json.loads(body), PIXELS)[0]["pixels"])
        assert ours.dtype == theirs.dtype == np.float32 and np.array_equal(ours, theirs)
        assert tensors.rest_rows(parsed) == 64
        columnar = json_body.loads(json.dumps({"inputs": {"pixels": pixels.tolist()}}).encode())
        assert np.array_equal(tensors.from_rest(columnar, PIXELS)[0]["pixels"], theirs)


def test_what_is_not_a_regular_array_of_json_numbers_is_left_to_json():
    """Every large literal json_body does not read is parsed by json.loads, with json.loads's errors: the answer
    is the same either way."""
    rows = json.dumps(fashion_mnist("t10k", 32)[0].tolist())  # 32 x 28 x 28 integers, over json_body.LARGE_BYTES
    assert len(rows) > json_body.LARGE_BYTES
    same = [
        '{"note": "%s"}' % rows,  # in a string
        '{"instances": %s}' % rows.replace("]], [[", "]], [[0, ", 1),  # ragged
        '{"instances": %s}' % rows.replace("[[[0,", "[[[18446744073709551616,", 1),  # beyond int64
        '{"instances": %s, "more": [%s, "x"]}' % (rows, rows),  # an array beside a list json.loads reads
    ]
    for body in same:
        assert _as_lists(json_body.loads(body.encode())) == json.loads(body)
    for body in ['{"instances": %s}' % rows.replace(" 0,", " 00,", 1), '{%s: 1}' % rows]:  # not JSON
        assert _json_error(json_body.loads, body.encode()) == _json_error(json.loads, body) is not None
    fractions = json_body.loads(('{"instances": %s}' % rows.replace(" 0,", " 0.5,", 1)).encode())
    with pytest.raises(ServingError, match="takes int64 values, but numbers with a fraction or an exponent were sent"):
        tensors.from_rest(fractions, {"x": tf.TensorSpec(None, tf.int64)})
    with pytest.raises(ServingError, match="takes strings"):
        tensors.from_rest(fractions, {"x": tf.TensorSpec(None, tf.string)})


def _json_error(parse, body) -> Optional[str]:
    try:
        parse(body)
    except json.JSONDecodeError as error:
        return str(error)
    return None


def _as_lists(value):
    """`value` with ndarrays as nested lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [_as_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_lists(item) for key, item in value.items()}
    return value


# --- visual search -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog_images() -> tuple[np.ndarray, list[str]]:
    """Training images of the shared run, the pushed model's catalog, with the sources ingestion gave them."""
    images = fashion_mnist("train", 40)[0][::8]
    return images, [f"train-images-idx3-ubyte.gz:{index}" for index in range(0, 40, 8)]


def test_a_catalog_image_finds_itself_first_in_the_exact_search_signature(first_version, catalog_images):
    images, sources = catalog_images
    found = in_process(first_version, "search", images=[encode(pixels) for pixels in images])
    assert found["scores"].shape == found["neighbor_ids"].shape == (len(images), 10)
    assert [s.decode() for s in found["neighbor_sources"][:, 0]] == sources
    # a score: search_vector's vector times the item's (the catalog's vectors are a variable of the SavedModel)
    queries = in_process(first_version, "search_vector", images=[encode(pixels) for pixels in images])
    items = tf.saved_model.load(first_version).catalog.vectors.numpy()
    np.testing.assert_allclose(found["scores"], np.take_along_axis(queries["search_vectors"] @ items.T,
                                                                   found["neighbor_ids"], axis=1), atol=1e-5)
    assert (found["scores"][:, 0] >= 1 - CLASS_WEIGHT - 1e-5).all()  # the look alone: the same image
    assert (np.diff(found["scores"], axis=1) <= 1e-6).all()
    class_names = in_process(first_version, "predict_image", images=[encode(pixels) for pixels in images])
    assert found["neighbor_class_names"].shape == (len(images), 10) and class_names["class_names"].shape == (5,)


def test_the_server_answers_search_from_the_scann_index_as_the_exact_signature_does(server, pipeline, first_version,
                                                                                    catalog_images, test_images):
    queries = [encode(pixels) for pixels in [*catalog_images[0], *test_images]]
    exact = in_process(first_version, "search", images=queries)
    response = rest_predict(server, pipeline.name, {"signature_name": "search", "instances": [b64(q) for q in queries]})
    assert response.status_code == 200, response.text
    answer = columns(response.json()["predictions"])
    stub = server.predict_stub()
    by_grpc = stub.Predict(grpc_request(pipeline.name, "search", images=queries), timeout=60)
    assert tf.make_ndarray(by_grpc.outputs["neighbor_ids"]).tolist() == answer["neighbor_ids"]
    ids = np.array(answer["neighbor_ids"])
    assert (ids[:, 0] == exact["neighbor_ids"][:, 0]).all()  # the nearest item, exact or approximate alike
    overlap = np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(ids, exact["neighbor_ids"])])
    assert overlap >= 0.8  # a small catalog is searched by brute force; the full one's recall is in the summary
    np.testing.assert_allclose(np.array(answer["scores"])[:, 0], exact["scores"][:, 0], atol=1e-4)
    assert answer["neighbor_sources"][0][0] == catalog_images[1][0]
    metadata = requests.get(f"{server.rest}/v1/models/{pipeline.name}/metadata", timeout=30).json()["metadata"]
    assert metadata["search_index"] == "scann" and "search" in metadata["signature_def"]["signature_def"]
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["search_index"])
    request.model_spec.name = pipeline.name
    answered_by = wrappers_pb2.StringValue()
    stub.GetModelMetadata(request, timeout=30).metadata["search_index"].Unpack(answered_by)
    assert answered_by.value == "scann"


def test_search_prints_the_neighbours_locally_and_from_the_server(server, pipeline, catalog_images, tmp_path, capsys):
    image = str(tmp_path / "query.png")
    with open(image, "wb") as f:
        f.write(encode(catalog_images[0][0]))
    serving_dir = os.path.dirname(pipeline.serving_base)
    printed = {}
    for mode, options in [("local", ["--serving-dir", serving_dir]),
                          ("rest", ["--server", server.rest.removeprefix("http://")]),
                          ("grpc", ["--server", server.grpc, "--grpc"])]:
        assert cli.main(["search", image, "--model", pipeline.name, "--top-k", "3", *options]) == 0
        printed[mode] = capsys.readouterr().out.splitlines()
    assert printed["local"][0] == printed["rest"][0] == image and len(printed["local"]) == 4
    first = printed["local"][1].split()
    assert first[0] == "1." and float(first[1]) == pytest.approx(1.0, abs=1e-3)
    assert first[-1] == catalog_images[1][0]
    assert [line.split()[-1] for line in printed["rest"]] == [line.split()[-1] for line in printed["grpc"]]


def test_search_prints_scores_with_the_decimals_that_tell_them_apart():
    """Neighbours within 0.001 of each other print differently; scores that differ more keep three decimals."""
    from cnnpipe.serving.client import format_neighbours  # noqa: PLC0415

    outputs = {"scores": np.array([[0.99973, 0.99968, 0.8]], np.float32), "neighbor_ids": np.array([[4, 9, 2]]),
               "neighbor_class_names": np.array([[b"Shirt", b"Shirt", b"Coat"]]),
               "neighbor_sources": np.array([[b"a.png", b"b.png", b"c.png"]])}
    printed = format_neighbours(["query.png"], outputs, 3).splitlines()
    assert [line.split()[1] for line in printed[1:]] == ["0.99973", "0.99968", "0.80000"]
    assert format_neighbours(["q"], {**outputs, "scores": np.array([[0.9, 0.8, 0.7]])}, 3).splitlines()[1].split()[1] \
        == "0.900"


def test_a_version_whose_index_was_built_for_another_model_is_refused_by_name(first_version, tmp_path):
    from cnnpipe.retrieval import index  # noqa: PLC0415
    from cnnpipe.serving.servable import Servable  # noqa: PLC0415

    copied = shutil.copytree(first_version, tmp_path / "7")
    built_for = copied / "assets.extra" / "search" / index.INDEX_DIR / index.BUILT_FOR
    built_for.write_text(json.dumps({"saved_model_checksum": 12345}))
    with pytest.raises(ServingError) as raised:
        Servable("fashion", 7, str(copied))
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert str(built_for.parent) in raised.value.message and "built for another model" in raised.value.message


def test_the_search_page_shows_the_class_and_the_neighbours_search_returns(server, pipeline, first_version,
                                                                           catalog_images, tmp_path):
    """The page at `/` in a real headless Chromium: an image picked, its class and its neighbours' thumbnails shown
    as the `search` signature answers; the screenshot goes to the run's reports."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415 - only the page tests drive a browser
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    query = tmp_path / "query.png"
    query.write_bytes(encode(catalog_images[0][0]))
    with headless_chromium(tmp_path / "chromium") as driver:
        driver.get(server.rest + "/")
        driver.find_element(By.ID, "file").send_keys(str(query))
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#neighbours li")
                                        or d.find_element(By.ID, "status").get_attribute("class") == "error")
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('#neighbours img')].every(i => i.complete && i.naturalWidth > 0)"))
        shown = [int(item.get_attribute("data-id")) for item in driver.find_elements(By.CSS_SELECTOR, "#neighbours li")]
        prediction, status = driver.find_element(By.ID, "prediction").text, driver.find_element(By.ID, "status").text
        reports = os.path.join(pipeline.output_dir, "reports")
        os.makedirs(reports, exist_ok=True)
        driver.save_screenshot(os.path.join(reports, "search-page.png"))
    answer = rest_predict(server, pipeline.name, {"signature_name": "search", "instances": [b64(query.read_bytes())]})
    assert shown == answer.json()["predictions"][0]["neighbor_ids"], status
    assert shown[0] == in_process(first_version, "search", images=[query.read_bytes()])["neighbor_ids"][0, 0]
    expected = in_process(first_version, "predict_image", images=[query.read_bytes()])
    assert prediction == (f"{expected['class_names'][0].decode()}: "
                          f"{100 * expected['probabilities'][0].max():.1f}% probability")
    assert status == f"{pipeline.name} version {os.path.basename(first_version)}; search answered by scann."
    with Image.open(os.path.join(reports, "search-page.png")) as screenshot:
        assert screenshot.size[0] >= 1000


def test_a_newcomer_searches_by_clicking_an_example_then_a_neighbour(server, pipeline, first_version, tmp_path):
    """In headless Chromium, with no image at hand: the page offers the version's example queries (eval images, each
    class); a click on one searches with it, a click on a neighbour searches with that item next, which comes back
    first. Each time the neighbours shown are those `search` answers for the image clicked."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415 - only the page tests drive a browser
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    base = f"{server.rest}/v1/models/{pipeline.name}/versions/{os.path.basename(first_version)}"
    listed = requests.get(f"{base}/examples", timeout=30).json()["examples"]
    assert {example["class_name"] for example in listed} == set(FASHION_MNIST.class_names)

    def neighbours_of(image: bytes) -> list[int]:
        answer = rest_predict(server, pipeline.name, {"signature_name": "search", "instances": [b64(image)]})
        return answer.json()["predictions"][0]["neighbor_ids"]

    def shown_after(driver, click) -> list[int]:
        before = driver.find_elements(By.CSS_SELECTOR, "#neighbours li")
        click.click()
        WebDriverWait(driver, 60).until(lambda d: (not before or d.find_elements(By.CSS_SELECTOR, "#neighbours li")
                                                   != before) and d.find_elements(By.CSS_SELECTOR, "#neighbours li"))
        return [int(item.get_attribute("data-id")) for item in driver.find_elements(By.CSS_SELECTOR, "#neighbours li")]

    with headless_chromium(tmp_path / "chromium") as driver:
        driver.get(server.rest + "/")
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#examples img")) == len(listed))
        example = driver.find_elements(By.CSS_SELECTOR, "#examples img")[3]
        from_example = shown_after(driver, example)
        neighbour = driver.find_elements(By.CSS_SELECTOR, "#neighbours img")[1]
        from_neighbour = shown_after(driver, neighbour)
        status = driver.find_element(By.ID, "status").text
    assert from_example == neighbours_of(requests.get(f"{base}/examples/3", timeout=30).content), status
    assert from_neighbour == neighbours_of(requests.get(f"{base}/items/{from_example[1]}", timeout=30).content)
    assert from_neighbour[0] == from_example[1]  # the item clicked finds itself first
