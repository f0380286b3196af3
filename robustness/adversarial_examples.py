"""Adversarial copies of eval examples, written as the tf.Examples the Evaluator reads.

For every source example the output holds its clean copy (attack "none", ε 0) and, for each
attacked model, attack and ε, a copy whose image was perturbed with that model's own gradients
(white box) and re-encoded as PNG. Each copy keeps the source's features (`source` names it) and
adds `attack`, `epsilon`, `attacked_model` and one example weight per model: `weight_candidate` is
1 on the clean copies and the candidate's copies and 0 on the baseline's, `weight_baseline` the
other way round. An Evaluator given ModelSpecs with those `example_weight_key`s measures each model
on the clean copies and its own attacks only, in the same attack × ε slices, so TFMA's change
thresholds compare the candidate's white-box robustness with the baseline's. `epsilon` is stored
as a float32, as tf.Example floats are: a TFMA SlicingSpec's feature_values must name it as that
float32 reads, e.g. repr(float(np.float32(0.1))) == "0.10000000149011612"; "0.1" matches nothing.

Images of another size than the model's input are attacked and written at the model's size
(resized as Transform does). The work streams through tf.data in batches: memory holds one batch.
"""

import dataclasses
import functools
import os
import time
from typing import Callable, Iterator, Mapping, Optional

import tensorflow as tf

from cnnpipe.attacks import eight_bit
from cnnpipe.core.errors import RobustnessError
from cnnpipe.core import features
from cnnpipe.models import preprocessing
from cnnpipe.robustness.pixel_model import PixelModel
from cnnpipe.core.names import APGD_CE, APGD_DLR, BASELINE, CANDIDATE, FGSM, NO_ATTACK, PGD, WORST_CASE
from cnnpipe.robustness.settings import AttackSettings

WEIGHT_KEYS = {CANDIDATE: features.WEIGHT_CANDIDATE, BASELINE: features.WEIGHT_BASELINE}
OUTPUT_FILE = "data_tfrecord-00000-of-00001.gz"  # named as ExampleGen names its files
PROGRESS_SECONDS = 10.0

_encode_png = tf.function(preprocessing.encode_images, reduce_retracing=True)


@dataclasses.dataclass(frozen=True)
class Copy:
    """One batch of adversarial images and what made them."""

    attacked_model: str
    attack: str
    epsilon: float
    pixels: tf.Tensor  # [N, H, W, C], 8-bit values


def adversarial_batches(models: Mapping[str, PixelModel], pixels: Mapping[str, tf.Tensor], labels: tf.Tensor,
                        settings: AttackSettings, seed: tuple[int, int]) -> Iterator[Copy]:
    """Every model's attacks on one batch, each model with its own gradients and its own input size, then (with
    more than one attack) their worst case at the settings' `worst_case_epsilon`."""
    for name, model in models.items():
        made = []
        if FGSM in settings.attacks:
            made += [Copy(name, FGSM, e, x) for e, x in zip(settings.epsilons, eight_bit.fgsm(
                model.probabilities, pixels[name], labels, settings.epsilons))]
        if PGD in settings.attacks:
            made += [Copy(name, PGD, e, x) for e, x in zip(settings.epsilons, eight_bit.pgd(
                model.probabilities, pixels[name], labels, settings.epsilons, settings.pgd_steps,
                settings.pgd_step_fraction, seed))]
        for loss in (APGD_CE, APGD_DLR):
            if loss in settings.attacks:
                made += [Copy(name, loss, e, x) for e, x in zip(settings.epsilons, eight_bit.apgd(
                    model.probabilities, pixels[name], labels, settings.epsilons, loss, settings.apgd_steps, seed))]
        yield from made
        if settings.worst_case:
            yield worst_case(model, [copy for copy in made if copy.epsilon == settings.worst_case_epsilon], labels)


def worst_case(model: PixelModel, copies: list[Copy], labels: tf.Tensor) -> Copy:
    """Per image, the first of the attacks' `copies` (one ε) that `model` misclassifies, else the last: the image
    counts as robust only if every attack failed on it (what AutoAttack reports)."""
    chosen = copies[-1].pixels
    for copy in reversed(copies[:-1]):
        fooled = tf.argmax(model.probabilities(copy.pixels), axis=-1, output_type=labels.dtype) != labels
        chosen = tf.where(fooled[:, tf.newaxis, tf.newaxis, tf.newaxis], copy.pixels, chosen)
    return Copy(copies[0].attacked_model, WORST_CASE, copies[0].epsilon, chosen)


def tagged(source: tf.train.Example, attack: str, epsilon: float, attacked_model: str,
           image: bytes = b"", height: int = 0, width: int = 0) -> bytes:
    """A copy of `source` with the attack's features; `image` (with its size) replaces the source's when given."""
    example = tf.train.Example()
    example.CopyFrom(source)
    feature = example.features.feature
    if image:
        feature[features.IMAGE].bytes_list.value[:] = [image]
        for key, value in ((features.HEIGHT, height), (features.WIDTH, width)):
            if key in feature:
                feature[key].int64_list.value[:] = [value]
    feature[features.ATTACK].bytes_list.value[:] = [attack.encode()]
    feature[features.EPSILON].float_list.value[:] = [epsilon]
    feature[features.ATTACKED_MODEL].bytes_list.value[:] = [attacked_model.encode()]
    for name, key in WEIGHT_KEYS.items():
        feature[key].float_list.value[:] = [float(attacked_model in (NO_ATTACK, name))]
    return example.SerializeToString(deterministic=True)


_SPEC = {features.IMAGE: tf.io.FixedLenFeature([], tf.string), features.LABEL: tf.io.FixedLenFeature([], tf.int64)}


def _source_batches(files: list[str], models: Mapping[str, PixelModel], settings: AttackSettings) -> tf.data.Dataset:
    """(serialized records, labels, {model name: 8-bit pixels at that model's input size}) batches."""

    def parse_and_decode(serialized: tf.Tensor) -> tuple:
        parsed = tf.io.parse_example(serialized, _SPEC)
        pixels = {name: tf.round(preprocessing.decode_images(parsed[features.IMAGE], model.input_shape))
                  for name, model in models.items()}
        return serialized, parsed[features.LABEL], pixels

    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if settings.max_examples:
        dataset = dataset.take(settings.max_examples)
    return dataset.batch(settings.batch_size).map(parse_and_decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def _first_bad_record(files: list[str], input_shape: tuple[int, int, int]) -> Optional[str]:
    """`file:index` and the reason of the first record without a decodable image and a label."""
    for path in files:
        for index, record in enumerate(tf.data.TFRecordDataset(path, compression_type="GZIP")):
            try:
                preprocessing.decode_images(tf.io.parse_example(record[tf.newaxis], _SPEC)[features.IMAGE], input_shape)
            except tf.errors.InvalidArgumentError as error:
                return f"{path}:{index} ({error.message.splitlines()[0]})"
    return None


def _count(files: list[str], max_examples: int) -> int:
    total = int(tf.data.TFRecordDataset(files, compression_type="GZIP").reduce(0, lambda n, _: n + 1))
    return min(total, max_examples) if max_examples else total


def write(examples_pattern: str, output_dir: str, models: Mapping[str, PixelModel], settings: AttackSettings,
          progress: Callable[[str], None] = functools.partial(print, flush=True)) -> int:
    """Writes the clean and adversarial copies of the examples in `examples_pattern` (gzipped TFRecords
    of tf.Examples with `image` and `label`) to `output_dir`/OUTPUT_FILE; returns the number of sources.

    `models` maps CANDIDATE (and BASELINE when there is one) to its PixelModel.
    """
    files = sorted(tf.io.gfile.glob(examples_pattern))
    if not files:
        raise RobustnessError(f"no examples match {examples_pattern}; give the split directory ExampleGen wrote.")
    total, done, started, reported = _count(files, settings.max_examples), 0, time.monotonic(), time.monotonic()
    worst = f", and their worst case at ε {settings.worst_case_epsilon}" if settings.worst_case else ""
    progress(f"Adversarial examples: {total:,} source images x {settings.copies_per_model} copies "
             f"({', '.join(settings.attacks)} at ε {', '.join(map(str, settings.epsilons))}{worst}) against "
             f"{', '.join(models)}")
    tf.io.gfile.makedirs(output_dir)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(os.path.join(output_dir, OUTPUT_FILE), options) as writer:
        try:
            for index, (serialized, labels, pixels) in enumerate(_source_batches(files, models, settings)):
                copies = list(adversarial_batches(models, pixels, labels, settings, (settings.seed, index)))
                encoded = [_encode_png(copy.pixels).numpy() for copy in copies]
                for i, record in enumerate(serialized.numpy()):
                    source = tf.train.Example.FromString(record)
                    writer.write(tagged(source, NO_ATTACK, 0.0, NO_ATTACK))
                    for copy, images in zip(copies, encoded):
                        height, width, _ = models[copy.attacked_model].input_shape
                        writer.write(tagged(source, copy.attack, copy.epsilon, copy.attacked_model, images[i],
                                            height, width))
                done += len(labels)
                if time.monotonic() - reported >= PROGRESS_SECONDS or done == total:
                    reported, elapsed = time.monotonic(), time.monotonic() - started
                    progress(f"  {done:,}/{total:,} source images, {elapsed:.0f}s, about "
                             f"{elapsed * (total - done) / done:.0f}s left")
        except tf.errors.InvalidArgumentError:
            bad = _first_bad_record(files, next(iter(models.values())).input_shape)
            if bad is None:
                raise
            raise RobustnessError(
                f"record {bad} is not an image example: the attacks need an encoded PNG/JPEG '{features.IMAGE}' and "
                f"an int64 '{features.LABEL}' in every record, as ImageExampleGen writes them. Fix or drop that record."
            ) from None
    return done
