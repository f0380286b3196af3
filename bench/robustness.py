"""Adversarial example generation and the Evaluator on the 10,000 Fashion-MNIST test images: the attacks at every ε.

Times what the AdversarialExamples component does (robustness.adversarial_examples.write: read,
decode, attack, PNG-encode, write) and what the Evaluator does with its output (TFMA with the
pipeline's EvalConfig), with `--baseline` also as they run when the baseline's own metrics are reused (the
candidate alone), then each attack alone on the same images held in memory, with the
accuracy it leaves per ε and their worst case, to show what the time goes to (`--accuracy-only`: that alone).

Run: .venv/bin/python bench/robustness.py [--model SAVED_MODEL_DIR] [--baseline SAVED_MODEL_DIR] [--pgd-steps 10]
     [--attacks fgsm,pgd,apgd-ce,apgd-dlr] [--accuracy-only]
(default model: the newest version pushed by `make run`, under cnnpipe-output/serving/fashion_mnist)
"""

import argparse
import dataclasses
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
import tensorflow_model_analysis as tfma  # noqa: E402

import report  # noqa: E402 - bench/report.py, beside this script
from cnnpipe.components.ingestion.formats import make_example  # noqa: E402
from cnnpipe.components.blessing import eval_config  # noqa: E402
from cnnpipe.pipeline.datasets import FASHION_MNIST  # noqa: E402
from cnnpipe.components.blessing.thresholds import Thresholds  # noqa: E402
from cnnpipe.core.names import BASELINE, CANDIDATE  # noqa: E402
from cnnpipe.components.blessing.evaluation_results import metrics_by_slice  # noqa: E402
from cnnpipe.components.blessing.evaluator import with_served_values  # noqa: E402
from cnnpipe.components.blessing import evaluation_key  # noqa: E402
from cnnpipe.robustness.adversarial_examples import adversarial_batches, write  # noqa: E402
from cnnpipe.robustness.settings import AttackSettings, attack_names, with_worst_case  # noqa: E402
from cnnpipe.robustness.pixel_model import PixelModel  # noqa: E402



def write_test_split(path: str) -> int:
    """The 10,000 test images as ImageExampleGen writes them (PNG tf.Examples, gzipped TFRecords)."""
    images, labels = report.fashion_mnist_arrays("t10k", 10_000)
    with tf.io.TFRecordWriter(path, "GZIP") as writer:
        for index, (pixels, label) in enumerate(zip(images, labels)):
            png = tf.io.encode_png(pixels[..., None]).numpy()
            writer.write(make_example(png, int(label), FASHION_MNIST.class_names[label], f"t10k:{index}", 28, 28))
    return len(labels)


def accuracy_per_epsilon(model: PixelModel, settings: AttackSettings) -> None:
    """Prints, per ε, each attack's accuracy over the 10,000 test images held in memory and, with two or more
    attacks, their worst case (an image counts only if every attack failed on it), with the seconds the attacks
    took: the copies `adversarial_examples.adversarial_batches` makes, as the component makes them."""
    images, labels = report.fashion_mnist_arrays("t10k", 10_000)
    batches = [(tf.constant(images[i:i + settings.batch_size, ..., None], tf.float32),
                tf.constant(labels[i:i + settings.batch_size], tf.int64))
               for i in range(0, len(labels), settings.batch_size)]
    correct = lambda x, y: int(tf.reduce_sum(tf.cast(tf.argmax(model.probabilities(x), -1) == y, tf.int32)))  # noqa: E731
    names = with_worst_case(settings.attacks)
    print(f"  clean accuracy {sum(correct(x, y) for x, y in batches) / len(labels):.2%}")
    print("  " + " | ".join(["ε", *names, "seconds"]))
    for epsilon in settings.epsilons:
        at_epsilon = dataclasses.replace(settings, epsilons=(epsilon,), worst_case_epsilon=epsilon)
        counts, start = dict.fromkeys(names, 0), time.perf_counter()
        for index, (x, y) in enumerate(batches):
            for copy in adversarial_batches({CANDIDATE: model}, {CANDIDATE: x}, y, at_epsilon, (settings.seed, index)):
                counts[copy.attack] += correct(copy.pixels, y)
        cells = [f"{counts[name] / len(labels):.2%}" for name in names]
        print("  " + " | ".join([f"{epsilon:g}", *cells, f"{time.perf_counter() - start:.1f}"]))


def pipeline_config(settings: AttackSettings, has_baseline: bool) -> tfma.EvalConfig:
    return tfma.utils.update_eval_config_with_defaults(
        eval_config.eval_config(Thresholds() if has_baseline else Thresholds().without_baseline(), settings.attacks),
        has_baseline=has_baseline)


def evaluate(models: dict[str, PixelModel], settings: AttackSettings, records: str, output: str,
             config: tfma.EvalConfig = None) -> float:
    """Seconds TFMA takes over `records` with the pipeline's EvalConfig (as the Evaluator runs it, DirectRunner)."""
    config = config or pipeline_config(settings, BASELINE in models)
    names = {name: name if len(config.model_specs) > 1 else config.model_specs[0].name for name in models}
    shared = [tfma.default_eval_shared_model(model.model_dir, model_name=names[name], eval_config=config)
              for name, model in models.items()]
    start = time.perf_counter()
    tfma.run_model_analysis(eval_shared_model=shared, eval_config=config, data_location=records, output_path=output)
    return time.perf_counter() - start


def reuse_baseline_metrics(models: dict[str, PixelModel], settings: AttackSettings, scratch: str) -> float:
    """Seconds the stage takes when the baseline carries its own metrics from the run it was the candidate of (made
    here first, untimed): the evaluation key, the candidate's copies alone, TFMA on the candidate alone with each
    change threshold a lower bound at the baseline's value (components/blessing/evaluator.with_served_values)."""
    source = os.path.join(scratch, "eval.gz")
    served = {CANDIDATE: models[BASELINE]}
    write(source, os.path.join(scratch, "served"), served, settings, progress=lambda _: None)
    evaluate(served, settings, os.path.join(scratch, "served", "*"), os.path.join(scratch, "served_evaluation"))
    start = time.perf_counter()
    evaluation_key.data_digest([source], settings)
    candidate = {CANDIDATE: models[CANDIDATE]}
    write(source, os.path.join(scratch, "reused"), candidate, settings, progress=lambda _: None)
    config, _ = with_served_values(pipeline_config(settings, has_baseline=True),
                                   metrics_by_slice(os.path.join(scratch, "served_evaluation")))
    evaluate(candidate, settings, os.path.join(scratch, "reused", "*"), os.path.join(scratch, "reused_eval"), config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=f"an exported model (default: the newest under {report.SERVED})")
    parser.add_argument("--baseline", help="also attack this exported model, as the component does with a baseline")
    parser.add_argument("--pgd-steps", type=int, default=AttackSettings.pgd_steps)
    parser.add_argument("--batch-size", type=int, default=AttackSettings.batch_size)
    parser.add_argument("--attacks", type=attack_names, default=AttackSettings.attacks,
                        help="of fgsm, pgd, apgd-ce, apgd-dlr (default: the pipeline's)")
    parser.add_argument("--accuracy-only", action="store_true",
                        help="only each attack's accuracy per ε (no component, no Evaluator)")
    args = parser.parse_args()
    models = {CANDIDATE: PixelModel(args.model or report.newest_version())}
    if args.baseline:
        models[BASELINE] = PixelModel(args.baseline)
    settings = AttackSettings(attacks=args.attacks, pgd_steps=args.pgd_steps, batch_size=args.batch_size,
                              worst_case_epsilon=Thresholds().robust_epsilon)  # as the pipeline's default run
    print(f"model {models[CANDIDATE].model_dir}; {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")

    if args.accuracy_only:
        for name, model in models.items():
            print(f"{name}: accuracy per ε (attacks on the images in memory, as the component makes them)")
            accuracy_per_epsilon(model, settings)
        return
    with tempfile.TemporaryDirectory() as scratch:
        sources = write_test_split(os.path.join(scratch, "eval.gz"))
        start = time.perf_counter()
        write(os.path.join(scratch, "eval.gz"), os.path.join(scratch, "out"), models, settings)
        generation = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(scratch, "out", f)) for f in os.listdir(os.path.join(scratch, "out")))
        records = sources * (1 + len(models) * settings.copies_per_model)
        worst = f" and their worst case at ε {settings.worst_case_epsilon}" if settings.worst_case else ""
        print(f"attack generation: {sources:,} images, {len(models)} model(s), {', '.join(settings.attacks)} "
              f"(PGD-{settings.pgd_steps}) at ε {', '.join(map(str, settings.epsilons))}{worst}: "
              f"{generation:.1f}s, {records:,} records ({size / 1e6:.0f} MB)")
        evaluator = evaluate(models, settings, os.path.join(scratch, "out", "*"), os.path.join(scratch, "evaluation"))
        print(f"Evaluator (TFMA as the pipeline configures it: clean, clean x class, attack x ε; {len(models)} "
              f"model(s), each on all {records:,} records): {evaluator:.1f}s")
        print(f"together: {generation + evaluator:.1f}s (issue 16's target: 75s with a baseline)")
        if BASELINE in models:
            reused = reuse_baseline_metrics(models, settings, scratch)
            print(f"with the baseline's own metrics reused (the evaluation key, the candidate's copies, TFMA on the "
                  f"candidate alone): {reused:.1f}s, {reused / (generation + evaluator):.2f} of the above")
    for name, model in models.items():
        print(f"{name}, the attacks alone (no reading, decoding, encoding or writing):")
        accuracy_per_epsilon(model, settings)

if __name__ == "__main__":
    main()
