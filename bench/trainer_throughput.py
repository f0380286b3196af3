"""Images/s of the Trainer's training loop vs bare tf-keras on the same images in memory.

Uses the Transform output of a finished pipeline run (default: ./cnnpipe-output). Both sides
train the same model with the same batch size; the first epoch (tracing, cache fill) is not
timed. Run: .venv/bin/python bench/trainer_throughput.py [--output DIR] [--epochs 3]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras as keras  # noqa: E402

from cnnpipe.core import features  # noqa: E402
from cnnpipe.models import trainer, training_config  # noqa: E402
from cnnpipe.runners import local_runner  # noqa: E402
from cnnpipe.pipeline import metadata  # noqa: E402
from cnnpipe.pipeline.config import PipelineConfig  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def timed_fit(model: keras.Model, epochs: int, **fit_args) -> float:
    """Seconds per epoch, the first epoch excluded."""
    timer = EpochTimer()
    model.fit(epochs=epochs, callbacks=[timer], verbose=0, **fit_args)
    return float(np.mean(timer.seconds[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=PipelineConfig().output_dir, help="output dir of a finished run")
    parser.add_argument("--name", default=PipelineConfig().name, help="pipeline name")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", action="append", help="registry model(s) for 28x28x1 images, repeatable "
                        "(default lenet5)")
    args = parser.parse_args()

    _, outputs = metadata.run_outputs(local_runner.metadata_path(args.output), args.name)
    transform_graph = outputs["transform_graph"].uri
    train_files = [os.path.join(outputs["transformed_examples"].uri, "Split-train", "*")]
    tft_output = tft.TFTransformOutput(transform_graph)
    configs = [
        training_config.TrainingConfig(model=name, input_shape=(28, 28, 1), class_names=tuple(map(str, range(10))))
        for name in args.model or ["lenet5"]
    ]
    batch_size, strategy_name = configs[0].batch_size, configs[0].strategy  # the Trainer's defaults

    dataset = trainer.input_fn(trainer.tf_example_files(), train_files, tft_output, batch_size, shuffle=True)
    images, labels = [], []
    for batch, label in dataset:
        images.append(batch[features.IMAGE_XF].numpy())
        labels.append(label.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)
    count = len(labels)
    print(f"{count} transformed training images from {transform_graph}")

    strategy = trainer.make_strategy(strategy_name)
    for config in configs:
        with strategy.scope():
            pipeline_model = trainer.compile_model(trainer.build_model(config), config.learning_rate)
        pipeline_seconds = timed_fit(pipeline_model, args.epochs, x=dataset)
        bare_model = trainer.compile_model(trainer.build_model(config), config.learning_rate)
        bare_seconds = timed_fit(bare_model, args.epochs, x=images, y=labels, batch_size=batch_size, shuffle=True)
        pipeline_rate, bare_rate = count / pipeline_seconds, count / bare_seconds
        print(f"{config.model} ({pipeline_model.count_params():,} parameters), batch {batch_size}:")
        print(f"  Trainer loop (TFXIO from TFRecords, {strategy_name} strategy): {pipeline_rate:8.0f} images/s")
        print(f"  bare tf-keras (NumPy arrays in memory, no strategy):      {bare_rate:8.0f} images/s")
        print(f"  ratio Trainer / bare: {pipeline_rate / bare_rate:.2f}  (target >= 0.9)", flush=True)

if __name__ == "__main__":
    main()
