"""Robustness in the pipeline (`cnnpipe run` on a real Fashion-MNIST slice): the attacked slices gate the
blessing, the Evaluator's FGSM accuracy matches an independent attack, and the report is written."""

import csv
import glob
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import cnnpipe, write_fashion_mnist_slice
from cnnpipe.core import features
from cnnpipe.models import collapse_check
from cnnpipe.runners import local_runner
from cnnpipe.pipeline import metadata
from cnnpipe.report import summary
from cnnpipe.pipeline.datasets import FASHION_MNIST

TRAIN, TEST = 1000, 1000
EPSILONS = (0.05, 0.1)
EPOCHS = 3
MIN_FGSM_ACCURACY = 0.5  # far above what a few epochs on 1,000 images withstand at ε 0.1



@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return write_fashion_mnist_slice(str(tmp_path_factory.mktemp("data")), TRAIN, TEST)


def short_run(data: str, root, name: str, *options: str) -> dict:
    """`cnnpipe run` of LeNet-5 for three epochs on 1,000 images, with a low clean bound and a high FGSM bound."""
    out = root / "out"
    result = cnnpipe("run", "--data", data, "--output", str(out), "--schema", "fashion_mnist",
                     "--class-names", ",".join(FASHION_MNIST.class_names), "--model-name", name,
                     "--epochs", str(EPOCHS), "--batch-size", "32", "--min-accuracy", "0.3",
                     "--epsilons", ",".join(map(str, EPSILONS)), "--pgd-steps", "3",
                     "--min-fgsm-accuracy", str(MIN_FGSM_ACCURACY), *options, cwd=root)
    return {"result": result, "out": out, "root": root,
            "summary": summary.summarize(local_runner.metadata_path(str(out)), name)}


@pytest.fixture(scope="module")
def fragile_run(data, tmp_path_factory) -> dict:
    """Standard training: it passes the clean bound and fails the FGSM bound."""
    return short_run(data, tmp_path_factory.mktemp("fragile"), "fragile")


def accuracy_under(run: dict, attack: str, epsilon: float) -> float:
    return next(p.candidate for p in run["summary"].robustness if (p.attack, p.epsilon) == (attack, epsilon))


def test_a_model_that_passes_clean_accuracy_but_fails_fgsm_is_not_pushed(fragile_run):
    result, run = fragile_run["result"], fragile_run["summary"]
    assert result.returncode == 2, result.stderr[-3000:]
    assert run.accuracy >= 0.3 and not run.blessed
    fgsm = accuracy_under(fragile_run, "fgsm", 0.1)
    assert fgsm < MIN_FGSM_ACCURACY
    expected = (f"sparse_categorical_accuracy under fgsm at ε 0.1 {fgsm:.4f} is below the lower bound "
                f"{MIN_FGSM_ACCURACY:.4f} (by {MIN_FGSM_ACCURACY - fgsm:.4f}).")
    assert run.failures == [expected]  # the one failed slice, by name and margin; clean accuracy passed
    assert f"Blessed: no. {expected}\nNot pushed." in result.stdout
    assert not glob.glob(str(fragile_run["out"] / "serving" / "fragile" / "*"))


def test_accuracy_falls_as_epsilon_grows(fragile_run):
    points = {(p.attack, p.epsilon): p.candidate for p in fragile_run["summary"].robustness}
    # the attacks' worst case at the gated ε (--robust-epsilon, 0.1): an image counts only if neither attack broke it
    assert set(points) == {("none", 0.0), ("worst-case", 0.1)} | {(a, e) for a in ("fgsm", "pgd") for e in EPSILONS}
    for attack in ("fgsm", "pgd"):
        curve = [points["none", 0.0]] + [points[attack, e] for e in EPSILONS]
        assert curve == sorted(curve, reverse=True) and curve[-1] < curve[0] - 0.1, (attack, curve)
    assert points["worst-case", 0.1] <= min(points["fgsm", 0.1], points["pgd", 0.1])


def test_the_evaluators_fgsm_slice_equals_an_independent_attack(fragile_run):
    """FGSM by hand: tf.GradientTape through the exported model from raw pixels, cross-entropy, sign step."""
    _, outputs = metadata.run_outputs(local_runner.metadata_path(str(fragile_run["out"])), "fragile")
    saved = tf.saved_model.load(os.path.join(outputs["model"].uri, "Format-Serving"))
    records = tf.data.TFRecordDataset(glob.glob(os.path.join(outputs["examples"].uri, "Split-eval", "*")), "GZIP")
    parsed = [tf.io.parse_single_example(r, {features.IMAGE: tf.io.FixedLenFeature([], tf.string),
                                             features.LABEL: tf.io.FixedLenFeature([], tf.int64)}) for r in records]
    encoded = tf.stack([p[features.IMAGE] for p in parsed])
    labels = tf.stack([p[features.LABEL] for p in parsed])
    pixels = tf.cast(tf.stack([tf.io.decode_png(image) for image in encoded]), tf.float32)
    normalize = lambda x: x / 127.5 - 1.0  # noqa: E731 - --normalization scale, as the model's Transform graph does
    transformed = saved.tft_layer({features.IMAGE: encoded[:, None]})[features.IMAGE_XF]
    np.testing.assert_allclose(transformed, normalize(pixels), atol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        loss = tf.keras.losses.sparse_categorical_crossentropy(labels, saved(normalize(pixels), training=False))
    attacked = tf.clip_by_value(pixels + round(0.1 * 255) * tf.sign(tape.gradient(loss, pixels)), 0, 255)
    predicted = tf.argmax(saved(normalize(attacked), training=False), axis=-1)
    independent = float(tf.reduce_mean(tf.cast(predicted == labels, tf.float32)))
    evaluator = accuracy_under(fragile_run, "fgsm", 0.1)
    assert len(labels) == TEST
    assert evaluator == pytest.approx(independent, abs=0.005)


def test_the_report_is_written_and_cnnpipe_report_prints_it_again(fragile_run):
    run, out = fragile_run["summary"], fragile_run["out"]
    directory = out / "reports" / run.run_id.replace(":", "-")
    assert (f"Report: {directory / 'index.html'} (robustness: {directory / 'robustness.csv'}, "
            f"{directory / 'robustness.png'})") in fragile_run["result"].stdout
    with open(directory / "robustness.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(r["model"], r["attack"], float(r["epsilon"])) for r in rows] == [
        ("candidate", "none", 0.0), *(("candidate", a, e) for a in ("fgsm", "pgd") for e in EPSILONS),
        ("candidate", "worst-case", 0.1)]
    assert [float(r["accuracy"]) for r in rows] == pytest.approx([p.candidate for p in run.robustness], abs=1e-6)
    with Image.open(directory / "robustness.png") as image:
        assert image.format == "PNG" and image.width > 500
    os.remove(directory / "robustness.png")

    again = cnnpipe("report", str(out), cwd=fragile_run["root"])
    assert again.returncode == 0, again.stderr
    table = re.search(r"Robustness \(.*?\n(?=Blessed)", fragile_run["result"].stdout, re.S).group(0)
    assert table in again.stdout and f"Run {run.run_id} of fragile" in again.stdout
    assert (directory / "robustness.png").exists()


def test_adversarial_training_raises_the_accuracy_under_attack(data, fragile_run, tmp_path):
    """The same data, model and epochs with --adversarial fgsm-rs, as the pipeline's Evaluator measures it."""
    robust = short_run(data, tmp_path, "robust", "--adversarial", "fgsm-rs")
    assert robust["result"].returncode in (0, 2), robust["result"].stderr[-3000:]
    assert "adversarial fgsm-rs at ε 0.1" in robust["result"].stdout
    check = robust["summary"].collapse_check  # the Trainer checked for catastrophic overfitting each epoch
    assert check["attack"] == "pgd-10" and len(check["accuracy_per_epoch"]) in range(2, EPOCHS + 1)
    assert summary.collapse_line(check) in robust["result"].stdout
    events = glob.glob(str(robust["out"] / "pipeline" / "Trainer" / "model_run" / "*" / "logs" / "train" / "*"))
    logged = [float(tf.make_ndarray(value.tensor)) for event in tf.compat.v1.train.summary_iterator(events[0])
              for value in event.summary.value if value.tag == "epoch_" + collapse_check.LOG_KEY]
    assert logged == pytest.approx(check["accuracy_per_epoch"], abs=1e-4)  # in TensorBoard
    assert fragile_run["summary"].collapse_check == {}

    def lost_under(run: dict, attack: str) -> float:
        return run["summary"].accuracy - accuracy_under(run, attack, 0.1)

    assert accuracy_under(robust, "fgsm", 0.1) > accuracy_under(fragile_run, "fgsm", 0.1)
    for attack in ("fgsm", "pgd"):  # the accuracy an attack takes away shrinks
        assert lost_under(robust, attack) < lost_under(fragile_run, attack) - 0.08, attack


def test_report_names_a_directory_without_a_run(tmp_path):
    result = cnnpipe("report", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"cnnpipe: {tmp_path}: no metadata.sqlite here; give the --output directory of "
                                     "a `cnnpipe run` (default cnnpipe-output).")


def test_the_worst_case_gate_needs_two_attacks_and_bounds_their_worst_case_slice():
    from cnnpipe.components.blessing import eval_config  # noqa: PLC0415 - TFMA
    from cnnpipe.pipeline.config import PipelineConfig  # noqa: PLC0415
    from cnnpipe.core.errors import CnnpipeError  # noqa: PLC0415

    config = PipelineConfig.from_options(attacks=("fgsm", "pgd", "apgd-ce"), min_robust_accuracy=0.4)
    gates = eval_config.eval_config(config.checked_thresholds(), config.robustness.attacks).metrics_specs[0] \
        .metrics[0].per_slice_thresholds
    worst = [gate for gate in gates if dict(gate.slicing_specs[0].feature_values).get(features.ATTACK) == "worst-case"]
    assert len(worst) == 1 and worst[0].threshold.value_threshold.lower_bound.value == 0.4
    with pytest.raises(CnnpipeError, match="--min-robust-accuracy gates the worst case of two or more --attacks"):
        PipelineConfig.from_options(attacks=("pgd",), min_robust_accuracy=0.4).checked_thresholds()


def test_the_report_draws_every_attack_and_the_worst_case_for_the_candidate_and_the_served_model(tmp_path):
    from cnnpipe.report import figures, writer  # noqa: PLC0415 - matplotlib
    from cnnpipe.report.run_facts import RunFacts  # noqa: PLC0415

    points = [summary.RobustnessPoint("none", 0.0, 0.91, 0.90)]
    points += [summary.RobustnessPoint(attack, epsilon, 0.5 - epsilon, 0.4 - epsilon)
               for attack in ("fgsm", "pgd", "apgd-ce") for epsilon in EPSILONS]
    points.append(summary.RobustnessPoint("worst-case", 0.1, 0.2, 0.1))
    rows = writer.report_rows(points)
    assert ("baseline", "apgd-ce", 0.1, pytest.approx(0.3)) in rows
    assert len(rows) == 2 * len(points)
    lines = {line.get_label(): line for line in figures.robustness(rows, "run").axes[0].get_lines()}
    assert set(lines) == {f"{attack}, {model}" for attack in ("FGSM", "PGD", "APGD-CE", "WORST-CASE")
                          for model in ("candidate", "served")}
    served, candidate = lines["APGD-CE, served"], lines["APGD-CE, candidate"]
    assert served.get_linestyle() == "--" and candidate.get_linestyle() == "-"
    assert served.get_color() == candidate.get_color()
    assert list(served.get_xydata()[:, 1]) == pytest.approx([0.90, 0.35, 0.3])  # from the served model's clean accuracy
    assert list(lines["WORST-CASE, candidate"].get_xydata()[:, 0]) == [0.0, 0.1]
    _, csv_path, png_path = writer.write(RunFacts("fashion", summary.RunSummary("run", robustness=points)),
                                         str(tmp_path))
    with open(csv_path) as file:
        assert len(list(csv.DictReader(file))) == len(rows)
    with Image.open(png_path) as image:
        assert image.format == "PNG"
