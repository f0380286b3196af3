"""Memory of `cnnpipe serve` around large requests: its RSS after start-up, after one small request (the
warm-up: graphs and kernels built), then after each phase of `--requests` requests of `--images` real
Fashion-MNIST images each (predict_pixels, the largest input per image): over REST one after another, over
REST from 4 clients at once, and over gRPC; the phases run `--rounds` times, so that growth (or a plateau)
would show; then idle.

Prints the RSS (and the peak so far) after each phase, from /proc, with the phase's requests/s, and how far the
last RSS is above the warm-up's; nothing is asserted. Only loopback traffic.

    .venv/bin/python bench/serving_memory.py [--serving-dir cnnpipe-output/serving] [--model fashion_mnist]
                                             [--images 1024] [--requests 8] [--rounds 2]
                                             [--phase rest|rest4|grpc ...] [--serve-arg OPTION ...]
"""

import argparse
import json
import threading
import time
import urllib.error
import urllib.request

from serving_load import start_server  # first: it keeps TensorFlow's start-up chatter quiet

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

import report  # noqa: E402 - bench/report.py, beside this script

SIGNATURE = "predict_pixels"
IDLE_SECONDS = 5


def print_memory(pid: int, after: str, rate: str = "") -> float:
    """Prints the process's resident set and its peak so far, in MB (and `rate`); returns the resident set."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        fields = dict(line.split(":", 1) for line in f)
    rss, peak = (int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM"))
    print(f"{after:36} {rss:>8.0f} {peak:>8.0f} {rate:>10}", flush=True)
    return rss


def rest_predict(port: int, model: str, body: bytes) -> None:
    """One REST predict call; a refusal (over --max-batch-images) counts as a call too."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{model}:predict", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
    except urllib.error.HTTPError as error:
        error.read()


def grpc_predict(stub: prediction_service_pb2_grpc.PredictionServiceStub, request: predict_pb2.PredictRequest) -> None:
    """One gRPC predict call; a refusal counts as a call too."""
    try:
        stub.Predict(request, timeout=300)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serving-dir", default="cnnpipe-output/serving")
    parser.add_argument("--model", default="fashion_mnist")
    parser.add_argument("--images", type=int, default=1024, help="images per request (default 1024, the default "
                        "--max-batch-images)")
    parser.add_argument("--requests", type=int, default=8, help="requests per phase (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="times the phases run (default 2)")
    parser.add_argument("--phase", action="append", choices=["rest", "rest4", "grpc"], metavar="PHASE",
                        help="run only this phase (rest, rest4: 4 REST clients at once, grpc), repeatable "
                        "(default: all three)")
    parser.add_argument("--serve-arg", action="append", default=[], metavar="OPTION",
                        help="another `cnnpipe serve` option, repeatable, e.g. --serve-arg=--enable-batching")
    args = parser.parse_args()

    pixels = report.fashion_mnist_arrays("t10k", args.images)[0][..., None].astype(np.float32)
    body = json.dumps({"signature_name": SIGNATURE, "instances": pixels.tolist()}).encode()
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = args.model, SIGNATURE
    request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(pixels))
    server, rest_port, grpc_port = start_server(args.serving_dir, args.serve_arg)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))

    def concurrently() -> None:
        clients = [threading.Thread(target=rest_predict, args=(rest_port, args.model, body)) for _ in range(4)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()

    phases = {
        "rest": ("REST, one at a time", 1, lambda: rest_predict(rest_port, args.model, body)),
        "rest4": ("REST, 4 clients at once", 4, concurrently),
        "grpc": ("gRPC, one at a time", 1, lambda: grpc_predict(stub, request)),
    }
    phases = [phases[name] for name in args.phase or phases]
    print(f"cnnpipe serve {' '.join(args.serve_arg)}; {args.requests} requests of {args.images} images "
          f"({len(body) / 1e6:.1f} MB of JSON) per phase\n")
    print(f"{'after':36} {'RSS MB':>8} {'peak MB':>8} {'requests/s':>10}")
    small = json.dumps({"signature_name": SIGNATURE, "instances": pixels[:4].tolist()}).encode()
    try:
        print_memory(server.pid, "start-up")
        rest_predict(rest_port, args.model, small)
        warm = print_memory(server.pid, "a warm-up request of 4 images")
        requests = 0
        for round_ in range(1, args.rounds + 1):
            for name, per_call, call in phases:
                start = time.perf_counter()
                for _ in range(args.requests):
                    call()
                rate = args.requests * per_call / (time.perf_counter() - start)
                requests += args.requests * per_call
                print_memory(server.pid, f"round {round_}: {name}", f"{rate:.2f}")
        time.sleep(IDLE_SECONDS)
        idle = print_memory(server.pid, f"{IDLE_SECONDS} s more, idle")
        print(f"\nafter {requests} large requests: {idle - warm:+.0f} MB "
              f"({idle / warm:.2f}x) over the warm-up's RSS")
    finally:
        server.terminate()
        server.wait(timeout=120)


if __name__ == "__main__":
    main()
