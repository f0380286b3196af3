"""run_fn: the TFX Trainer's entry point. Reads transformed examples, trains, exports.

The Trainer's custom_config (a dict, see `TrainingConfig`) chooses the model, its input shape,
the class names, the epochs, the batch size and the tf.distribute strategy. It trains on the `train` split and
scores every epoch on the `validation` split (the Trainer's eval split), keeping the best epoch (best_epoch.py).
"""

import functools
import os
import tempfile
from typing import Any, Callable, Optional

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx.components.util import tfxio_utils
from tfx.proto import example_gen_pb2
from tfx_bsl.public import tfxio

from cnnpipe.core.errors import TrainingError
from cnnpipe.core import features
from cnnpipe.models import (adversarial_training, best_epoch, blocks, collapse_check, embedding, registry, signatures,
                            warm_start)
from cnnpipe.models.training_config import STRATEGIES, WARM_START_LATEST, TrainingConfig, tuned_line

def make_strategy(name: str) -> tf.distribute.Strategy:
    """`mirrored` (all local devices), `multi_worker` (workers from TF_CONFIG) or `one_device`."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    raise ValueError(f"unknown strategy '{name}'; choose one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the outputs: always, unless it is a non-chief multi-worker task."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def augmentation(translate: float, flip: bool) -> Optional[keras.Sequential]:
    """Random shifts and horizontal flips for training batches; None when both are off.

    They run in the Trainer's input pipeline, not in Transform, so serving never sees them.
    """
    steps = []
    if translate:
        steps.append(keras.layers.RandomTranslation(translate, translate, fill_mode="nearest"))
    if flip:
        steps.append(keras.layers.RandomFlip("horizontal"))
    return keras.Sequential(steps, name="augmentation") if steps else None


MAX_NORMALIZED_PIXEL = 10.0  # normalized pixels lie in [-1, 1] or within a few standard deviations
NOT_NORMALIZED = (
    "Trainer inputs are not normalized (pixels beyond ±10, e.g. raw 0-255); the models and their learning rates "
    "expect normalized pixels. Normalize in preprocessing_fn (--normalization scale or standardize)."
)


def require_normalized(images: tf.Tensor) -> tf.Tensor:
    """`images`, once checked to be normalized; raw [0, 255] pixels stop training (docs/pitfalls.md)."""
    check = tf.debugging.assert_less_equal(
        tf.reduce_max(tf.abs(images)),
        MAX_NORMALIZED_PIXEL,
        message=NOT_NORMALIZED,
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


def input_fn(
    data_accessor: DataAccessor,
    file_patterns: list[str],
    tft_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle: bool = False,
    augment: Optional[keras.Sequential] = None,
    two_views: bool = False,
) -> tf.data.Dataset:
    """Transformed examples as ({image_xf}, label) batches, read by TFX's TFXIO, cached and prefetched.

    `shuffle` reshuffles the whole split every epoch (no buffer size to tune: examples stored by class would
    otherwise reach the model one class at a time); without it the file order is kept, for evaluation.
    `augment` transforms each batch, or, with `two_views`, makes two views of every image of it, with the targets of
    the instance term (`embedding.two_views`).
    """
    dataset = data_accessor.tf_dataset_factory(
        file_patterns,
        tfxio.TensorFlowDatasetOptions(batch_size=1024, shuffle=False, num_epochs=1, label_key=features.LABEL_XF),
        tft_output.transformed_metadata.schema,
    ).unbatch().cache()
    options = tf.data.Options()  # multi-worker: each worker takes its share of the examples, not of the files
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    if shuffle:  # counting fills the cache that the epochs then read
        dataset = dataset.shuffle(int(dataset.reduce(0, lambda count, _: count + 1)), reshuffle_each_iteration=True)
    views = embedding.two_views(augment) if two_views else None
    augment = augment or (lambda images, training: images)

    def prepared(x: dict[str, tf.Tensor], y: tf.Tensor) -> tuple[dict[str, tf.Tensor], Any]:
        images = require_normalized(x[features.IMAGE_XF])
        if views is not None:
            pair, targets = views(images, y)
            return {features.IMAGE_XF: pair}, targets
        return {features.IMAGE_XF: augment(images, training=True)}, y

    return dataset.batch(batch_size).map(prepared, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def tf_example_files() -> DataAccessor:
    """The DataAccessor a TFX Trainer gives `run_fn` for Transform's output (gzipped tf.Examples), for calling
    `run_fn` outside one: each worker of a multi-worker Trainer (models/worker.py)."""
    def dataset_factory(file_patterns, options, schema):
        return tfxio_utils.make_tfxio(file_patterns, ["cnnpipe"], example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE,
                                      schema=schema).TensorFlowDataset(options)
    return DataAccessor(tf_dataset_factory=dataset_factory, record_batch_factory=None,
                                       data_view_decode_fn=None)


def datasets(fn_args: FnArgs, tft_output: tft.TFTransformOutput, config: TrainingConfig, replicas: int
             ) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The shuffled, augmented training batches and the validation batches (the Trainer's eval split), of
    `config.batch_size` per replica."""
    batch_size = config.batch_size * replicas
    translate = max(config.translate, embedding.VIEW_SHIFT) if config.two_views else config.translate
    train = input_fn(fn_args.data_accessor, fn_args.train_files, tft_output, batch_size, shuffle=True,
                     augment=augmentation(translate, config.flip), two_views=config.two_views)
    return train, input_fn(fn_args.data_accessor, fn_args.eval_files, tft_output, batch_size)


def validation_images(fn_args: FnArgs, tft_output: tft.TFTransformOutput, count: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The first `count` transformed validation images and their labels."""
    dataset = fn_args.data_accessor.tf_dataset_factory(
        fn_args.eval_files,
        tfxio.TensorFlowDatasetOptions(batch_size=count, shuffle=False, num_epochs=1, label_key=features.LABEL_XF),
        tft_output.transformed_metadata.schema)
    images, labels = next(iter(dataset))
    return images[features.IMAGE_XF], labels


def monitor(config: TrainingConfig) -> str:
    """The validation score that picks the kept epoch and the Tuner's best trial: accuracy under PGD with adversarial
    training (the collapse check measures it), precision@10 with a search embedding, else accuracy."""
    if config.adversarial:
        return collapse_check.LOG_KEY
    return best_epoch.PRECISION_KEY if config.embedding_dim else "val_accuracy"


def selection(model: keras.Model, fitted: keras.Model, config: TrainingConfig,
              validation: Callable[[int], tuple[tf.Tensor, tf.Tensor]], report_dir: Optional[str]
              ) -> list[keras.callbacks.Callback]:
    """The callbacks that score each epoch on the validation split (`validation(count)`: its first images and their
    labels) by `monitor(config)` and keep the best (models/best_epoch.py)."""
    scoring: list[keras.callbacks.Callback] = []
    if config.adversarial:
        images, labels = validation(collapse_check.HELD_OUT_IMAGES)
        scoring.append(collapse_check.CollapseCheck(fitted, images, labels, fitted.epsilon, report_dir))
    elif config.embedding_dim:
        images, labels = validation(best_epoch.PRECISION_IMAGES)
        scoring.append(best_epoch.ValidationPrecision(signatures.embedding_model(model, mirrored=config.flip), images,
                                                      labels))
    return [*scoring, *best_epoch.callbacks(monitor(config), config.patience or config.epochs, config.learning_rate,
                                            report_dir)]


def compile_model(model: keras.Model, learning_rate: float, instance_weight: float = 0.0) -> keras.Model:
    """`model` compiled with Adam, cross-entropy and accuracy, and the contrastive terms on an embedding output
    (`embedding.with_contrastive_output`), the instance term `instance_weight` times."""
    loss = keras.losses.SparseCategoricalCrossentropy()
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if embedding.NORMALIZED in (model.output_names or []):  # a subclassed model (adversarial training) has none
        loss = {blocks.HEAD: loss, embedding.NORMALIZED: embedding.ContrastiveLoss(instance_weight)}
        metrics = {blocks.HEAD: metrics}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
    return model


def build_model(config: TrainingConfig, base_model: Optional[str] = None) -> keras.Model:
    """The registry's model, initialized from `base_model` when given."""
    model = registry.build(config.model, config.input_shape, len(config.class_names), **config.model_options)
    if config.embedding_dim:
        model = embedding.with_embedding(model, config.embedding_dim)
    if base_model:
        print(warm_start.initialize(model, base_model, config.freeze_features), flush=True)
    return model


def trainable(config: TrainingConfig, tft_output: tft.TFTransformOutput, base_model: Optional[str] = None
              ) -> tuple[keras.Model, keras.Model]:
    """The model to export and the compiled model to fit: the same one, or it wrapped for adversarial training or
    with the contrastive output. Call it in the strategy's scope."""
    model = build_model(config, base_model)
    fitted = model
    if config.adversarial:
        fitted = adversarial_training.wrap(model, config.adversarial, config.adversarial_epsilon,
                                           config.adversarial_steps, tft_output, config.input_shape)
    elif config.embedding_dim:
        fitted = embedding.with_contrastive_output(model)
    return model, compile_model(fitted, config.learning_rate, config.instance_weight if config.two_views else 0.0)


def run_fn(fn_args: FnArgs) -> None:
    """Trains the configured model on the transformed examples and exports it for serving."""
    config = TrainingConfig.from_custom_config(fn_args.custom_config)
    if fn_args.hyperparameters:  # the Tuner's best (models/tuning.py)
        config = config.tuned(fn_args.hyperparameters["values"])
        print(f"Tuned: {tuned_line(fn_args.hyperparameters['values'])}", flush=True)
    keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    strategy = make_strategy(config.strategy)
    train, evaluation = datasets(fn_args, tft_output, config, strategy.num_replicas_in_sync)
    base_model = fn_args.base_model if config.warm_start == WARM_START_LATEST else config.warm_start
    if config.warm_start == WARM_START_LATEST and not warm_start.holds_saved_model(base_model):
        print("warm start: no model is served yet, training from scratch", flush=True)
        base_model = None
    with strategy.scope():
        model, fitted = trainable(config, tft_output, base_model)
    adversarial = f", adversarial {config.adversarial} at ε {config.adversarial_epsilon}" if config.adversarial else ""
    replicas = strategy.num_replicas_in_sync
    print(f"Training {config.model} ({model.count_params():,} parameters) for up to {config.epochs} epochs, "
          f"batch {config.batch_size * replicas}, strategy {config.strategy} ({replicas} replica(s)){adversarial}",
          flush=True)
    # Every worker trains and saves (saving is collective); only the chief's files are kept.
    with tempfile.TemporaryDirectory() as scratch:
        chief = is_chief(strategy)
        log_dir = os.path.join(fn_args.model_run_dir if chief else scratch, "logs")
        try:
            fitted.fit(
                train,
                epochs=config.epochs,
                validation_data=evaluation,
                callbacks=[*selection(model, fitted, config, functools.partial(validation_images, fn_args, tft_output),
                                      fn_args.model_run_dir if chief else None),
                           keras.callbacks.TensorBoard(log_dir)],  # last: it logs what the others add
                verbose=2 if chief else 0,
            )
        except tf.errors.InvalidArgumentError as error:
            if NOT_NORMALIZED not in error.message:
                raise
            raise TrainingError(NOT_NORMALIZED) from None
        export_dir = fn_args.serving_model_dir if chief else os.path.join(scratch, "model")
        signatures.export(model, tft_output, config.class_names, export_dir,
                          embedder=signatures.embedding_model(model, mirrored=config.flip))
