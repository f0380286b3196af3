"""Serving faults, each a row of the fault matrix: `cnnpipe serve` in its own process on the model the real
pipeline pushed, with real Fashion-MNIST images: shutdown with requests under way, bad pixel values,
TF Serving's answers to the other REST verbs, chunked and malformed bodies, damaged model configs,
oversized batches, and versions or models that disappear while serving.
"""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Iterator

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from conftest import Server, cnnpipe, encode, fashion_mnist, free_ports, running_server

MAX_REQUEST_BYTES = 8_000_000  # of the shared server: a batch over --max-batch-images fits, the chunked flood does not
SLOW_IMAGES = 1000  # per request: decoding and inference, about 0.3 s on 2 cores
# The server on one TensorFlow thread: requests sent together take turns, so a signal finds them under way
ONE_THREAD = ("--tensorflow-intra-op-parallelism", "1", "--tensorflow-inter-op-parallelism", "1")
WAIT_SECONDS = 120  # a bound against hanging, not a speed requirement


@pytest.fixture(scope="module")
def model(pushed_run) -> tuple[str, str]:
    """The pushed model's name and the serving directory it is in (read only)."""
    return pushed_run.name, os.path.dirname(pushed_run.serving_base)


@pytest.fixture(scope="module")
def server(model) -> Iterator[Server]:
    with running_server(model[1], "--max-request-bytes", str(MAX_REQUEST_BYTES)) as running:
        yield running


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return fashion_mnist("t10k", 4)[0][..., None].astype(np.float32)


@pytest.fixture(scope="module")
def slow_body() -> bytes:
    """A predict_image request of SLOW_IMAGES real images as PNG."""
    images = [b64(encode(p)) for p in fashion_mnist("t10k", SLOW_IMAGES)[0]]
    return json.dumps({"signature_name": "predict_image", "instances": images}).encode()


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def copy_model(model: tuple[str, str], tmp_path, versions: tuple[int, ...] = (1,)) -> str:
    """A serving directory of our own with the pushed version copied as `versions`; returns its path."""
    name, serving_dir = model
    [pushed] = [entry for entry in os.listdir(os.path.join(serving_dir, name)) if entry.isdigit()]
    for version in versions:
        shutil.copytree(os.path.join(serving_dir, name, pushed), tmp_path / "serving" / name / str(version))
    return str(tmp_path / "serving")


def predict(server: Server, name: str, body, path: str = ":predict") -> requests.Response:
    """POST `body`: a dict as JSON; bytes as they are; an iterator of bytes chunked."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    return requests.post(f"{server.rest}/v1/models/{name}{path}", data=data, timeout=WAIT_SECONDS)


def pixel_request(pixels: np.ndarray) -> dict:
    return {"signature_name": "predict_pixels", "instances": pixels.tolist()}


def grpc_pixels(name: str, pixels: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, "predict_pixels"
    request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(pixels))
    return request


def raw_exchange(server: Server, request: bytes) -> bytes:
    """Sends `request` bytes on a fresh connection; everything the server sends back until it closes."""
    host, port = server.rest.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT_SECONDS) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


class Output:
    """The server's output as it comes (read by a thread), so that a test can wait for a line."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if text in line]
            if found:
                return found[0].strip()
            time.sleep(0.1)
        pytest.fail(f"the server never printed {text!r}; its output:\n{''.join(self.lines)[-3000:]}")

    def text(self) -> str:
        self._reader.join(WAIT_SECONDS)
        return "".join(self.lines)


def accepted_connection(server: Server, name: str) -> http.client.HTTPConnection:
    """A keep-alive connection the server has accepted: a status request was answered on it."""
    host, port = server.rest.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT_SECONDS)
    connection.request("GET", f"/v1/models/{name}")
    connection.getresponse().read()
    return connection


def send_slow_requests(server: Server, name: str, body: bytes, count: int) -> list[http.client.HTTPConnection]:
    """`count` accepted connections, each sent a slow predict request whose answer is not read yet."""
    connections = [accepted_connection(server, name) for _ in range(count)]
    for connection in connections:
        connection.request("POST", f"/v1/models/{name}:predict", body=body,
                           headers={"Content-Type": "application/json"})
    return connections


def answers(connections: list[http.client.HTTPConnection]) -> list[str]:
    """Each connection's answer: its status and Connection header, or the error instead of one."""
    seen = []
    for connection in connections:
        try:
            response = connection.getresponse()
            response.read()
            seen.append(f"{response.status} Connection: {response.getheader('Connection')}")
        except (http.client.HTTPException, OSError) as error:
            seen.append(type(error).__name__)
    return seen


# --- 9. SIGTERM with requests under way --------------------------------------------------------


@pytest.mark.fault("serving", "SIGTERM with 8 large REST requests under way and an idle keep-alive connection",
                   "all 8 answered (200, Connection: close); the idle connection does not hold up the exit; exit 0")
def test_sigterm_finishes_the_rest_requests_under_way(model, slow_body, observed):
    name, serving_dir = model
    with running_server(serving_dir, *ONE_THREAD) as server:
        idle = accepted_connection(server, name)  # left open and idle
        under_way = send_slow_requests(server, name, slow_body, 8)
        server.process.send_signal(signal.SIGTERM)
        seen = answers(under_way)
        code = server.process.wait(WAIT_SECONDS)
        idle.close()
    observed(f"{seen.count('200 Connection: close')} of 8 answered 200 with Connection: close ({sorted(set(seen))}); "
             f"exit {code}")
    assert seen == ["200 Connection: close"] * 8
    assert code == 0


@pytest.mark.fault("serving", "a second SIGTERM while draining",
                   "the drain goes on: every request under way answered 200; logged; exit 0")
def test_a_second_sigterm_does_not_cut_the_drain_short(model, slow_body, observed):
    name, serving_dir = model
    with running_server(serving_dir, *ONE_THREAD) as server:
        output = Output(server.process)
        under_way = send_slow_requests(server, name, slow_body, 4)
        server.process.send_signal(signal.SIGTERM)
        output.wait_for("cnnpipe: stopping")
        server.process.send_signal(signal.SIGTERM)
        seen = answers(under_way)
        code = server.process.wait(WAIT_SECONDS)
        logged = output.wait_for("SIGTERM again")
    observed(f"{seen.count('200 Connection: close')} of 4 answered 200; exit {code}; logged: "
             f"{logged.split(' WARNING ')[-1]}")
    assert seen == ["200 Connection: close"] * 4
    assert code == 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (from /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_working(pid: int, since: float) -> None:
    """Waits until the server has spent half a CPU second on the requests just sent: they have arrived."""
    deadline = time.monotonic() + WAIT_SECONDS
    while cpu_seconds(pid) < since + 0.5 and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.fault("serving", "SIGTERM with 6 large gRPC requests under way",
                   "all 6 answered OK within --drain-seconds; exit 0")
def test_sigterm_finishes_the_grpc_requests_under_way(model, observed):
    name, serving_dir = model
    images = [encode(p) for p in fashion_mnist("t10k", SLOW_IMAGES)[0]]
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, "predict_image"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    with running_server(serving_dir, *ONE_THREAD) as server:
        channel = grpc.insecure_channel(server.grpc)
        grpc.channel_ready_future(channel).result(timeout=WAIT_SECONDS)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        before = cpu_seconds(server.process.pid)
        calls = [stub.Predict.future(request, timeout=WAIT_SECONDS) for _ in range(6)]
        wait_until_working(server.process.pid, before)
        server.process.send_signal(signal.SIGTERM)
        seen = []
        for call in calls:
            try:
                seen.append(f"OK {tf.make_ndarray(call.result().outputs['probabilities']).shape}")
            except grpc.RpcError as error:
                seen.append(f"{error.code().name}: {error.details()}")
        code = server.process.wait(WAIT_SECONDS)
    observed(f"{seen}; exit {code}")
    assert seen == [f"OK ({len(images)}, 10)"] * 6
    assert code == 0


@pytest.mark.fault("serving", "requests still running when --drain-seconds runs out",
                   "exit 1 naming them, without their answers; never SIGSEGV")
def test_a_drain_that_runs_out_exits_1_without_crashing(model, observed):
    """Each request is three times the slow one, so that those under way when SIGTERM comes cannot finish within
    the 0.2 s drain, however busy the machine was before (warmed-up versions answer fast)."""
    name, serving_dir = model
    images = [b64(encode(p)) for p in fashion_mnist("t10k", 3 * SLOW_IMAGES)[0]]
    slower_body = json.dumps({"signature_name": "predict_image", "instances": images}).encode()
    with running_server(serving_dir, "--drain-seconds", "0.2", "--max-batch-images", str(3 * SLOW_IMAGES),
                        *ONE_THREAD) as server:
        under_way = send_slow_requests(server, name, slower_body, 8)
        before = cpu_seconds(server.process.pid)
        wait_until_working(server.process.pid, before)
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(WAIT_SECONDS)
        seen = answers(under_way)
        output = server.process.stdout.read()
    message = [line for line in output.splitlines() if "still running after --drain-seconds" in line]
    observed(f"exit {code}: {message[0] if message else 'no message'}; the clients saw {sorted(set(seen))}")
    assert code == 1 and message


# --- 10. pixel values outside [0, 255] ------------------------------------------------------------

PIXEL_FAULTS = [
    ("NaN", [(0, float("nan"))], "this request has NaN"),
    ("-500 and 1e30", [(0, -500.0), (1, 1e30)], "this request has values from -500 to 1e+30"),
    ("infinity", [(2, float("inf"))], "this request has infinite values"),
]


@pytest.mark.parametrize("values, message", [
    pytest.param(values, message, id=kind, marks=pytest.mark.fault(
        "serving", f"predict_pixels with {kind}", f"HTTP 400: pixels must be finite values in [0, 255]; {message}"))
    for kind, values, message in PIXEL_FAULTS
])
def test_pixels_outside_0_255_are_refused_by_the_signature(server, model, pixels, values, message, observed):
    bad = pixels.copy()
    for image, value in values:
        bad[image, 3, 5, 0] = value
    answer = predict(server, model[0], pixel_request(bad))
    observed(f"HTTP {answer.status_code}: {answer.json()['error']}")
    assert answer.status_code == 400
    assert answer.json()["error"].endswith(f"pixels must be finite values in [0, 255]; {message}")
    assert predict(server, model[0], pixel_request(pixels)).status_code == 200


@pytest.mark.fault("serving", "predict_pixels with -500 and 1e30 over gRPC",
                   "INVALID_ARGUMENT: pixels must be finite values in [0, 255]; this request has values from -500 "
                   "to 1e+30")
def test_pixels_outside_0_255_are_refused_over_grpc(server, model, pixels, observed):
    bad = pixels.copy()
    bad[0, 0, 0, 0], bad[1, 0, 0, 0] = -500, 1e30
    with pytest.raises(grpc.RpcError) as error:
        server.predict_stub().Predict(grpc_pixels(model[0], bad), timeout=WAIT_SECONDS)
    observed(f"{error.value.code().name}: {error.value.details()}")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().endswith("this request has values from -500 to 1e+30")
    assert "node" not in error.value.details()  # no graph noise


# --- 11. REST parity with TF Serving --------------------------------------------------------------

VERB_FAULTS = [
    ("GET on :predict", "GET", ":predict", None, "Malformed request: GET /v1/models/NAME:predict"),
    ("POST :classify on predict signatures", "POST", ":classify", "examples", "Expected one or two output Tensors, "
     "found 4"),
    ("POST :regress on predict signatures", "POST", ":regress", "examples", "Expected one output Tensor."),
]


@pytest.mark.parametrize("method, verb, body, message", [
    pytest.param(method, verb, body, message, id=kind, marks=pytest.mark.fault("serving", kind, f"HTTP 400: {message}"))
    for kind, method, verb, body, message in VERB_FAULTS
])
def test_other_verbs_are_answered_as_tf_serving_answers_them(server, model, method, verb, body, message, observed):
    name = model[0]
    png = encode(fashion_mnist("t10k", 1)[0][0])
    data = json.dumps({"examples": [{"image": b64(png)}]}).encode() if body else None
    answer = requests.request(method, f"{server.rest}/v1/models/{name}{verb}", data=data, timeout=WAIT_SECONDS)
    observed(f"HTTP {answer.status_code}: {answer.json()['error']}")
    assert (answer.status_code, answer.json()["error"]) == (400, message.replace("NAME", name))


@pytest.mark.fault("serving", "a chunked body (Transfer-Encoding: chunked)",
                   "read as the same body with a Content-Length: the same 200 answer")
def test_a_chunked_body_is_read(server, model, pixels, observed):
    body = json.dumps(pixel_request(pixels)).encode()
    chunked = predict(server, model[0], iter([body[:1000], body[1000:5000], body[5000:]]))
    whole = predict(server, model[0], body)
    observed(f"HTTP {chunked.status_code}, {len(chunked.json().get('predictions', []))} predictions")
    assert chunked.status_code == 200, chunked.text
    assert chunked.json() == whole.json()


@pytest.mark.fault("serving", "a chunked body over --max-request-bytes",
                   "HTTP 413 naming the limit and the option")
def test_a_chunked_body_over_the_limit_is_refused(server, model, observed):
    flood = iter([b" " * 1_000_000] * 9)
    answer = predict(server, model[0], flood)
    observed(f"HTTP {answer.status_code}: {answer.json()['error']}")
    assert answer.status_code == 413
    assert f"over this server's limit of {MAX_REQUEST_BYTES} bytes" in answer.json()["error"]
    assert "--max-request-bytes" in answer.json()["error"]


# --- 12. a binary --model-config ------------------------------------------------------------------


def binary_file(path) -> str:
    """A real binary file (a PNG) where a models.config should be."""
    path.write_bytes(encode(fashion_mnist("t10k", 1)[0][0]))
    return str(path)


@pytest.mark.fault("serving", "a binary --model-config at start-up",
                   "exit 1 with one line: cnnpipe: FILE: not a TF Serving model config ...: byte N is not UTF-8 text")
def test_a_binary_model_config_stops_the_start_with_one_line(tmp_path, observed):
    config = binary_file(tmp_path / "models.config")
    rest_port, grpc_port = free_ports(2)
    result = cnnpipe("serve", "--model-config", config, "--host", "127.0.0.1", "--rest-port", str(rest_port),
                     "--grpc-port", str(grpc_port), cwd=tmp_path, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.startswith("cnnpipe")]
    observed(f"exit {result.returncode}: {' | '.join(lines)}")
    assert result.returncode == 1
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"cnnpipe: {config}: not a TF Serving model config")
    assert "is not UTF-8 text" in lines[0]


@pytest.mark.fault("serving", "the --model-config turns binary while serving",
                   "the loaded model goes on answering; the poller logs the file and what is wrong, once")
def test_a_model_config_that_turns_binary_is_logged_and_serving_goes_on(model, pixels, tmp_path, observed):
    name = model[0]
    serving_dir = copy_model(model, tmp_path)
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "{name}" base_path: "{serving_dir}/{name}" '
                      'model_platform: "tensorflow" } }')
    with running_server(serving_dir, "--model-config", str(config)) as server:
        output = Output(server.process)
        garbage = binary_file(tmp_path / "garbage")
        os.replace(garbage, config)
        logged = output.wait_for(f"{config}: not a TF Serving model config")
        answer = predict(server, name, pixel_request(pixels))
        alive = server.process.poll() is None
        server.process.terminate()
        server.process.wait(WAIT_SECONDS)
        text = output.text()
    observed(f"logged: {logged.split(' ERROR ')[-1]}; then HTTP {answer.status_code}")
    assert "is not UTF-8 text" in logged and "Traceback" not in text
    assert text.count(f"{config}: not a TF Serving model config") == 1  # not again at every poll
    assert answer.status_code == 200 and alive


# --- 13. too many images in one request -----------------------------------------------------------


@pytest.mark.fault("serving", "1025 images in one REST request (default --max-batch-images 1024)",
                   "HTTP 400 naming the limit and --max-batch-images")
def test_more_images_than_the_limit_are_refused_over_rest(server, model, observed):
    many = fashion_mnist("t10k", 1025)[0][..., None].astype(np.float32)
    answer = predict(server, model[0], pixel_request(many))
    observed(f"HTTP {answer.status_code}: {answer.json()['error']}")
    assert answer.status_code == 400
    assert "1025 images" in answer.json()["error"] and "at most 1024" in answer.json()["error"]
    assert "--max-batch-images" in answer.json()["error"]


@pytest.mark.fault("serving", "1025 images in one gRPC request (default --max-batch-images 1024)",
                   "INVALID_ARGUMENT naming the limit and --max-batch-images")
def test_more_images_than_the_limit_are_refused_over_grpc(server, model, observed):
    many = fashion_mnist("t10k", 1025)[0][..., None].astype(np.float32)
    with pytest.raises(grpc.RpcError) as error:
        server.predict_stub().Predict(grpc_pixels(model[0], many), timeout=WAIT_SECONDS)
    observed(f"{error.value.code().name}: {error.value.details()}")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1024" in error.value.details() and "--max-batch-images" in error.value.details()


# --- more faults: malformed bodies, versions and models that disappear ---------------------------

CONTENT_LENGTHS = [("abc", "not a number"), ("-5", "negative")]


@pytest.mark.parametrize("length", [
    pytest.param(length, id=kind, marks=pytest.mark.fault(
        "serving", f"Content-Length: {length} ({kind})", "HTTP 400 naming the header; the connection closes"))
    for length, kind in CONTENT_LENGTHS
])
def test_a_malformed_content_length_is_answered_400(server, model, length, observed):
    received = raw_exchange(server, (f"POST /v1/models/{model[0]}:predict HTTP/1.1\r\nHost: test\r\n"
                                     f"Content-Length: {length}\r\n\r\n{{}}").encode())
    status = received.split(b"\r\n")[0].decode() or "no answer: the connection closed"
    error = json.loads(received.partition(b"\r\n\r\n")[2] or b"{}").get("error", "")
    observed(f"{status}: {error}")
    assert status.endswith("400 Bad Request") and f"Content-Length '{length}'" in error
    assert b"\r\nConnection: close\r\n" in received


@pytest.mark.fault("serving", "a zero-length POST body",
                   "HTTP 400: JSON Parse error: The document is empty, naming the request")
def test_an_empty_body_is_named(server, model, observed):
    answer = predict(server, model[0], b"")
    observed(f"HTTP {answer.status_code}: {answer.json()['error']}")
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("JSON Parse error: The document is empty.")
    assert f"POST /v1/models/{model[0]}:predict came without a body" in answer.json()["error"]


@pytest.mark.fault("serving", "a client sends half its body and hangs up",
                   "the server drops that request quietly (no traceback) and goes on answering")
def test_a_client_that_hangs_up_mid_body_leaves_the_server_serving(model, pixels, observed):
    name, serving_dir = model
    body = json.dumps(pixel_request(pixels)).encode()
    with running_server(serving_dir) as server:
        output = Output(server.process)
        host, port = server.rest.removeprefix("http://").split(":")
        for _ in range(3):
            with socket.create_connection((host, int(port)), timeout=WAIT_SECONDS) as connection:
                connection.sendall(f"POST /v1/models/{name}:predict HTTP/1.1\r\nHost: test\r\n"
                                   f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
        answer = predict(server, name, body)
        server.process.terminate()
        server.process.wait(WAIT_SECONDS)
        text = output.text()
    observed(f"then HTTP {answer.status_code}; {'a traceback' if 'Traceback' in text else 'no traceback'} in the log")
    assert answer.status_code == 200
    assert "Traceback" not in text


def wait_for_statuses(server: Server, name: str, expected: dict[str, str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if {s["version"]: s["state"] for s in server.status(name)} == expected:
            return
        time.sleep(0.1)
    pytest.fail(f"the statuses never became {expected}: {server.status(name)}")


@pytest.mark.fault("serving", "the served version is deleted from disk while serving",
                   "the older version takes over; a request for the deleted one gets 404 naming the loaded versions")
def test_a_deleted_version_hands_over_to_the_older_one(model, pixels, tmp_path, observed):
    name = model[0]
    serving_dir = copy_model(model, tmp_path, versions=(1, 2))
    with running_server(serving_dir) as server:
        wait_for_statuses(server, name, {"2": "AVAILABLE"})
        shutil.rmtree(os.path.join(serving_dir, name, "2"))
        wait_for_statuses(server, name, {"2": "END", "1": "AVAILABLE"})
        deleted = predict(server, name, pixel_request(pixels), "/versions/2:predict")
        latest = server.predict_stub().Predict(grpc_pixels(name, pixels), timeout=WAIT_SECONDS)
    observed(f"version 2: HTTP {deleted.status_code}: {deleted.json()['error']}; latest answered by version "
             f"{latest.model_spec.version.value}")
    assert deleted.status_code == 404 and f"Specific({name}, 2); loaded versions: 1" in deleted.json()["error"]
    assert latest.model_spec.version.value == 1


@pytest.mark.fault("serving", "a new version's SavedModel has no meta graph tagged serve (only train)",
                   "the version ends with NOT_FOUND naming its path and the tags it has; the older one keeps serving")
def test_a_version_without_a_serve_meta_graph_is_not_served(model, pixels, tmp_path, observed):
    name = model[0]
    serving_dir = copy_model(model, tmp_path, versions=(1, 2))
    version_2 = os.path.join(serving_dir, name, "2")
    with open(os.path.join(version_2, "saved_model.pb"), "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    saved_model.meta_graphs[0].meta_info_def.tags[:] = ["train"]
    with open(os.path.join(version_2, "saved_model.pb"), "wb") as f:
        f.write(saved_model.SerializeToString())
    with running_server(serving_dir) as server:
        wait_for_statuses(server, name, {"2": "END", "1": "AVAILABLE"})
        status = {s["version"]: s["status"] for s in server.status(name)}["2"]
        answer = server.predict_stub().Predict(grpc_pixels(name, pixels), timeout=WAIT_SECONDS)
    observed(f"version 2: {status['error_code']}: {status['error_message']}; answered by version "
             f"{answer.model_spec.version.value}")
    assert status["error_code"] == "NOT_FOUND"
    assert f"{version_2}: no meta graph tagged ['serve']" in status["error_message"]
    assert "tags: ['train']" in status["error_message"]
    assert answer.model_spec.version.value == 1


@pytest.mark.fault("serving", "the model's whole directory disappears while serving, then comes back",
                   "404 naming the models served (none) while it is gone; served again once it is back")
def test_a_model_directory_that_disappears_and_comes_back(model, pixels, tmp_path, observed):
    name = model[0]
    serving_dir = copy_model(model, tmp_path)
    model_dir = os.path.join(serving_dir, name)
    with running_server(serving_dir) as server:
        os.rename(model_dir, tmp_path / "away")
        gone = wait_for_answer(lambda: predict(server, name, pixel_request(pixels)), 404)
        os.rename(tmp_path / "away", model_dir)
        back = wait_for_answer(lambda: predict(server, name, pixel_request(pixels)), 200)
    observed(f"gone: HTTP {gone.status_code}: {gone.json()['error']}; back: HTTP {back.status_code}")
    assert gone.status_code == 404 and "the models served here: none" in gone.json()["error"]
    assert back.status_code == 200


def wait_for_answer(call: Callable[[], requests.Response], status: int) -> requests.Response:
    """Calls until the answer has `status` (the poller has seen the change), within WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while (answer := call()).status_code != status and time.monotonic() < deadline:
        time.sleep(0.1)
    return answer
