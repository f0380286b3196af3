"""Load on `cnnpipe serve`: REST and gRPC, batch 1 and 32, 1 and 16 concurrent clients.

Prints throughput, p50 and p99 latency per case and the ratio of the server's throughput to calling
the SavedModel's signature (`predict_image`, or `--signature search`) in this process with the same batch and
concurrency. The server answers `search` from the version's ScaNN index, the SavedModel by exact search. Requests are
real Fashion-MNIST test images as PNG (b64 over REST). Only loopback traffic; every case is bounded
in time and count.

    .venv/bin/python bench/serving_load.py [--serving-dir cnnpipe-output/serving] [--model fashion_mnist]
                                           [--seconds 10] [--no-batching] [--serve-arg OPTION ...]
                                           [--signature predict_image|search] [--batches 1,32]
"""

import argparse
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

import report  # noqa: E402 - bench/report.py, beside this script
from cnnpipe.serving.client import OUTPUTS, local_model_dir  # noqa: E402

MAX_REQUESTS_PER_CASE = 200_000


def png(pixels: np.ndarray) -> bytes:
    import io  # noqa: PLC0415

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(serving_dir: str, options: list[str]) -> tuple[subprocess.Popen, int, int]:
    rest_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "cnnpipe.cli.main", "serve", "--serving-dir", serving_dir,
               "--host", "127.0.0.1", "--rest-port", str(rest_port), "--grpc-port", str(grpc_port), *options]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=5)
            connection.request("GET", "/v1/models/none")
            connection.getresponse().read()
            return server, rest_port, grpc_port
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"cnnpipe serve exited with {server.returncode}: {' '.join(command)}")
            time.sleep(0.2)
    raise SystemExit("cnnpipe serve did not start within 2 minutes")


def rest_caller(port: int, model: str, signature: str, images: list[bytes],
                connected: bool = False) -> Callable[[], Callable[[], None]]:
    """A maker of clients that each POST the images to `signature` on one keep-alive connection (`connected`: opened
    with a status request first, so that a timed first call does not include the connection's setup)."""
    body = json.dumps({"signature_name": signature,
                       "instances": [{"b64": base64.b64encode(image).decode()} for image in images]}).encode()
    headers = {"Content-Type": "application/json"}

    def new_client() -> Callable[[], None]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        if connected:
            connection.request("GET", f"/v1/models/{model}")
            connection.getresponse().read()

        def call() -> None:
            connection.request("POST", f"/v1/models/{model}:predict", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(payload.decode()[:300])

        return call

    return new_client


def grpc_caller(port: int, model: str, signature: str, images: list[bytes]) -> Callable[[], Callable[[], None]]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = model, signature
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))

    def new_client() -> Callable[[], None]:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        return lambda: stub.Predict(request, timeout=60)

    return new_client


def in_process_caller(model_dir: str, signature: str, images: list[bytes]) -> Callable[[], Callable[[], None]]:
    function = tf.saved_model.load(model_dir).signatures[signature]
    tensor, output = tf.constant(images), OUTPUTS[signature][0]
    return lambda: (lambda: function(images=tensor)[output].numpy())


def measure(new_client: Callable[[], Callable[[], None]], clients: int, seconds: float) -> dict[str, float]:
    """Each client calls in a loop for `seconds` (after one warm-up call); latencies of every call."""
    calls = [new_client() for _ in range(clients)]
    for call in calls:
        call()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    start = time.perf_counter()
    deadline = start + seconds

    def loop(index: int) -> None:
        while time.perf_counter() < deadline and len(latencies[index]) < MAX_REQUESTS_PER_CASE // clients:
            began = time.perf_counter()
            calls[index]()
            latencies[index].append(time.perf_counter() - began)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    every = np.concatenate([np.array(lat) for lat in latencies]) * 1000
    return {"requests/s": len(every) / elapsed, "p50 ms": float(np.percentile(every, 50)),
            "p99 ms": float(np.percentile(every, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serving-dir", default="cnnpipe-output/serving")
    parser.add_argument("--model", default="fashion_mnist")
    parser.add_argument("--seconds", type=float, default=10.0, help="per case (default 10)")
    parser.add_argument("--no-batching", action="store_true", help="serve without request batching")
    parser.add_argument("--serve-arg", action="append", default=[], metavar="OPTION",
                        help="another `cnnpipe serve` option, repeatable, e.g. --serve-arg=--num-batch-threads=1")
    parser.add_argument("--signature", choices=sorted(OUTPUTS), default="predict_image")
    parser.add_argument("--batches", default="1,32", help="images per request, comma-separated (default 1,32)")
    args = parser.parse_args()

    model_dir = local_model_dir(args.serving_dir, args.model)
    pixels, _ = report.fashion_mnist_arrays("t10k", 32)
    images = [png(p) for p in pixels]
    options = ([] if args.no_batching else ["--enable-batching"]) + args.serve_arg
    server, rest_port, grpc_port = start_server(args.serving_dir, options)
    print(f"model {model_dir}, signature {args.signature}; cnnpipe serve {' '.join(options)}; "
          f"{args.seconds:g} s per case; {os.cpu_count()} CPU cores shared by clients and server\n")
    print(f"{'path':10} {'batch':>5} {'clients':>7} {'requests/s':>11} {'images/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'vs in-process':>13}")
    try:
        for batch in map(int, args.batches.split(",")):
            for clients in (1, 16):
                local = measure(in_process_caller(model_dir, args.signature, images[:batch]), clients, args.seconds)
                rows = [("in-process", local)]
                for name, caller in (("REST", rest_caller), ("gRPC", grpc_caller)):
                    port = rest_port if name == "REST" else grpc_port
                    rows.append((name, measure(caller(port, args.model, args.signature, images[:batch]), clients,
                                               args.seconds)))
                for name, figures in rows:
                    ratio = figures["requests/s"] / local["requests/s"]
                    print(f"{name:10} {batch:>5} {clients:>7} {figures['requests/s']:>11.1f} "
                          f"{figures['requests/s'] * batch:>9.0f} {figures['p50 ms']:>7.2f} {figures['p99 ms']:>7.2f} "
                          f"{ratio:>13.2f}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
