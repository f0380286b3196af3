"""Which training makes a model's `embed` output rank best for visual search, side by side in one run.

Each variant trains the same registry model as the Trainer does (`models/trainer.py`: `build_model`,
`compile_model`, `selection`: the best epoch on 10% of the training images held out, batch 128, the same seed) on
the 60,000 Fashion-MNIST training images scaled to [-1, 1] as Transform scales them, in memory (no pipeline: the
ranking, not the plumbing, is measured). It prints test accuracy, accuracy on the training images (the catalog),
and precision@10 / mAP@100 of exact cosine search with the 10,000 test images as queries and the 60,000 training
images as the catalog (same class = relevant), as `bench/visual_search.py` measures them:

- features as built: the model's penultimate layer (`--embedding-dim 0`'s `embed`);
- cosine classifier: `--embedding-dim D`'s normalized embedding, trained by cross-entropy alone;
- cosine classifier + contrastive: the same with the supervised contrastive term (what `--embedding-dim` trains).

Trained with flips (the default), the embedding is averaged over each image and its mirror image, as `embed`
exports it; "one view" is the precision@10 without that average. The settings default to the Trainer's.

    .venv/bin/python bench/retrieval_training.py [--model lenet5] [--epochs 20] [--embedding-dim 64]
        [--model-option width=4] [--translate 0.1] [--no-flip] [--variant "cosine classifier + contrastive"]
"""

import argparse
import dataclasses
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import report  # noqa: E402 - bench/report.py, beside this script
from visual_search import TOP_K, exact_top, ranking  # noqa: E402
from cnnpipe.core.options import key_value  # noqa: E402
from cnnpipe.models import blocks, embedding, signatures, trainer  # noqa: E402
from cnnpipe.models.catalog import normalized  # noqa: E402
from cnnpipe.models.training_config import TrainingConfig  # noqa: E402
from cnnpipe.pipeline.datasets import FASHION_MNIST  # noqa: E402

VARIANTS = ("features as built", "cosine classifier", "cosine classifier + contrastive")
VALIDATION_SHARE = 0.1  # of the training images, held out to choose the kept epoch (the Trainer's default)


def scaled(images: np.ndarray) -> np.ndarray:
    return images[..., None].astype(np.float32) / 127.5 - 1.0


def train(variant: str, config: TrainingConfig, images: np.ndarray, labels: np.ndarray) -> keras.Model:
    """The model of `variant`, fitted as the Trainer fits it: VALIDATION_SHARE of `images` held out, the best epoch
    on them kept."""
    keras.utils.set_random_seed(config.seed)
    held_out = np.random.default_rng(config.seed).random(len(images)) < VALIDATION_SHARE
    model = trainer.build_model(config if variant != VARIANTS[0] else dataclasses.replace(config, embedding_dim=0))
    fitted = embedding.with_contrastive_output(model) if variant == VARIANTS[2] else model
    trainer.compile_model(fitted, config.learning_rate)
    augment = trainer.augmentation(config.translate, config.flip) or (lambda batch, training: batch)
    batches = (tf.data.Dataset.from_tensor_slices((images[~held_out], labels[~held_out]))
               .shuffle(int((~held_out).sum()), seed=config.seed)
               .batch(config.batch_size).map(lambda x, y: (augment(x, training=True), y), tf.data.AUTOTUNE)
               .prefetch(tf.data.AUTOTUNE))
    validation = images[held_out], labels[held_out]
    fitted.fit(batches, epochs=config.epochs, verbose=0, validation_data=tf.data.Dataset.from_tensor_slices(
                   validation).batch(config.batch_size),
               callbacks=trainer.selection(model, fitted, config, lambda count: (validation[0][:count],
                                                                                 validation[1][:count]), None))
    return model


def search_quality(embed: keras.Model, catalog_pixels: np.ndarray, catalog_labels: np.ndarray,
                   query_pixels: np.ndarray, query_labels: np.ndarray) -> tuple[float, float]:
    """Precision@10 and mAP@100 of exact cosine search with `embed`."""
    catalog, queries = (normalized(embed.predict(pixels, batch_size=1000, verbose=0))
                        for pixels in (catalog_pixels, query_pixels))
    return ranking(exact_top(queries, catalog, TOP_K), catalog_labels, query_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TrainingConfig()
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--model-option", action="append", default=[], type=key_value, metavar="KEY=VALUE")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--embedding-dim", type=int, default=defaults.embedding_dim)
    parser.add_argument("--translate", type=float, default=defaults.translate, help="augment: random shifts")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips")
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="repeatable (default: all)")
    args = parser.parse_args()
    config = TrainingConfig(model=args.model, model_options=dict(args.model_option), input_shape=(28, 28, 1),
                            epochs=args.epochs, embedding_dim=args.embedding_dim, translate=args.translate,
                            flip=args.flip, class_names=FASHION_MNIST.class_names)
    catalog_images, catalog_labels = report.fashion_mnist_arrays("train")
    query_images, query_labels = report.fashion_mnist_arrays("t10k")
    catalog_pixels, query_pixels = scaled(catalog_images), scaled(query_images)
    options = "".join(f" {key}={value}" for key, value in config.model_options.items())
    augmented = f", shifts up to {config.translate:g}" * bool(config.translate) + ", flips" * config.flip
    print(f"{config.model}{options}, {config.epochs} epochs{augmented}; queries: {len(query_images):,} "
          f"test images, catalog: {len(catalog_images):,} training images", flush=True)
    print(f"\n{'variant':<34} {'dims':>5} {'accuracy':>9} {'on the catalog':>15} {'P@10':>7} {'mAP@100':>8} "
          f"{'one view':>9} {'train s':>8}")
    for variant in args.variant or VARIANTS:
        started = time.perf_counter()
        model = train(variant, config, catalog_pixels, catalog_labels)
        seconds = time.perf_counter() - started
        accuracy, catalog_accuracy = (
            float((model.predict(pixels, batch_size=1000, verbose=0).argmax(1) == labels).mean())
            for pixels, labels in ((query_pixels, query_labels), (catalog_pixels, catalog_labels)))
        (precision, average_precision), (one_view, _) = (
            search_quality(signatures.embedding_model(model, mirrored), catalog_pixels, catalog_labels, query_pixels,
                           query_labels) for mirrored in (config.flip, False))
        print(f"{variant:<34} {model.get_layer(blocks.HEAD).input.shape[-1]:>5} {accuracy:>9.2%} "
              f"{catalog_accuracy:>15.2%} {precision:>7.4f} {average_precision:>8.3f} "
              f"{f'{one_view:.4f}' if config.flip else '-':>9} {seconds:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
