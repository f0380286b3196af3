"""Which training makes a model's `embed` output rank best for visual search, side by side in one run.

Each variant trains the same registry model as the Trainer does (`models/trainer.py`: `build_model`,
`compile_model`, `selection`: the best epoch on 10% of the training images held out, batch 128, the same seed) on
the other Fashion-MNIST training images scaled to [-1, 1] as Transform scales them, in memory (no pipeline: the
ranking, not the plumbing, is measured). Variants are compared on validation only: accuracy on the held-out images,
and precision@10 / mAP@100 of exact cosine search with them as queries and the other training images as the catalog
(same class = relevant), as `bench/visual_search.py` measures them. The test images are touched once, for the
variant of the best validation precision@10 (queries: the 10,000 test images; catalog: all 60,000 training images):

- features as built: the model's penultimate layer (`--embedding-dim 0`'s `embed`);
- cosine classifier: `--embedding-dim D`'s normalized embedding, trained by cross-entropy alone;
- cosine classifier + contrastive: the same with the supervised contrastive term (`--instance-weight 0`);
- cosine classifier + contrastive + instance: and the instance term on two views of each image (what
  `--embedding-dim` trains).

Beside precision@10, whether search finds the item itself (EmbeddingIndex's figures): 1,000 catalog images
photographed again (retrieval/rephotographs) as queries, the item's recall@1 and @10, and the median number of catalog
items tied with a validation query's first result.

Trained with flips (the default), the embedding is averaged over each image and its mirror image, as `embed`
exports it; "one view" is the precision@10 without that average. The settings default to the Trainer's.

    .venv/bin/python bench/retrieval_training.py [--model lenet5] [--epochs 20] [--embedding-dim 64]
        [--model-option width=4] [--instance-weight 1] [--translate 0.1] [--no-flip]
        [--variant "cosine classifier + contrastive + instance"]
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
from visual_search import TOP_K, encode, exact_top, ranking  # noqa: E402
from cnnpipe.components.embedding_index import INSTANCE_SAMPLE, TIE  # noqa: E402
from cnnpipe.core.options import key_value  # noqa: E402
from cnnpipe.models import blocks, embedding, signatures, trainer  # noqa: E402
from cnnpipe.models.catalog import normalized  # noqa: E402
from cnnpipe.models.training_config import TrainingConfig  # noqa: E402
from cnnpipe.pipeline.datasets import FASHION_MNIST  # noqa: E402
from cnnpipe.retrieval import metrics, rephotographs  # noqa: E402

VARIANTS = ("features as built", "cosine classifier", "cosine classifier + contrastive",
            "cosine classifier + contrastive + instance")
VALIDATION_SHARE = 0.1  # of the training images, held out to choose the kept epoch (the Trainer's default)


def scaled(images: np.ndarray) -> np.ndarray:
    return images[..., None].astype(np.float32) / 127.5 - 1.0


def train(variant: str, config: TrainingConfig, images: np.ndarray, labels: np.ndarray, held_out: np.ndarray
          ) -> keras.Model:
    """The model of `variant`, fitted as the Trainer fits it: the `held_out` images are its validation split, the best
    epoch on them kept."""
    keras.utils.set_random_seed(config.seed)
    model = trainer.build_model(config if variant != VARIANTS[0] else dataclasses.replace(config, embedding_dim=0))
    fitted = embedding.with_contrastive_output(model) if variant in VARIANTS[2:] else model
    instance = variant == VARIANTS[3]
    trainer.compile_model(fitted, config.learning_rate, config.instance_weight if instance else 0.0)
    if instance:
        prepared = embedding.two_views(trainer.augmentation(max(config.translate, embedding.VIEW_SHIFT), config.flip))
    else:
        augment = trainer.augmentation(config.translate, config.flip) or (lambda batch, training: batch)
        prepared = lambda x, y: (augment(x, training=True), y)  # noqa: E731
    batches = (tf.data.Dataset.from_tensor_slices((images[~held_out], labels[~held_out]))
               .shuffle(int((~held_out).sum()), seed=config.seed).batch(config.batch_size)
               .map(prepared, tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    validation = images[held_out], labels[held_out]
    fitted.fit(batches, epochs=config.epochs, verbose=0, validation_data=tf.data.Dataset.from_tensor_slices(
                   validation).batch(config.batch_size),
               callbacks=trainer.selection(model, fitted, config, lambda count: (validation[0][:count],
                                                                                 validation[1][:count]), None))
    return model


def second_photos(images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """INSTANCE_SAMPLE of `images` (uint8) photographed again (retrieval/rephotographs), scaled, and which they are."""
    items = np.random.default_rng(seed).choice(len(images), INSTANCE_SAMPLE, replace=False)
    photos = rephotographs.second_photos([encode(images[item]) for item in items], seed)
    return scaled(np.stack([tf.io.decode_png(photo).numpy()[..., 0] for photo in photos])), items


def quality(model: keras.Model, flip: bool, catalog: tuple[np.ndarray, np.ndarray],
            queries: tuple[np.ndarray, np.ndarray], photos: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Accuracy on the queries, precision@10 and mAP@100 of exact cosine search with the exported `embed` (the mirror
    average with `flip`) and precision@10 of one view; and whether it finds the item of each of `photos` (pixels,
    catalog rows) and how many items tie with a query's first result (EmbeddingIndex's figures)."""
    def embedded(pixels: np.ndarray, mirrored: bool = flip) -> np.ndarray:
        return normalized(signatures.embedding_model(model, mirrored).predict(pixels, batch_size=1000, verbose=0))

    found = {"accuracy": float((model.predict(queries[0], batch_size=1000, verbose=0).argmax(1) == queries[1]).mean())}
    catalog_rows, query_rows = embedded(catalog[0]), embedded(queries[0])
    found["precision_at_10"], found["map_at_100"] = ranking(exact_top(query_rows, catalog_rows, TOP_K), catalog[1],
                                                            queries[1])
    found["one_view"] = ranking(exact_top(embedded(queries[0], False), embedded(catalog[0], False), TOP_K),
                                catalog[1], queries[1])[0]
    return {**found, **metrics.item_figures(catalog_rows, embedded(photos[0]), photos[1], query_rows[:INSTANCE_SAMPLE],
                                            TIE)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TrainingConfig()
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--model-option", action="append", default=[], type=key_value, metavar="KEY=VALUE")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--embedding-dim", type=int, default=defaults.embedding_dim)
    parser.add_argument("--instance-weight", type=float, default=defaults.instance_weight)
    parser.add_argument("--translate", type=float, default=defaults.translate, help="augment: random shifts")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips")
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="repeatable (default: all)")
    args = parser.parse_args()
    config = TrainingConfig(model=args.model, model_options=dict(args.model_option), input_shape=(28, 28, 1),
                            epochs=args.epochs, embedding_dim=args.embedding_dim,
                            instance_weight=args.instance_weight, translate=args.translate,
                            flip=args.flip, class_names=FASHION_MNIST.class_names)
    train_images, train_labels = report.fashion_mnist_arrays("train")
    test_images, test_labels = report.fashion_mnist_arrays("t10k")
    train_pixels, test_pixels = scaled(train_images), scaled(test_images)
    held_out = np.random.default_rng(config.seed).random(len(train_images)) < VALIDATION_SHARE
    catalog, validation = (train_pixels[~held_out], train_labels[~held_out]), (train_pixels[held_out],
                                                                                 train_labels[held_out])
    options = "".join(f" {key}={value}" for key, value in config.model_options.items())
    augmented = f", shifts up to {config.translate:g}" * bool(config.translate) + ", flips" * config.flip
    print(f"{config.model}{options}, {config.epochs} epochs{augmented}; chosen on validation: {held_out.sum():,} "
          f"held-out training images as queries, the other {(~held_out).sum():,} as the catalog", flush=True)
    print(f"\n{'variant':<43} {'dims':>5} {'val accuracy':>13} {'val P@10':>9} {'val mAP@100':>12} {'one view':>9} "
          f"{'item R@1':>9} {'item R@10':>10} {'ties':>5} {'train s':>8}")
    photos = second_photos(train_images[~held_out], config.seed)
    trained = {}
    for variant in args.variant or VARIANTS:
        started = time.perf_counter()
        model = train(variant, config, train_pixels, train_labels, held_out)
        seconds = time.perf_counter() - started
        found = quality(model, config.flip, catalog, validation, photos)
        trained[variant] = model, found["precision_at_10"] + found["instance_recall_at_1"]
        one_view = f"{found['one_view']:.4f}" if config.flip else "-"
        print(f"{variant:<43} {model.get_layer(blocks.HEAD).input.shape[-1]:>5} {found['accuracy']:>13.2%} "
              f"{found['precision_at_10']:>9.4f} {found['map_at_100']:>12.3f} "
              f"{one_view:>9} "
              f"{found['instance_recall_at_1']:>9.3f} {found['instance_recall_at_10']:>10.3f} "
              f"{found['ties_with_first']:>5.0f} {seconds:>8.0f}", flush=True)
    chosen = max(trained, key=lambda variant: trained[variant][1])
    found = quality(trained[chosen][0], config.flip, (train_pixels, train_labels), (test_pixels, test_labels),
                    second_photos(train_images, config.seed))
    print(f"\nchosen on validation precision@10 + item recall@1: {chosen}. On the {len(test_labels):,} test images "
          f"(catalog: all {len(train_labels):,} training images): accuracy {found['accuracy']:.2%}, precision@10 "
          f"{found['precision_at_10']:.4f}, mAP@100 {found['map_at_100']:.3f}; the item itself from "
          f"{INSTANCE_SAMPLE:,} second photos: recall@1 {found['instance_recall_at_1']:.3f}, recall@10 "
          f"{found['instance_recall_at_10']:.3f}; {found['ties_with_first']:.0f} item(s) tied with the first result")


if __name__ == "__main__":
    main()
