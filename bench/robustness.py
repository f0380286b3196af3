"""Adversarial example generation and the Evaluator on the 10,000 Fashion-MNIST test images: FGSM and PGD at every ε.

Times what the AdversarialExamples component does (robustness.adversarial_examples.write: read,
decode, attack, PNG-encode, write) and what the Evaluator does with its output (TFMA with the
pipeline's EvalConfig), then each attack alone on the same images held in memory, with the
accuracy it leaves, to show what the time goes to.

Run: .venv/bin/python bench/robustness.py [--model SAVED_MODEL_DIR] [--baseline SAVED_MODEL_DIR] [--pgd-steps 10]
(default model: the newest version pushed by `make run`, under cnnpipe-output/serving/fashion_mnist)
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
import tensorflow_model_analysis as tfma  # noqa: E402

import report  # noqa: E402 - bench/report.py, beside this script
from cnnpipe.components.ingestion.formats import make_example  # noqa: E402
from cnnpipe.pipeline import evaluation  # noqa: E402
from cnnpipe.pipeline.datasets import FASHION_MNIST  # noqa: E402
from cnnpipe.pipeline.thresholds import Thresholds  # noqa: E402
from cnnpipe.robustness import attacks  # noqa: E402
from cnnpipe.core.names import BASELINE, CANDIDATE  # noqa: E402
from cnnpipe.robustness.adversarial_examples import write  # noqa: E402
from cnnpipe.robustness.settings import AttackSettings  # noqa: E402
from cnnpipe.robustness.pixel_model import PixelModel  # noqa: E402
from cnnpipe.serving.model_config import versions  # noqa: E402

SERVED = os.path.join("cnnpipe-output", "serving", FASHION_MNIST.name)


def newest_version(base: str) -> str:
    pushed = versions(base)
    if not pushed:
        raise SystemExit(f"no pushed model under {base}: run `make run` first, or pass --model SAVED_MODEL_DIR")
    return os.path.join(base, str(pushed[-1]))


def write_test_split(path: str) -> int:
    """The 10,000 test images as ImageExampleGen writes them (PNG tf.Examples, gzipped TFRecords)."""
    images, labels = report.fashion_mnist_arrays("t10k", 10_000)
    with tf.io.TFRecordWriter(path, "GZIP") as writer:
        for index, (pixels, label) in enumerate(zip(images, labels)):
            png = tf.io.encode_png(pixels[..., None]).numpy()
            writer.write(make_example(png, int(label), FASHION_MNIST.class_names[label], f"t10k:{index}", 28, 28))
    return len(labels)


def attack_breakdown(model: PixelModel, settings: AttackSettings) -> None:
    """Prints each attack's time and accuracy over the 10,000 test images, held in memory."""
    images, labels = report.fashion_mnist_arrays("t10k", 10_000)
    batches = [(tf.constant(images[i:i + settings.batch_size, ..., None], tf.float32),
                tf.constant(labels[i:i + settings.batch_size], tf.int64)) for i in range(0, len(labels), settings.batch_size)]

    def accuracy(attacked: list[tf.Tensor]) -> float:
        correct = sum(int(tf.reduce_sum(tf.cast(tf.argmax(model.probabilities(x), -1) == y, tf.int32)))
                      for x, (_, y) in zip(attacked, batches))
        return correct / len(labels)

    print(f"  clean accuracy {accuracy([x for x, _ in batches]):.1%}")
    attacks.fgsm(model.probabilities, *batches[0], settings.epsilons)  # traced before timing
    attacks.pgd(model.probabilities, *batches[0], settings.epsilons[:1], settings.pgd_steps)
    start = time.perf_counter()
    fgsm = [attacks.fgsm(model.probabilities, x, y, settings.epsilons) for x, y in batches]
    seconds = time.perf_counter() - start
    accuracies = ", ".join(f"{accuracy([b[k] for b in fgsm]):.1%}" for k in range(len(settings.epsilons)))
    print(f"  FGSM, all ε: {seconds:5.1f}s; accuracy {accuracies}")
    for epsilon in settings.epsilons:
        start = time.perf_counter()
        pgd = [attacks.pgd(model.probabilities, x, y, [epsilon], settings.pgd_steps, settings.pgd_step_fraction, (0, i))[0]
               for i, (x, y) in enumerate(batches)]
        print(f"  PGD-{settings.pgd_steps} ε {epsilon}: {time.perf_counter() - start:5.1f}s; accuracy {accuracy(pgd):.1%}")


def evaluate(models: dict[str, PixelModel], settings: AttackSettings, records: str, output: str) -> float:
    """Seconds TFMA takes over `records` with the pipeline's EvalConfig (as the Evaluator runs it, DirectRunner)."""
    config = tfma.utils.update_eval_config_with_defaults(
        evaluation.eval_config(Thresholds() if BASELINE in models else Thresholds().without_baseline(), settings.attacks),
        has_baseline=BASELINE in models)
    shared = [tfma.default_eval_shared_model(model.model_dir, model_name=name, eval_config=config)
              for name, model in models.items()]
    start = time.perf_counter()
    tfma.run_model_analysis(eval_shared_model=shared, eval_config=config, data_location=records, output_path=output)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=f"an exported model (default: the newest under {SERVED})")
    parser.add_argument("--baseline", help="also attack this exported model, as the component does with a baseline")
    parser.add_argument("--pgd-steps", type=int, default=AttackSettings.pgd_steps)
    parser.add_argument("--batch-size", type=int, default=AttackSettings.batch_size)
    args = parser.parse_args()
    models = {CANDIDATE: PixelModel(args.model or newest_version(SERVED))}
    if args.baseline:
        models[BASELINE] = PixelModel(args.baseline)
    settings = AttackSettings(pgd_steps=args.pgd_steps, batch_size=args.batch_size,
                              worst_case_epsilon=Thresholds().robust_epsilon)  # as the pipeline's default run
    print(f"model {models[CANDIDATE].model_dir}; {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")

    with tempfile.TemporaryDirectory() as scratch:
        sources = write_test_split(os.path.join(scratch, "eval.gz"))
        start = time.perf_counter()
        write(os.path.join(scratch, "eval.gz"), os.path.join(scratch, "out"), models, settings)
        generation = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(scratch, "out", f)) for f in os.listdir(os.path.join(scratch, "out")))
        records = sources * (1 + len(models) * settings.copies_per_model)
        print(f"attack generation: {sources:,} images, {len(models)} model(s), FGSM + PGD-{settings.pgd_steps} at ε "
              f"{', '.join(map(str, settings.epsilons))} and their worst case at ε {settings.worst_case_epsilon}: "
              f"{generation:.1f}s, {records:,} records ({size / 1e6:.0f} MB)")
        evaluator = evaluate(models, settings, os.path.join(scratch, "out", "*"), os.path.join(scratch, "evaluation"))
        print(f"Evaluator (TFMA as the pipeline configures it: clean, clean x class, attack x ε; {len(models)} "
              f"model(s), each on all {records:,} records): {evaluator:.1f}s")
        print(f"together: {generation + evaluator:.1f}s (target 180s)")
    for name, model in models.items():
        print(f"{name}, the attacks alone (no reading, decoding, encoding or writing):")
        attack_breakdown(model, settings)

if __name__ == "__main__":
    main()
