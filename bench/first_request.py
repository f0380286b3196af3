"""The first request after a version loads, with and without its warmup requests
(assets.extra/tf_serving_warmup_requests).

Copies the newest pushed version into two serving directories, one without its warmup file, and starts `cnnpipe serve`
on each in turn (`--rounds` times, alternating): once the version is AVAILABLE, it times the first REST `predict_image`
request (one real Fashion-MNIST test image, on a connection opened by a status request, so that the TCP set-up is not
counted), then `--requests` more on it for the steady p50. Prints each round and the
medians, and the first request as a multiple of the steady p50.

    .venv/bin/python bench/first_request.py [--serving-dir cnnpipe-output/serving] [--model fashion_mnist]
                                            [--rounds 5] [--requests 100]
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import tempfile
import time

from serving_load import png, rest_caller, start_server  # bench/serving_load.py, beside this script

import report  # noqa: E402 - bench/report.py, beside this script
from cnnpipe.serving import warmup  # noqa: E402
from cnnpipe.serving.client import local_model_dir  # noqa: E402


def available(port: int, model: str) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", f"/v1/models/{model}")
        response = connection.getresponse()
        body = response.read()
    except OSError:
        return False
    return response.status == 200 and any(v["state"] == "AVAILABLE" for v in json.loads(body)["model_version_status"])


def one_round(serving_dir: str, model: str, image: bytes, requests: int) -> tuple[float, float]:
    """A fresh server on `serving_dir`: the first request's seconds once the version is AVAILABLE, and the steady
    p50 of the next `requests`."""
    server, rest_port, _ = start_server(serving_dir, [])
    try:
        deadline = time.monotonic() + 180
        while not available(rest_port, model):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cnnpipe serve on {serving_dir} did not make {model} AVAILABLE")
            time.sleep(0.05)
        call = rest_caller(rest_port, model, "predict_image", [image], connected=True)()
        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
        steady = []
        for _ in range(requests):
            start = time.perf_counter()
            call()
            steady.append(time.perf_counter() - start)
        return first, statistics.median(steady)
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving-dir", default="cnnpipe-output/serving")
    parser.add_argument("--model", default="fashion_mnist")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()

    version = local_model_dir(args.serving_dir, args.model, None)
    if not os.path.exists(warmup.warmup_file(version)):
        raise SystemExit(f"{version} has no warmup requests; push a model with this code first (make run).")
    image = png(report.fashion_mnist_arrays("t10k", 1)[0][0])
    results: dict[str, list[tuple[float, float]]] = {"with warmup": [], "without": []}
    with tempfile.TemporaryDirectory() as scratch:
        dirs = {}
        for case in results:
            dirs[case] = os.path.join(scratch, case.replace(" ", "_"))
            shutil.copytree(version, os.path.join(dirs[case], args.model, os.path.basename(version)))
        os.remove(warmup.warmup_file(os.path.join(dirs["without"], args.model, os.path.basename(version))))
        for round_number in range(args.rounds):
            for case in results:
                first, p50 = one_round(dirs[case], args.model, image, args.requests)
                results[case].append((first, p50))
                print(f"round {round_number + 1} {case:12} first {first * 1000:7.1f} ms, steady p50 "
                      f"{p50 * 1000:5.1f} ms", flush=True)
    print(f"\n{version}, {args.rounds} rounds, medians:")
    for case, rounds in results.items():
        first, p50 = statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds)
        print(f"  {case:12} first request {first * 1000:7.1f} ms, steady p50 {p50 * 1000:5.1f} ms: first = "
              f"{first / p50:.1f}x p50")


if __name__ == "__main__":
    main()
