"""REST body parsing: `serving/json_body.loads` against `json.loads`, each followed by `tensors.from_rest`, as
`cnnpipe serve` reads a `predict_pixels` request, on real Fashion-MNIST test images (pixels as integers 0-255 and
as floats 0-1). Checks that both give the same array, then prints the median time of each side, the two sides
alternating, and the ratio.

    .venv/bin/python bench/json_body.py [--images 1024] [--rounds 7]
"""

import argparse
import json
import statistics
import time

import numpy as np
import tensorflow as tf

import report  # bench/report.py, beside this script
from cnnpipe.serving import json_body, tensors

SPECS = {"pixels": tf.TensorSpec([None, 28, 28, 1], tf.float32)}


def seconds(parse, body: bytes) -> float:
    start = time.perf_counter()
    tensors.from_rest(parse(body), SPECS)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    images = report.fashion_mnist_arrays("t10k", args.images)[0][..., None]
    print(f"{'pixels':<10} {'body MB':>8} {'json.loads s':>13} {'json_body s':>12} {'ratio':>7}")
    for kind, pixels in (("0-255", images.astype(int)), ("0-1", images / 255)):
        body = json.dumps({"signature_name": "predict_pixels", "instances": pixels.tolist()}).encode()
        assert np.array_equal(tensors.from_rest(json_body.loads(body), SPECS)[0]["pixels"],
                              tensors.from_rest(json.loads(body), SPECS)[0]["pixels"])
        times = {json.loads: [], json_body.loads: []}
        for _ in range(args.rounds):
            for parse in times:
                times[parse].append(seconds(parse, body))
        theirs, ours = (statistics.median(times[parse]) for parse in (json.loads, json_body.loads))
        print(f"{kind:<10} {len(body) / 1e6:>8.1f} {theirs:>13.3f} {ours:>12.3f} {theirs / ours:>6.1f}x", flush=True)


if __name__ == "__main__":
    main()
