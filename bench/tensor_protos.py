"""TensorProto conversions: serving/tensors.py's against TensorFlow's, side by side in one run.

`cnnpipe serve` reads every gRPC request's TensorProtos with `tensors.from_proto` and writes every
response's with `tensors.write_proto` (into the typed fields, float_val …, as TF Serving answers); TensorFlow's are
`tf.make_ndarray` and `tf.make_tensor_proto` (into tensor_content, plus the copy into the response's map entry).
Each tensor is converted both ways, requests in the forms clients send: `tensor_content` (what `tf.make_tensor_proto`
writes) and the repeated fields (float_val, int64_val, string_val; TF Serving clients in other languages often
send float_val).
`from_proto` includes its dtype and shape checks against the signature. The two sides alternate
within each round; the figures are medians over the rounds, the ratio is TensorFlow's time over
ours (above 1: ours is faster), the median of the rounds' ratios.

    .venv/bin/python bench/tensor_protos.py [--rounds 15] [--round-ms 40]
"""

import argparse
import dataclasses
import io
import os
import statistics
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402

import report  # noqa: E402 - bench/report.py, beside this script
from cnnpipe.pipeline.datasets import FASHION_MNIST  # noqa: E402
from cnnpipe.serving import tensors  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    ours: Callable[[], object]
    theirs: Callable[[], object]


def repeated_fields(array: np.ndarray) -> tensor_pb2.TensorProto:
    """`array` as a TensorProto with its values in the repeated field of its dtype, as many clients send it."""
    proto = tensor_pb2.TensorProto(dtype=tf.as_dtype(array.dtype).as_datatype_enum)
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape)
    field = {np.float32: proto.float_val, np.int64: proto.int64_val}[array.dtype.type]
    field.extend(array.reshape(-1).tolist())
    return proto


def pngs(count: int) -> np.ndarray:
    """Real Fashion-MNIST test images as PNG bytes (about 300 bytes each), a DT_STRING input's values."""
    def png(pixels: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()
    images, _ = report.fashion_mnist_arrays("t10k", count)
    return np.array([png(pixels) for pixels in images], dtype=object)


def decode(name: str, proto: tensor_pb2.TensorProto, spec: tf.TensorSpec) -> Case:
    return Case(f"read   {name}", lambda: tensors.from_proto(proto, spec, "x"), lambda: tf.make_ndarray(proto))


def encode(name: str, array: np.ndarray) -> Case:
    """Writing `array` into a fresh PredictResponse's map entry, as the server answers."""
    def ours() -> None:
        tensors.write_proto(array, predict_pb2.PredictResponse().outputs["x"])

    def theirs() -> None:
        predict_pb2.PredictResponse().outputs["x"].CopyFrom(tf.make_tensor_proto(array))
    return Case(f"write  {name}", ours, theirs)


def cases() -> list[Case]:
    rng = np.random.default_rng(0)
    images, _ = report.fashion_mnist_arrays("t10k", 1024)
    pixels = images[..., None].astype(np.float32)
    probabilities = rng.dirichlet(np.ones(10), 1024).astype(np.float32)
    class_ids = probabilities.argmax(axis=1).astype(np.int64)
    class_names = np.array([FASHION_MNIST.class_names[i].encode() for i in class_ids], dtype=object)
    png = pngs(64)
    pixel_spec = tf.TensorSpec([None, 28, 28, 1], tf.float32)
    string_spec = tf.TensorSpec([None], tf.string)
    found = []
    for rows in (1024, 1):
        found += [
            decode(f"pixels f32 [{rows},28,28,1] tensor_content", tf.make_tensor_proto(pixels[:rows]), pixel_spec),
            decode(f"pixels f32 [{rows},28,28,1] float_val", repeated_fields(pixels[:rows]), pixel_spec),
            encode(f"pixels f32 [{rows},28,28,1]", pixels[:rows]),
        ]
    for rows in (64, 1):
        found += [decode(f"images PNG [{rows}] string_val", tf.make_tensor_proto(png[:rows], tf.string), string_spec),
                  encode(f"images PNG [{rows}]", png[:rows])]
    found += [
        encode("probabilities f32 [1024,10]", probabilities),
        encode("probabilities f32 [1,10]", probabilities[:1]),
        encode("class_ids i64 [1024]", class_ids),
        encode("class_names str [1024]", class_names),
        encode("class_names str [1]", class_names[:1]),
        decode("probabilities f32 [1024,10] tensor_content", tf.make_tensor_proto(probabilities),
               tf.TensorSpec([None, 10], tf.float32)),
        decode("probabilities f32 [1024,10] float_val", repeated_fields(probabilities),
               tf.TensorSpec([None, 10], tf.float32)),
        decode("class_ids i64 [1024] int64_val", repeated_fields(class_ids), tf.TensorSpec([None], tf.int64)),
        decode("class_names str [1024] string_val", tf.make_tensor_proto(class_names, tf.string), string_spec),
    ]
    return found


def per_call_us(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e6


def measure(case: Case, rounds: int, round_ms: float) -> tuple[float, float, float]:
    """Median µs per call of ours and TensorFlow's, and the median of the rounds' ratios (theirs / ours)."""
    slower = max(per_call_us(case.ours, 3), per_call_us(case.theirs, 3))  # warm-up, and the calls per round
    calls = max(1, int(round_ms * 1000 / slower))
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(per_call_us(case.ours, calls))
        theirs.append(per_call_us(case.theirs, calls))
    return statistics.median(ours), statistics.median(theirs), statistics.median(t / o for o, t in zip(ours, theirs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds per case, each side once a round (default 15)")
    parser.add_argument("--round-ms", type=float, default=40, help="time per side and round (default 40 ms)")
    args = parser.parse_args()
    print(f"{'case':<50} {'tensors.py µs':>14} {'TensorFlow µs':>14} {'TF / ours':>10}")
    for case in cases():
        ours, theirs, ratio = measure(case, args.rounds, args.round_ms)
        print(f"{case.name:<50} {ours:>14,.1f} {theirs:>14,.1f} {ratio:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
