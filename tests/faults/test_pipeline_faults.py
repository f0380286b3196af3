"""Faults of a whole run on real Fashion-MNIST: labels and classes the class names rule out, a damaged metadata
store, and pushes that fail (a full disk, a push killed mid-copy, a model that fails the push check)."""

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import requests

from conftest import cnnpipe, encode, fashion_mnist, running_server, small_disk, small_run_config, versions, write_idx
from tfx.types import standard_artifacts

from cnnpipe.components import duplicates
from cnnpipe.core.errors import DataValidationError
from cnnpipe.runners import local_runner
from cnnpipe.pipeline import metadata
from cnnpipe.pipeline.datasets import FASHION_MNIST
from cnnpipe.pipeline.output_dir import metadata_path
from cnnpipe.report import summary

MODEL = "fashion"
ANKLE_BOOT = FASHION_MNIST.class_names.index("Ankle boot")


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
    _, outputs = metadata.run_outputs(metadata_path(config.output_dir), config.name)
    assert "statistics" in outputs and "transform_graph" not in outputs
    return str(error.value)


@pytest.fixture
def system_temp(tmp_path, monkeypatch) -> str:
    """Python's temporary directory for this test alone, to see what a run leaves there."""
    directory = tmp_path / "system-temp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return str(directory)


@pytest.mark.fault("validation", "a label outside the class ids, schema inferred by SchemaGen (no --schema)",
                   "stops before Transform, naming file:record and the label; nothing left in the temp directory")
def test_a_label_outside_the_class_ids_stops_the_run_whatever_the_schema(tmp_path, system_temp, observed):
    def one_bad_label(labels: np.ndarray) -> np.ndarray:
        labels = labels.copy()
        labels[37] = len(FASHION_MNIST.class_names)
        return labels

    config = small_run_config(idx_slice(tmp_path / "data", one_bad_label), str(tmp_path / "out"), schema=None)
    message = stopped_before_transform(config)
    assert "train-images-idx3-ubyte.gz:37" in message and "'label'" in message
    assert os.listdir(system_temp) == [], \
        "the run left temporary files (TFX's package for Beam workers, TFDV's samples)"
    observed(" ".join(message.split())[:300])


@pytest.mark.fault("validation", "a class with no training images (class names list 10, the data has 9)",
                   "stops before Transform, naming the class")
def test_a_class_without_training_images_stops_the_run(tmp_path, observed):
    data = idx_slice(tmp_path / "data", lambda labels: np.where(labels == ANKLE_BOOT, 0, labels))
    config = small_run_config(data, str(tmp_path / "out"))
    message = stopped_before_transform(config)
    assert "Classes without training images: 'Ankle boot'." in message
    observed(message)


@pytest.mark.fault("validation", "too few images for the splits: 3 images in two class folders, so the hash "
                   "leaves a split empty", "stops before Transform, naming the empty split and the fix")
def test_too_few_images_to_fill_every_split_stops_the_run_naming_the_splits(tmp_path, observed):
    images, labels = fashion_mnist("t10k", 40)
    for number in [*np.flatnonzero(labels == 0)[:1], *np.flatnonzero(labels == 1)[:2]]:
        folder = tmp_path / "data" / FASHION_MNIST.class_names[labels[number]].replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{number}.png").write_bytes(encode(images[number]))
    config = small_run_config(str(tmp_path / "data"), str(tmp_path / "out"), schema=None, class_names=None)
    message = stopped_before_transform(config)
    counts = dict(re.search(r"\((train \d+), (validation \d+), (eval \d+)\)", message).groups()[i].split()
                  for i in range(3))
    assert sum(map(int, counts.values())) == 3 and "0" in counts.values()
    empty = [split for split, count in counts.items() if count == "0"]
    assert message.startswith(f"No images in the {' and '.join(repr(split) for split in empty)} split")
    assert "--eval-percent" in message
    observed(message)


# --- the same image twice ---------------------------------------------------------------------------------------


@pytest.mark.fault("validation", "the same image twice: a training image among the test images, and one training "
                   "image again under another class",
                   "stops before Transform naming each copy; --allow-duplicates goes on and the summary names them")
def test_the_same_image_in_two_splits_or_under_two_classes_stops_the_run(tmp_path, observed):
    images, labels = fashion_mnist("train", 400)
    test_images, test_labels = fashion_mnist("t10k", 100)
    images, labels = images.copy(), labels.copy()
    images[8], labels[8] = images[7], (labels[7] + 1) % len(FASHION_MNIST.class_names)  # taught as two classes
    test_images, test_labels = test_images.copy(), test_labels.copy()
    test_images[0], test_labels[0] = images[5], labels[5]  # measured on what it trained on (or chose by)
    write_idx(str(tmp_path / "data"), "train", images, labels)
    write_idx(str(tmp_path / "data"), "t10k", test_images, test_labels)
    config = small_run_config(str(tmp_path / "data"), str(tmp_path / "out"), attacks=(), search=False)
    message = stopped_before_transform(config)
    assert message.startswith("2 image(s) appear more than once: ")
    for source in ("train-images-idx3-ubyte.gz:5", "t10k-images-idx3-ubyte.gz:0", "train-images-idx3-ubyte.gz:7",
                   "train-images-idx3-ubyte.gz:8"):
        assert source in message
    assert "--allow-duplicates" in message

    local_runner.run(config.with_options(allow_duplicates=True), out=io.StringIO())
    result = summary.summarize(metadata_path(config.output_dir), config.name)
    assert result.accuracy is not None and result.duplicates and "train-images-idx3-ubyte.gz:7" in result.duplicates
    assert f"Duplicates allowed (--allow-duplicates): {result.duplicates}." in result.format()
    observed(" ".join(message.split())[:300])


def test_fashion_mnist_holds_no_image_twice(pushed_outputs):
    """The shared run's real slice: no image in two splits or under two classes."""
    examples = standard_artifacts.Examples()
    examples.set_mlmd_artifact(pushed_outputs["examples"])
    assert duplicates.duplicates(examples) == []


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


@pytest.mark.fault("push", "the serving directory's disk is full (an 8 MB tmpfs)",
                   "the push fails naming the disk; no version or staging left; the served version keeps serving")
def test_a_push_to_a_full_disk_fails_cleanly_and_the_old_version_serves(pushed_run, tmp_path, observed):
    from tensorflow.core.protobuf import fingerprint_pb2  # noqa: PLC0415

    from cnnpipe.components.pusher import PushError, publish  # noqa: PLC0415

    with small_disk(tmp_path, "8m") as disk:
        served = served_version(pushed_run, disk / "serving")
        candidate = shutil.copytree(served, str(tmp_path / "candidate"))
        fingerprint_file = os.path.join(candidate, "fingerprint.pb")
        with open(fingerprint_file, "rb") as f:
            another_model = fingerprint_pb2.FingerprintDef.FromString(f.read())
        another_model.checkpoint_hash += 1  # other weights: not the served model, so it is copied
        with open(fingerprint_file, "wb") as f:
            f.write(another_model.SerializeToString())
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

    outputs = metadata.run_outputs(metadata_path(pushed_run.output_dir), pushed_run.name)[1]
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

    _, produced = metadata.run_outputs(store, "push_check")
    infra = produced["infra_blessing"].custom_properties
    assert infra["blessed"].int_value == 0
    assert "fails to load or to answer in a fresh process" in infra["reason"].string_value
    assert produced["pushed_model"].custom_properties["pushed"].int_value == 0
    assert not (tmp_path / "serving" / MODEL).exists() or os.listdir(tmp_path / "serving" / MODEL) == []
    observed(f"infra_blessing blessed=0: {infra['reason'].string_value.splitlines()[0][:150]}…; nothing pushed")
