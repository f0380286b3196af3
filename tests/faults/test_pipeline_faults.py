"""Faults of a whole run on real Fashion-MNIST: labels and classes the class names rule out, runs killed in
each component and resumed, a second run on the same output, a damaged metadata store, and retraining while
`cnnpipe serve` answers from the same serving directory."""

import base64
import dataclasses
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Optional

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from conftest import cnnpipe, encode, fashion_mnist, running_server, small_run_config, write_idx
from cnnpipe.core.errors import DataValidationError
from cnnpipe.pipeline import local_runner, summary
from cnnpipe.pipeline.datasets import FASHION_MNIST
from cnnpipe.pipeline.output_dir import metadata_path

MODEL = "fashion"
ANKLE_BOOT = FASHION_MNIST.class_names.index("Ankle boot")
# Components slow enough to be killed while they work, in the order the run meets them.
KILLED_IN = ("ImageExampleGen", "StatisticsGen", "Transform", "Trainer", "AdversarialExamples", "Evaluator",
             "PushCheck")


def retrain_args(data, output) -> list[str]:
    """`cnnpipe retrain` on real spans: one quick epoch, one ε, a low bar to bless."""
    return ["retrain", "--data", str(data), "--output", str(output), "--model-name", MODEL, "--schema", "fashion_mnist",
            "--class-names", ",".join(FASHION_MNIST.class_names), "--epochs", "1", "--batch-size", "32",
            "--epsilons", "0.1", "--pgd-steps", "3", "--min-accuracy", "0.3", "--max-accuracy-drop", "0.3"]


def cnnpipe_process(*args: str, cwd) -> subprocess.Popen:
    """`cnnpipe` in its own process group, its output one stream of lines."""
    return subprocess.Popen([sys.executable, "-m", "cnnpipe.pipeline.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
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


def versions(serving_base) -> list[str]:
    return sorted(os.listdir(serving_base)) if os.path.isdir(serving_base) else []


def finished_components(output: str) -> dict[str, bool]:
    """Component -> whether it came from the cache, from a run's progress lines."""
    return {match[1]: bool(match[2]) for match in re.finditer(r"✓ (\S+) [\d.]+s( \(cached\))?", output)}


@dataclasses.dataclass
class RetrainingDay:
    """What the scenario saw: the output of each attempt, the serving directory, and the clients' answers."""

    serving_base: str
    killed: dict[str, str] = dataclasses.field(default_factory=dict)  # component -> output of the killed attempt
    left_after_kill: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # what the model dir held
    resumed: Optional[subprocess.CompletedProcess] = None  # the attempt that finished span 1
    left_after_resume: list[str] = dataclasses.field(default_factory=list)
    second_run: Optional[subprocess.CompletedProcess] = None  # tried while span 2 was retrained
    retraining_pid: int = 0
    span2: str = ""
    span2_code: int = -1
    answered: list[int] = dataclasses.field(default_factory=list)  # the version that answered each request
    failures: list[str] = dataclasses.field(default_factory=list)


def write_span(data, span: int, start: int, count: int, drop_eval_class: int = -1) -> None:
    """Real train and t10k images; with `drop_eval_class`, the eval split has none of that class."""
    images, labels = fashion_mnist("train", start + count)
    write_idx(str(data / f"span-{span}"), "train", images[start:], labels[start:])
    first, last = start // 3, (start + count) // 3
    images, labels = fashion_mnist("t10k", last)
    keep = labels[first:] != drop_eval_class
    write_idx(str(data / f"span-{span}"), "t10k", images[first:][keep], labels[first:][keep])


def serve_while(serving_dir: str, seen: "RetrainingDay", newest_version, work) -> None:
    """Runs `work()` while two clients call `cnnpipe serve` on `serving_dir`; records every answer, then waits
    (bounded) until the server answers with `newest_version()`."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL, "predict_image"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([encode(pixels) for pixels in fashion_mnist("t10k", 4)[0]]))
    with running_server(serving_dir) as server:
        stop = threading.Event()

        def client() -> None:
            stub = server.predict_stub()
            while not stop.is_set():
                try:
                    seen.answered.append(stub.Predict(request, timeout=60).model_spec.version.value)
                except grpc.RpcError as error:
                    seen.failures.append(f"{error.code()}: {error.details()}")

        clients = [threading.Thread(target=client) for _ in range(2)]
        for thread in clients:
            thread.start()
        work()
        deadline = time.monotonic() + 60  # a bound against hanging, not a speed requirement
        while (not seen.answered or seen.answered[-1] != newest_version()) and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        for thread in clients:
            thread.join()


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> RetrainingDay:
    """Span 1 retrained with the run killed in each component and started again each time; then span 2 (whose
    eval split lacks a class) retrained while `cnnpipe serve` answers clients from the same serving directory,
    with a second run on the same output tried meanwhile."""
    root = tmp_path_factory.mktemp("retraining_day")
    data, output = root / "data", root / "out"
    seen = RetrainingDay(serving_base=str(output / "serving" / MODEL))
    write_span(data, 1, 0, 600)
    for component in KILLED_IN:
        seen.killed[component] = kill_in(component, retrain_args(data, output), root)
        seen.left_after_kill[component] = versions(seen.serving_base)
    seen.resumed = cnnpipe(*retrain_args(data, output), cwd=root)
    seen.left_after_resume = versions(seen.serving_base)

    def retrain_span_2() -> None:
        retraining = cnnpipe_process(*retrain_args(data, output), cwd=root)
        seen.retraining_pid = retraining.pid
        lines = [retraining.stdout.readline()]
        while lines[-1] and "▶" not in lines[-1]:  # the lock is held once the first component starts
            lines.append(retraining.stdout.readline())
        seen.second_run = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "cnnpipe.pipeline.cli", *retrain_args(data, output)],
            cwd=root, capture_output=True, text=True, timeout=600)
        lines += retraining.stdout.readlines()
        seen.span2, seen.span2_code = "".join(lines), retraining.wait(timeout=60)

    write_span(data, 2, 600, 900, drop_eval_class=ANKLE_BOOT)
    serve_while(str(output / "serving"), seen, lambda: int(versions(seen.serving_base)[-1]), retrain_span_2)
    return seen


@pytest.mark.fault("orchestration", "retrain killed (SIGKILL) in each of 7 components, then run again each time",
                   "no version from a killed attempt; the next attempt reuses what finished and pushes one version")
def test_a_run_killed_in_each_component_resumes_and_pushes_once(day, observed):
    assert all(left == [] for left in day.left_after_kill.values())
    assert day.resumed.returncode == 0, day.resumed.stdout + day.resumed.stderr
    finished = finished_components(day.resumed.stdout)
    # What the attempts finished came from the cache, up to the Trainer: the attempt killed in PushCheck had
    # blessed its model, so that model is now the last blessed one, the warm start and the baseline.
    assert [c for c in KILLED_IN[:3] if finished.get(c)] == list(KILLED_IN[:3])
    assert "warm start from" in day.resumed.stdout
    assert not finished["AtomicPusher"] and "Pushed to" in day.resumed.stdout
    assert len(day.left_after_resume) == 1 and day.left_after_resume[0].isdigit()
    observed(f"no version after any of the {len(KILLED_IN)} kills; the 8th attempt took "
             f"{sum(finished.values())} components from the cache and pushed version {day.left_after_resume[0]}")


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
    old, new = (int(name) for name in versions(day.serving_base))
    switch = day.answered.index(new)
    assert set(day.answered[:switch]) == {old} and set(day.answered[switch:]) == {new}
    observed(f"{len(day.answered)} requests answered, 0 failed; version {old} until the push, then {new}")


@pytest.mark.fault("evaluation", "a class with no eval images (span 2's eval split lacks Ankle boot)",
                   "the run finishes; the summary marks the class not evaluated and warns")
def test_a_class_without_eval_images_is_named_in_the_summary(day, observed):
    line = next(line for line in day.span2.splitlines() if line.strip().startswith("Ankle boot"))
    assert "not evaluated: the eval split has no images of it" in line
    assert "Warning: 1 class(es) were not evaluated" in day.span2
    observed(line.strip())


# --- data the class names rule out, whatever the schema ---------------------------------------------------


def idx_slice(directory, train_labels=None) -> str:
    """A real slice as IDX files, the training labels replaced by `train_labels(labels)` when given."""
    images, labels = fashion_mnist("train", 400)
    write_idx(str(directory), "train", images, train_labels(labels) if train_labels else labels)
    write_idx(str(directory), "t10k", *fashion_mnist("t10k", 100))
    return str(directory)


def stopped_before_transform(config) -> str:
    """Runs the pipeline, which must stop with a DataValidationError before Transform; its message."""
    with pytest.raises(DataValidationError) as error:
        local_runner.run(config, out=io.StringIO())
    _, outputs = summary.run_outputs(metadata_path(config.output_dir), config.name)
    assert "statistics" in outputs and "transform_graph" not in outputs
    return str(error.value)


@pytest.mark.fault("validation", "a label outside the class ids, schema inferred by SchemaGen (no --schema)",
                   "stops before Transform, naming file:record and the label")
def test_a_label_outside_the_class_ids_stops_the_run_whatever_the_schema(tmp_path, observed):
    def one_bad_label(labels: np.ndarray) -> np.ndarray:
        labels = labels.copy()
        labels[37] = len(FASHION_MNIST.class_names)
        return labels

    config = small_run_config(idx_slice(tmp_path / "data", one_bad_label), str(tmp_path / "out"), schema=None)
    message = stopped_before_transform(config)
    assert "train-images-idx3-ubyte.gz:37" in message and "'label'" in message
    observed(" ".join(message.split())[:300])


@pytest.mark.fault("validation", "a class with no training images (class names list 10, the data has 9)",
                   "stops before Transform, naming the class")
def test_a_class_without_training_images_stops_the_run(tmp_path, observed):
    data = idx_slice(tmp_path / "data", lambda labels: np.where(labels == ANKLE_BOOT, 0, labels))
    config = small_run_config(data, str(tmp_path / "out"))
    message = stopped_before_transform(config)
    assert "Classes without training images: 'Ankle boot'." in message
    observed(message)


# --- the metadata store -------------------------------------------------------------------------------------


@pytest.mark.fault("metadata", "metadata.sqlite overwritten with garbage, or cut in half",
                   "run, retrain and report refuse it at once naming the file and the fix; the file is not touched")
@pytest.mark.parametrize("damage", ["garbage", "cut"])
def test_a_damaged_metadata_store_is_named_and_left_as_it_is(pushed_run, tmp_path, damage, observed):
    output = tmp_path / "out"
    output.mkdir()
    store = output / "metadata.sqlite"
    original = open(metadata_path(pushed_run.output_dir), "rb").read()
    store.write_bytes(os.urandom(8192) if damage == "garbage" else original[: len(original) // 2])
    damaged = store.read_bytes()
    for command in (["run", "--data", pushed_run.data, "--output", str(output)], ["report", str(output)]):
        result = cnnpipe(*command, cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.startswith(f"cnnpipe: {store}: the ML Metadata store is damaged (")
        assert f"mv {store} {store}.damaged" in result.stderr
    assert store.read_bytes() == damaged
    observed(f"exit 1: {result.stderr.strip()[:200]}")


# --- pushing ---------------------------------------------------------------------------------------------


def served_version(pushed_run, serving_dir) -> str:
    """A copy of the session run's pushed version under `serving_dir`/MODEL; its path."""
    version = versions(pushed_run.serving_base)[-1]
    return shutil.copytree(os.path.join(pushed_run.serving_base, version), os.path.join(serving_dir, MODEL, version))


@pytest.mark.fault("push", "the serving directory's disk is full (a 4 MB tmpfs)",
                   "the push fails naming the disk; no version or staging left; the served version keeps serving")
def test_a_push_to_a_full_disk_fails_cleanly_and_the_old_version_serves(pushed_run, tmp_path, observed):
    from cnnpipe.components.pusher import PushError, publish  # noqa: PLC0415

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        served = served_version(pushed_run, disk / "serving")
        candidate = shutil.copytree(served, str(tmp_path / "candidate"))
        with open(os.path.join(candidate, "fingerprint.pb"), "ab") as f:
            f.write(b"another model")  # not the served one, so it is copied
        with open(disk / "filler", "wb") as f:
            f.write(b"\0" * (shutil.disk_usage(disk).free - 64 * 1024))
        images = [encode(pixels) for pixels in fashion_mnist("t10k", 2)[0]]
        body = {"signature_name": "predict_image", "instances": [{"b64": base64.b64encode(i).decode()} for i in images]}
        with running_server(str(disk / "serving")) as server:
            with pytest.raises(PushError, match="the disk is full") as error:
                publish(candidate, os.path.dirname(served))
            answer = requests.post(f"{server.rest}/v1/models/{MODEL}:predict", json=body, timeout=60)
        assert os.listdir(os.path.dirname(served)) == [os.path.basename(served)]
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    observed(f"{str(error.value)[:160]}…; version {os.path.basename(served)} answered 200 afterwards")


@pytest.mark.fault("push", "the pushing process killed mid-copy",
                   "no version visible; the next push removes the abandoned staging directory and publishes whole")
def test_a_push_killed_mid_copy_leaves_no_version(pushed_run, tmp_path, observed):
    from cnnpipe.components.pusher import STAGING_PREFIX, publish  # noqa: PLC0415

    base = tmp_path / "serving" / MODEL
    model = os.path.join(pushed_run.serving_base, versions(pushed_run.serving_base)[-1])
    stuck = shutil.copytree(model, str(tmp_path / "stuck"))
    os.mkfifo(os.path.join(stuck, "variables", "zz-pipe"))  # the copy blocks reading it: mid-copy, for sure
    script = "import sys; from cnnpipe.components.pusher import publish; publish(sys.argv[1], sys.argv[2])"
    pushing = subprocess.Popen([sys.executable, "-c", script, stuck, str(base)])
    deadline = time.monotonic() + 120  # a bound against hanging, not a speed requirement
    while not (base.is_dir() and any((base / n / "variables").is_dir() for n in os.listdir(base))):
        assert time.monotonic() < deadline and pushing.poll() is None
        time.sleep(0.1)
    pushing.kill()
    pushing.wait(timeout=60)
    left = os.listdir(base)
    assert len(left) == 1 and left[0].startswith(STAGING_PREFIX)
    version = publish(model, str(base))
    assert os.listdir(base) == [os.path.basename(version)]
    observed(f"the kill left only {left[0][:24]}… (hidden from servers); the next publish removed it and "
             f"published {os.path.basename(version)}")


@pytest.mark.fault("push", "a blessed model whose export fails to load in a fresh process (its variables cut short)",
                   "PushCheck does not bless it and says why; the Pusher pushes nothing")
def test_a_model_that_fails_the_push_check_is_not_pushed(pushed_run, tmp_path, observed):
    from tfx import v1 as tfx  # noqa: PLC0415
    from tfx.types import standard_artifacts  # noqa: PLC0415

    from cnnpipe.components.push_check import PushCheck  # noqa: PLC0415
    from cnnpipe.components.pusher import AtomicPusher  # noqa: PLC0415

    outputs = summary.run_outputs(metadata_path(pushed_run.output_dir), pushed_run.name)[1]
    broken = shutil.copytree(outputs["model"].uri, str(tmp_path / "model"))
    data = next(path for path in (tmp_path / "model").rglob("variables.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])

    def imported(name: str, uri: str, artifact_type, **properties) -> tfx.dsl.Importer:
        return tfx.dsl.Importer(source_uri=uri, artifact_type=artifact_type, **properties).with_id(f"import_{name}")

    model = imported("model", broken, standard_artifacts.Model)
    blessing = imported("blessing", outputs["blessing"].uri, standard_artifacts.ModelBlessing,
                        custom_properties={"blessed": 1})
    examples = imported("examples", outputs["examples"].uri, standard_artifacts.Examples,
                        properties={"split_names": '["train", "eval"]'})
    evaluation = imported("evaluation", outputs["evaluation"].uri, standard_artifacts.ModelEvaluation)
    check = PushCheck(model=model.outputs["result"], model_blessing=blessing.outputs["result"],
                      examples=examples.outputs["result"], evaluation=evaluation.outputs["result"])
    pusher = AtomicPusher(model=model.outputs["result"], model_blessing=blessing.outputs["result"],
                          infra_blessing=check.outputs["infra_blessing"],
                          push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
                              base_directory=str(tmp_path / "serving" / MODEL))))
    store = str(tmp_path / "metadata.sqlite")
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="push_check", pipeline_root=str(tmp_path / "root"),
        components=[model, blessing, examples, evaluation, check, pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(store)))

    _, produced = summary.run_outputs(store, "push_check")
    infra = produced["infra_blessing"].custom_properties
    assert infra["blessed"].int_value == 0
    assert "fails to load or to answer in a fresh process" in infra["reason"].string_value
    assert produced["pushed_model"].custom_properties["pushed"].int_value == 0
    assert not (tmp_path / "serving" / MODEL).exists() or os.listdir(tmp_path / "serving" / MODEL) == []
    observed(f"infra_blessing blessed=0: {infra['reason'].string_value.splitlines()[0][:150]}…; nothing pushed")
