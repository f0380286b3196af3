"""Promote and roll back under load: 16 gRPC clients call the `stable` label of `cnnpipe serve --model-config` while
`cnnpipe promote canary` and `cnnpipe rollback` alternate `--switches` times.

Copies the newest pushed version as versions 1 and 2 of a scratch serving directory, promotes 1, labels 2 the canary
(as a push under labels does), and prints the requests answered, those failed, the versions that answered, and the
p50/p99 latency during the switches against before them.

    .venv/bin/python bench/rollout_load.py [--serving-dir cnnpipe-output/serving] [--model fashion_mnist]
                                           [--clients 16] [--switches 6]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import report  # bench/report.py, beside this script
from serving_load import png, start_server  # bench/serving_load.py
from cnnpipe.serving import model_config, rollout
from cnnpipe.serving.client import local_model_dir


def call_stable(port: int, model: str, image: bytes, stop: threading.Event, out: list) -> None:
    """Calls `stable` until `stop`: (time, seconds, version or error) per call into `out`."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.version_label = model, rollout.STABLE
    request.model_spec.signature_name = "predict_image"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([image]))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    while not stop.is_set():
        start = time.perf_counter()
        try:
            answer = stub.Predict(request, timeout=60)
            out.append((start, time.perf_counter() - start, answer.model_spec.version.value))
        except grpc.RpcError as error:
            out.append((start, time.perf_counter() - start, f"{error.code()}: {error.details()}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving-dir", default="cnnpipe-output/serving")
    parser.add_argument("--model", default="fashion_mnist")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--switches", type=int, default=6)
    args = parser.parse_args()

    version = local_model_dir(args.serving_dir, args.model, None)
    image = png(report.fashion_mnist_arrays("t10k", 1)[0][0])
    with tempfile.TemporaryDirectory() as scratch:
        serving = os.path.join(scratch, "serving")
        for number in (1, 2):
            shutil.copytree(version, os.path.join(serving, args.model, str(number)))
        model_config.write(serving)
        rollout.promote(serving, args.model, 1)
        rollout.push(serving, args.model, 2)
        server, _, grpc_port = start_server(serving, ["--model-config", os.path.join(serving, "models.config"),
                                                      "--poll-seconds", "0.2"])
        calls: list = []
        stop = threading.Event()
        try:
            time.sleep(5)  # both versions load and warm up
            threads = [threading.Thread(target=call_stable, args=(grpc_port, args.model, image, stop, calls))
                       for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            time.sleep(5)
            switched_at = time.perf_counter()
            for switch in range(args.switches):
                if switch % 2 == 0 and switch:  # version 2 the canary again, as a push of it would make it
                    rollout.push(serving, args.model, 2)
                command = ["promote", "canary"] if switch % 2 == 0 else ["rollback"]
                subprocess.run([sys.executable, "-m", "cnnpipe.cli.main", *command, "--serving-dir", serving,
                                "--model-name", args.model], check=True, capture_output=True)
                time.sleep(2)
            stop.set()
            for thread in threads:
                thread.join()
        finally:
            stop.set()
            server.terminate()
            server.wait(timeout=60)
    failed = [c for c in calls if isinstance(c[2], str)]
    before = [c[1] for c in calls if c[0] < switched_at and not isinstance(c[2], str)]
    during = [c[1] for c in calls if c[0] >= switched_at and not isinstance(c[2], str)]
    answered_by = sorted({c[2] for c in calls if not isinstance(c[2], str)})
    print(f"{len(calls)} requests from {args.clients} clients over {args.switches} switches: {len(failed)} failed; "
          f"answered by versions {answered_by}")
    for name, values in (("before the switches", before), ("during them", during)):
        print(f"  {name}: {len(values)} requests, p50 {np.percentile(values, 50) * 1000:.1f} ms, "
              f"p99 {np.percentile(values, 99) * 1000:.1f} ms")
    for error in sorted({c[2] for c in failed})[:5]:
        print(f"  failure: {error}")


if __name__ == "__main__":
    main()
