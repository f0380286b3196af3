"""Ingestion speed on the 70,000 Fashion-MNIST IDX images: the reader alone, then through Beam.

Run: .venv/bin/python bench/ingestion.py [--data /usr/share/datasets/fashion-mnist]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import apache_beam as beam  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import json_format  # noqa: E402

from cnnpipe.components.ingestion import executor, formats, source  # noqa: E402
from cnnpipe.pipeline.datasets import FASHION_MNIST  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=FASHION_MNIST.path)
    args = parser.parse_args()
    data = source.detect(args.data, class_names=FASHION_MNIST.class_names)
    files = [f for pattern in data.split_patterns.values()
             for f in tf.io.gfile.glob(os.path.join(data.input_base, pattern))]

    start = time.perf_counter()
    count = sum(1 for path in files for _ in formats.read_idx(path, data.class_names))
    reader_seconds = time.perf_counter() - start
    print(f"reader alone (one process):      {count} images in {reader_seconds:6.1f}s = "
          f"{count / reader_seconds:7.0f} images/s")

    exec_properties = {
        "input_base": data.input_base,
        "custom_config": json_format.MessageToJson(executor.custom_config(data.format, data.class_names)),
    }
    start = time.perf_counter()
    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(["--direct_running_mode=in_memory"])) as p:
        counts = [
            p | f"Read{name}" >> executor.ReadImages(exec_properties, pattern)
            | f"Count{name}" >> beam.combiners.Count.Globally()
            for name, pattern in data.split_patterns.items()
        ]
        _ = (counts | beam.Flatten() | beam.CombineGlobally(sum)
             | beam.Map(lambda n: print(f"Beam counted {n} examples")))
    beam_seconds = time.perf_counter() - start
    print(f"ReadImages on Beam DirectRunner: {count} images in {beam_seconds:6.1f}s = "
          f"{count / beam_seconds:7.0f} images/s")


if __name__ == "__main__":
    main()
