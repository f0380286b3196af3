"""A retraining day on real Fashion-MNIST spans, `cnnpipe retrain` over the newest two: span 1 with the run killed
in each component and resumed; span 2 (more data) retrained while `cnnpipe serve` answers clients from the same
serving directory and a second run on the same output is tried; span 3, brightened images whose labels mean
nothing: drift, stopped, then accepted and not pushed; then a retrain with no new span. The slowest scenario of the
suite, in a module of its own so that it runs beside the others."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from html import escape as html_escape
from typing import Optional

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tensorflow_serving.apis import predict_pb2

from conftest import (clients_calling, cnnpipe, encode, fashion_mnist, free_ports, headless_chromium,
                      running_server, version_runs, versions, wait_until, write_idx)
from http_sink import http_sink
from cnnpipe.runners import retrain
from cnnpipe.pipeline import metadata
from cnnpipe.report import history, outcome, summary, writer
from cnnpipe.cli.main import EXIT_NOT_PUSHED
from cnnpipe.pipeline.datasets import FASHION_MNIST
from cnnpipe.pipeline.output_dir import metadata_path

MODEL = "fashion"
ANKLE_BOOT = FASHION_MNIST.class_names.index("Ankle boot")
# Components slow enough to be killed while they work, in the order the run meets them.
KILLED_IN = ("ImageExampleGen", "StatisticsGen", "Transform", "Trainer", "EmbeddingIndex", "AdversarialExamples",
             "Evaluator", "PushCheck")


def retrain_args(data, output, min_accuracy: float = 0.2, max_accuracy_drop: float = 0.3) -> list[str]:
    """`cnnpipe retrain` on the newest two real spans: one quick epoch, one ε, by default a low bar to bless (one
    epoch on span 1's 540 training images reaches about 30%; chance is 10%)."""
    return ["retrain", "--data", str(data), "--output", str(output), "--model-name", MODEL, "--schema", "fashion_mnist",
            "--class-names", ",".join(FASHION_MNIST.class_names), "--epochs", "1", "--batch-size", "32",
            "--epsilons", "0.1", "--pgd-steps", "3", "--span-window", "2", "--min-accuracy", str(min_accuracy),
            "--max-accuracy-drop", str(max_accuracy_drop)]


def cnnpipe_process(*args: str, cwd) -> subprocess.Popen:
    """`cnnpipe` in its own process group, its output one stream of lines."""
    return subprocess.Popen([sys.executable, "-m", "cnnpipe.cli.main", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_in(component: str, args: list[str], cwd) -> str:
    """Runs `cnnpipe` until `component` has worked for a second, then kills it and its children; its output."""
    process = cnnpipe_process(*args, cwd=cwd)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.rstrip().endswith(f"▶ {component}"):
            time.sleep(1.0)
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    lines += process.stdout.readlines()
    assert process.returncode == -signal.SIGKILL, f"the run ended before {component}:\n{''.join(lines)}"
    return "".join(lines)


def finished_components(output: str) -> dict[str, bool]:
    """Component -> whether it came from the cache, from a run's progress lines."""
    return {match[1]: bool(match[2]) for match in re.finditer(r"✓ (\S+) [\d.]+s( \(cached\))?", output)}


def trainer_spans(output) -> list[int]:
    """The spans of the examples behind the newest Trainer execution, traced in MLMD through Transform."""
    store = metadata.store(metadata_path(str(output)))
    types = {t.name.rsplit(".", 1)[-1]: t.name for t in store.get_execution_types()}
    trainer = max(store.get_executions_by_type(types["Trainer"]), key=lambda e: e.id)
    inputs = [e.artifact_id for e in store.get_events_by_execution_ids([trainer.id])
              if e.path.steps[0].key == "examples"]
    transform = next(e.execution_id for e in store.get_events_by_artifact_ids(inputs) if e.type == e.OUTPUT)
    raw = [e.artifact_id for e in store.get_events_by_execution_ids([transform])
           if e.type == e.INPUT and e.path.steps[0].key == "examples"]
    return sorted(artifact.custom_properties["span"].int_value for artifact in store.get_artifacts_by_id(raw))


@dataclasses.dataclass
class RetrainingDay:
    """What the scenario saw: the output of each attempt, the serving directory, and the clients' answers."""

    serving_base: str
    killed: dict[str, str] = dataclasses.field(default_factory=dict)  # component -> output of the killed attempt
    left_after_kill: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # what the model dir held
    resumed: Optional[subprocess.CompletedProcess] = None  # the attempt that finished span 1
    left_after_resume: list[str] = dataclasses.field(default_factory=list)
    span1_model: str = ""  # the Model artifact span 1's run indexed (EmbeddingIndex), blessed and pushed
    second_run: Optional[subprocess.CompletedProcess] = None  # tried while span 2 was retrained
    retraining_pid: int = 0
    span2: str = ""
    span2_code: int = -1
    answered: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (client thread, version) a request
    failures: list[str] = dataclasses.field(default_factory=list)
    span2_run: Optional[summary.RunSummary] = None
    span2_baseline: Optional[metadata_store_pb2.Artifact] = None  # ServedModel's output in span 2's run
    span2_copies: Optional[metadata_store_pb2.Artifact] = None  # AdversarialExamples' output in span 2's run
    span2_trained_on: list[int] = dataclasses.field(default_factory=list)
    left_after_span2: list[str] = dataclasses.field(default_factory=list)
    span3: Optional[subprocess.CompletedProcess] = None  # labels that mean nothing
    span3_trained_on: list[int] = dataclasses.field(default_factory=list)
    left_after_span3: list[str] = dataclasses.field(default_factory=list)
    again: Optional[subprocess.CompletedProcess] = None  # no new span
    trained_spans: list[int] = dataclasses.field(default_factory=list)
    left_at_the_end: list[str] = dataclasses.field(default_factory=list)
    drifted: Optional[subprocess.CompletedProcess] = None  # span 3: brightened images (and labels that mean nothing)
    accepted: Optional[subprocess.CompletedProcess] = None  # span 3 again, with --accept-drift (= span3)
    accepted_run: Optional[summary.RunSummary] = None
    posts: list[dict] = dataclasses.field(default_factory=list)  # span 3's outcomes, as its runs posted them
    output: str = ""


def write_span(data, span: int, start: int, count: int, drop_eval_class: int = -1, shuffle_labels: bool = False,
               brighten: int = 0) -> None:
    """Real train and t10k images; with `drop_eval_class`, the eval split has none of that class; with
    `shuffle_labels`, labels that mean nothing; with `brighten`, every pixel that many levels brighter."""
    images, labels = fashion_mnist("train", start + count)
    shuffled = np.random.default_rng(span).permutation if shuffle_labels else lambda labels: labels
    lit = lambda pixels: np.clip(pixels.astype(int) + brighten, 0, 255)  # noqa: E731
    write_idx(str(data / f"span-{span}"), "train", lit(images[start:]), shuffled(labels[start:]))
    first, last = start // 3, (start + count) // 3
    images, labels = fashion_mnist("t10k", last)
    keep = labels[first:] != drop_eval_class
    write_idx(str(data / f"span-{span}"), "t10k", lit(images[first:][keep]), shuffled(labels[first:][keep]))


def serve_while(serving_dir: str, seen: "RetrainingDay", newest_version, work) -> None:
    """Runs `work()` while two clients call `cnnpipe serve` on `serving_dir`; records every answer, then waits
    (bounded) until the server answers with `newest_version()`."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL, "predict_image"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([encode(pixels) for pixels in fashion_mnist("t10k", 4)[0]]))
    with running_server(serving_dir) as server:
        with clients_calling(server, request, lambda answer: seen.answered.append(
                (threading.get_ident(), answer.model_spec.version.value)), seen.failures):
            work()
            wait_until(lambda: bool(seen.answered) and seen.answered[-1][1] == newest_version())


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> RetrainingDay:
    """Span 1 retrained with the run killed in each component and started again each time; then span 2 retrained
    while `cnnpipe serve` answers clients from the same serving directory, with a second run on the same output
    tried meanwhile (neither eval split has Ankle boots); then span 3, brightened, with shuffled labels and the bar
    of a production run: stopped by drift, then run with --accept-drift; then a retrain with no new span."""
    root = tmp_path_factory.mktemp("retraining_day")
    data, output = root / "data", root / "out"
    seen = RetrainingDay(serving_base=str(output / "serving" / MODEL), output=str(output))
    write_span(data, 1, 0, 600, drop_eval_class=ANKLE_BOOT)
    for component in KILLED_IN:
        seen.killed[component] = kill_in(component, retrain_args(data, output), root)
        seen.left_after_kill[component] = versions(seen.serving_base)
    seen.resumed = cnnpipe(*retrain_args(data, output), cwd=root)
    seen.left_after_resume = versions(seen.serving_base)
    seen.span1_model = metadata.run_outputs(metadata_path(str(output)), MODEL)[1]["indexed_model"].uri

    def retrain_span_2() -> None:
        retraining = cnnpipe_process(*retrain_args(data, output), cwd=root)
        seen.retraining_pid = retraining.pid
        lines = [retraining.stdout.readline()]
        while lines[-1] and "▶" not in lines[-1]:  # the lock is held once the first component starts
            lines.append(retraining.stdout.readline())
        seen.second_run = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "cnnpipe.cli.main", *retrain_args(data, output)],
            cwd=root, capture_output=True, text=True, timeout=600)
        lines += retraining.stdout.readlines()
        seen.span2, seen.span2_code = "".join(lines), retraining.wait(timeout=60)

    write_span(data, 2, 600, 900, drop_eval_class=ANKLE_BOOT)
    serve_while(str(output / "serving"), seen, lambda: int(versions(seen.serving_base)[-1]), retrain_span_2)
    seen.span2_run = summary.summarize(metadata_path(str(output)), MODEL)
    seen.span2_baseline, seen.span2_copies = (metadata.run_outputs(metadata_path(str(output)), MODEL)[1][key]
                                              for key in ("baseline", "adversarial_examples"))
    seen.span2_trained_on, seen.left_after_span2 = trainer_spans(output), versions(seen.serving_base)

    # Span 3 is both faults at once, one full retrain for the two: its brightness drifted, which stops the first
    # attempt before Transform; accepted, it trains, and its labels (which mean nothing) keep it from being pushed.
    write_span(data, 3, 1500, 600, shuffle_labels=True, brighten=40)
    port = free_ports(1)[0]
    span3_args = [*retrain_args(data, output, min_accuracy=0.5, max_accuracy_drop=0.0),
                  "--notify-url", f"http://127.0.0.1:{port}/hook"]
    with http_sink(port) as posts:  # a chat channel's webhook
        seen.drifted = cnnpipe(*span3_args, cwd=root)
        seen.span3 = seen.accepted = cnnpipe(*span3_args, "--accept-drift", cwd=root)
    seen.posts = [body for _, _, body in posts]
    seen.accepted_run = summary.summarize(metadata_path(str(output)), MODEL)
    seen.span3_trained_on, seen.left_after_span3 = trainer_spans(output), versions(seen.serving_base)
    seen.again = cnnpipe(*retrain_args(data, output), cwd=root)
    seen.trained_spans = retrain.trained_spans(metadata_path(str(output)), MODEL)
    seen.left_at_the_end = versions(seen.serving_base)
    return seen


@pytest.mark.fault("orchestration", "retrain killed (SIGKILL) in each of 8 components, then run again each time",
                   "no version from a killed attempt; the next attempt reuses what finished and pushes one version")
def test_a_run_killed_in_each_component_resumes_and_pushes_once(day, observed):
    assert all(left == [] for left in day.left_after_kill.values())
    assert day.resumed.returncode == 0, day.resumed.stdout + day.resumed.stderr
    finished = finished_components(day.resumed.stdout)
    # What the attempts finished came from the cache: the served model (none, the killed attempts pushed nothing) is
    # the same in each, so the baseline and the Trainer after it are too. The Trainer ran once, in the attempt
    # killed in the step after it.
    assert [c for c in KILLED_IN[:-1] if finished.get(c)] == list(KILLED_IN[:-1])
    assert finished["ServedModel"]
    trained_in = [c for c, output in day.killed.items() if finished_components(output).get("Trainer") is False]
    assert trained_in == ["EmbeddingIndex"]
    assert "warm start: no model is served yet, training from scratch" in day.killed["EmbeddingIndex"]
    assert not finished["PushCheck"] and not finished["AtomicPusher"] and "Pushed to" in day.resumed.stdout
    assert len(day.left_after_resume) == 1 and day.left_after_resume[0].isdigit()
    observed(f"no version after any of the {len(KILLED_IN)} kills; the Trainer ran once; the {len(KILLED_IN) + 1}th "
             f"attempt took {sum(finished.values())} components from the cache and pushed version "
             f"{day.left_after_resume[0]}")


@pytest.mark.fault("orchestration", "a second run on the same --output while a run holds it",
                   "refused at once, before TFX loads, naming the process that holds it; exit 1")
def test_a_second_run_is_refused_before_tfx_loads(day, observed):
    second = day.second_run
    message = second.stderr.strip().splitlines()[-1]
    assert second.returncode == 1
    assert f"another cnnpipe run (pid {day.retraining_pid}) is using this output directory" in message
    imported = {line.split("|")[-1].strip() for line in second.stderr.splitlines() if line.startswith("import time:")}
    assert "tfx" not in imported and "tensorflow" not in imported
    observed(f"exit 1 with {len(imported)} modules imported, none of TFX or TensorFlow: {message}")


@pytest.mark.fault("serving", "retrain pushes a new version while `cnnpipe serve` answers from the same directory",
                   "every request answered; the server switches to the new version")
def test_retraining_while_serving_answers_every_request(day, observed):
    assert day.span2_code == 0, day.span2
    assert day.failures == []
    old, new = (int(name) for name in day.left_after_span2)
    assert version_runs(day.answered) == [[old, new], [old, new]]  # each client: the old version, then the new
    observed(f"{len(day.answered)} requests answered, 0 failed; version {old} until the push, then {new}")


@pytest.mark.fault("evaluation", "a class with no eval images (span 2's eval split lacks Ankle boot)",
                   "the run finishes; the summary marks the class not evaluated and warns")
def test_a_class_without_eval_images_is_named_in_the_summary(day, observed):
    line = next(line for line in day.span2.splitlines() if line.strip().startswith("Ankle boot"))
    assert "not evaluated: the eval split has no images of it" in line
    assert "Warning: 1 class(es) were not evaluated" in day.span2
    observed(line.strip())


def test_a_span_with_more_data_is_trained_on_the_newest_two_from_the_served_model(day):
    """The baseline and warm start is the version served after span 1, traced back to the model span 1 trained."""
    baseline = {key: value.string_value for key, value in day.span2_baseline.custom_properties.items()}
    assert baseline["served_from"] == os.path.join(day.serving_base, day.left_after_resume[0])
    assert baseline["pushed_model_uri"] == day.span1_model
    assert f"warm start from {day.span2_baseline.uri}/Format-Serving: 8 layers copied" in day.span2  # lenet5_wide's
    run = day.span2_run
    assert run.blessed and run.baseline_accuracy is not None and run.accuracy >= run.baseline_accuracy
    assert day.span2_trained_on == [1, 2]
    assert len(day.left_after_span2) == 2


def test_a_span_whose_labels_mean_nothing_is_not_pushed(day):
    assert day.span3.returncode == EXIT_NOT_PUSHED, day.span3.stdout + day.span3.stderr
    assert "Blessed: no." in day.span3.stdout and "Not pushed." in day.span3.stdout
    assert day.span3_trained_on == [2, 3]
    assert day.left_after_span3 == day.left_after_span2  # span 2's version is still the newest served


def test_a_retrain_without_a_new_span_does_nothing(day):
    assert day.again.returncode == 0, day.again.stderr
    assert "no new span" in day.again.stdout and "span 3 is already trained" in day.again.stdout
    assert day.trained_spans == [1, 2, 3]
    assert day.left_at_the_end == day.left_after_span2


def test_span_2_is_checked_for_drift_against_the_data_span_1_was_trained_on(day):
    """The statistics travel with the pushed version (Pusher) and back into the next run (ServedModel)."""
    assert day.span2_run.drift.startswith("No drift against the served model's training data: ")
    assert "class_name L-infinity distance 0.0" in day.span2_run.drift
    assert "brightness Jensen-Shannon divergence 0.0" in day.span2_run.drift


def test_span_2s_new_eval_images_get_the_served_model_attacked_again(day):
    """The served model's metrics were pushed with it, but they measured span 1's eval images: not reused."""
    copies = day.span2_copies.custom_properties
    assert copies["baseline_reused"].int_value == 0 and copies["attacked_models"].string_value == "candidate,baseline"
    assert day.span2_run.baseline_accuracy is not None


@pytest.mark.fault("validation", "a new span of brightened images (drift from the served model's training data)",
                   "stopped before Transform naming brightness, its JS divergence and threshold; --accept-drift goes "
                   "on and the summary says so")
def test_a_drifted_span_stops_the_retrain_by_name_until_the_drift_is_accepted(day, observed):
    assert day.drifted.returncode == 1, day.drifted.stdout[-2000:]
    message = day.drifted.stderr.strip().splitlines()
    assert message[0] == ("cnnpipe: The data drifted from the data the served model was trained on; the run stopped "
                          "before Transform.")
    assert re.fullmatch(r"  - brightness: Jensen-Shannon divergence 0\.\d{4} > 0\.1", message[1]), message
    assert "run again with --accept-drift" in message[2] and "✓ Transform" not in day.drifted.stdout
    stopped_page = re.search(r"^Report: (\S+)", day.drifted.stdout, re.M).group(1)  # the stopped run's report
    with open(stopped_page, encoding="utf-8") as file:
        assert html_escape(message[1].strip()) in file.read()
    assert day.accepted.returncode in (0, EXIT_NOT_PUSHED), day.accepted.stderr[-2000:]
    assert day.accepted_run.drift == ("Drift accepted (--accept-drift) against the served model's training data: "
                                      + message[1].strip().removeprefix("- ") + ".")
    assert day.accepted_run.drift in day.accepted.stdout
    page = re.search(r"^Report: (\S+)", day.accepted.stdout, re.M).group(1)  # the run's report shows the drift
    with open(page, encoding="utf-8") as file:
        html = file.read()
    assert html_escape(day.accepted_run.drift) in html
    assert re.search(r'<tr class="fail"><td>brightness</td><td>Jensen-Shannon divergence</td><td>0\.\d{4}</td>'
                     r"<td>0\.1</td></tr>", html)
    observed(message[1].strip() + "; accepted: " + day.accepted_run.drift.split(":")[0])


@pytest.mark.fault("orchestration", "a scheduled run stops (drift), then is not blessed, with --notify-url",
                   "each posts its outcome to the webhook and writes outcome.json: failed in ValidationGate with the "
                   "error; not blessed with each threshold missed and its margin")
def test_each_run_posts_its_outcome_and_writes_it_beside_its_report(day):
    """Span 3's runs, given --notify-url: the one the drift check stopped posts "failed" with the step and the error;
    the one with the drift accepted, "not blessed" with each threshold it missed and by how much. Each post is the
    outcome.json beside the run's report."""
    failed, not_blessed = day.posts
    assert (failed["status"], failed["failed_step"]) == (history.FAILED, "ValidationGate")
    assert "drift" in failed["error"] and failed["accuracy"] is None
    assert not_blessed["status"] == history.NOT_BLESSED and not_blessed["version"] is None
    assert not_blessed["failures"] == day.accepted_run.failures and "(by 0." in not_blessed["failures"][0]
    assert not_blessed["accuracy"] == pytest.approx(day.accepted_run.accuracy)
    assert not_blessed["summary"] == f"not blessed: {day.accepted_run.failures[0]}"
    for posted in day.posts:
        directory = writer.report_dir(day.output, posted["run_id"])
        with open(os.path.join(directory, outcome.FILE_NAME), encoding="utf-8") as f:
            assert json.load(f) == posted
        assert posted["report"] == os.path.abspath(os.path.join(directory, writer.PAGE_NAME))
    assert "Outcome: not blessed: " in day.accepted.stdout


def test_cnnpipe_runs_lists_the_day_with_how_each_run_ended(day, tmp_path):
    """Every run of the day, oldest first: the eight killed attempts by the step they stopped in, span 1's and span
    2's pushes, span 3 failed by the drift check, then not blessed; the refused second run and the retrain without a
    new span started no run."""
    output = os.path.dirname(os.path.dirname(day.serving_base))
    rows = history.history(metadata_path(output), MODEL, last=100)
    assert [row.outcome for row in rows[:-1]] == [
        *(f"stopped in {component} (killed, or still running)" for component in KILLED_IN),
        f"pushed version {day.left_after_resume[-1]}", f"pushed version {day.left_after_span2[-1]}",
        "failed in ValidationGate"]
    assert rows[-1].outcome == f"not blessed: {day.accepted_run.failures[0]}"
    assert [row.span for row in rows[len(KILLED_IN):]] == [1, 2, 3, 3]
    assert rows[-1].accuracy == day.accepted_run.accuracy and rows[-3].accuracy == day.span2_run.accuracy
    assert [row.started for row in rows] == sorted(row.started for row in rows)
    listed = cnnpipe("runs", "--output", output, "--last", "2", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == f"2 run(s) of {MODEL}, oldest first:" and len(lines) == 4
    assert lines[2].endswith("failed in ValidationGate") and lines[3].endswith(rows[-1].outcome)
    page = re.search(r"^Report: (\S+)", day.accepted.stdout, re.M).group(1)  # the last run's report: the trend
    with headless_chromium(tmp_path / "chromium") as driver:
        driver.get("file://" + page)
        table = [[cell.text for cell in row.find_elements("css selector", "td")]
                 for row in driver.find_elements("css selector", "table#runs tbody tr")]
        trend = driver.execute_script("return [...document.images].filter(i => i.alt.includes('over the last runs'))"
                                      ".map(i => i.complete && i.naturalWidth > 0)")
    assert table == [row.cells() for row in rows[-10:]] and trend == [True]
