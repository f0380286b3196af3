"""Seconds of a process's first `fit` and first SavedModel save, with tf_keras kept out of AutoGraph
(models/autograph.py, as `registry.build` does) and without (TensorFlow 2.16's own rules).

Each measurement is a fresh process: build a registry model, fit one epoch on `--images` real Fashion-MNIST
training images (batch 32, with validation on 300 t10k images), then save it as a SavedModel. The two sides
alternate for `--rounds` rounds; the table shows medians and the ratio (without / with: above 1, the exemption
is faster). Nothing is asserted.

    .venv/bin/python bench/first_fit.py [--model lenet5 --model resnet] [--images 1000] [--rounds 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import report  # noqa: E402 - bench/report.py, beside this script

SIDES = ("exempt", "converted")


def measure(model_name: str, images: int, side: str) -> dict[str, float]:
    """In this process: seconds of the first fit and of the first save of `model_name`."""
    import tensorflow as tf  # noqa: PLC0415 - each measurement's process imports its own
    import tf_keras as keras  # noqa: PLC0415

    from cnnpipe.core import features  # noqa: PLC0415
    from cnnpipe.models import autograph, registry, trainer  # noqa: PLC0415

    if side == "exempt":
        autograph.exempt_tf_keras()
    x, y = report.fashion_mnist_arrays("train", images)
    x_eval, y_eval = report.fashion_mnist_arrays("t10k", 300)
    as_input = lambda pixels: {features.IMAGE_XF: pixels[..., None].astype("float32") / 127.5 - 1}  # noqa: E731
    keras.utils.set_random_seed(0)
    model = trainer.compile_model(registry.get(model_name).build((28, 28, 1), 10), 1e-3)
    start = time.perf_counter()
    model.fit(as_input(x), y, batch_size=32, epochs=1, validation_data=(as_input(x_eval), y_eval), verbose=0)
    fitted = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        model.save(directory, save_format="tf")
        tf.saved_model.load(directory)  # the save is complete
    return {"fit": fitted - start, "save": time.perf_counter() - fitted}


def in_fresh_process(model_name: str, images: int, side: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", side, "--model", model_name, "--images", str(images)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="registry model(s) for 28x28x1 images (default lenet5)")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = args.model or ["lenet5"]
    if args.child:
        print(json.dumps(measure(models[0], args.images, args.child)))
        return
    rows = []
    for model_name in models:
        seen = {side: [] for side in SIDES}
        for round_number in range(args.rounds):
            for side in SIDES if round_number % 2 == 0 else reversed(SIDES):
                seen[side].append(in_fresh_process(model_name, args.images, side))
                print(f"{model_name} round {round_number + 1} {side}: {seen[side][-1]}", flush=True)
        for step in ("fit", "save"):
            exempt, converted = (statistics.median(m[step] for m in seen[side]) for side in SIDES)
            rows.append([model_name, f"first {step}", f"{exempt:.2f}", f"{converted:.2f}", f"{converted / exempt:.1f}"])
    table = report.markdown_table(
        f"Median of {args.rounds} fresh processes per side, {args.images} training images, seconds:",
        ["model", "step", "tf_keras exempt", "tf_keras converted", "converted / exempt"], rows)
    print("\n" + table)


if __name__ == "__main__":
    main()
