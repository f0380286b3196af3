"""`cnnpipe skew`: real images sent to `cnnpipe serve --log-requests`, compared with the served version's training
data; brightened images are found skewed by name, ordinary ones are not."""

import base64
import collections
import csv
import glob
import os

import numpy as np
import pytest
import requests
import tensorflow as tf

from conftest import cnnpipe, encode, fashion_mnist, running_server, write_idx
from cnnpipe.components.ingestion import formats, source
from cnnpipe.core import features
from cnnpipe.monitoring import logged_span
from cnnpipe.pipeline.datasets import FASHION_MNIST
from cnnpipe.serving.model_config import versions

IMAGES, PER_REQUEST = 400, 50


def send_logged(pushed_run, logs, images: np.ndarray) -> None:
    """`images` sent to predict_image through a server that logs its requests into `logs`."""
    with running_server(os.path.dirname(pushed_run.serving_base), "--log-requests", str(logs)) as server:
        for start in range(0, len(images), PER_REQUEST):
            batch = [{"b64": base64.b64encode(encode(p)).decode()} for p in images[start:start + PER_REQUEST]]
            answer = requests.post(f"{server.rest}/v1/models/{pushed_run.name}:predict", timeout=60,
                                   json={"signature_name": "predict_image", "instances": batch})
            assert answer.status_code == 200, answer.text
        server.process.terminate()
        assert server.process.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def logged(pushed_run, tmp_path_factory) -> dict[str, str]:
    images = fashion_mnist("t10k", IMAGES)[0]
    root = tmp_path_factory.mktemp("requests")
    send_logged(pushed_run, root / "ordinary", images)
    send_logged(pushed_run, root / "brightened", np.clip(images.astype(int) + 60, 0, 255).astype(np.uint8))
    return {name: str(root / name) for name in ("ordinary", "brightened")}


def test_ordinary_requests_show_no_skew(pushed_run, logged, tmp_path):
    result = cnnpipe("skew", "--requests", logged["ordinary"], "--serving-dir",
                     os.path.dirname(pushed_run.serving_base), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    version = versions(pushed_run.serving_base)[-1]
    assert result.stdout.startswith(f"{pushed_run.name} version {version}: {IMAGES // PER_REQUEST} logged requests, "
                                    f"{IMAGES} images; no skew; against its training data: ")
    assert "brightness 0.0" in result.stdout and "height 0.0000" in result.stdout


@pytest.mark.fault("serving", "served requests whose images are brighter than the training data (request log)",
                   "cnnpipe skew names brightness with its JS divergence; exit 2")
def test_brightened_requests_are_skewed_in_brightness(pushed_run, logged, tmp_path, observed):
    result = cnnpipe("skew", "--requests", logged["brightened"], "--output", os.path.dirname(
        os.path.dirname(pushed_run.serving_base)), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr[-2000:]
    assert "; skew in brightness (Jensen-Shannon divergence over 0.1);" in result.stdout
    observed(result.stdout.strip())


def test_a_directory_without_request_logs_is_named(tmp_path):
    result = cnnpipe("skew", "--requests", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"cnnpipe: {tmp_path}: no request logs here; give the --log-requests directory of "
                                     "`cnnpipe serve`.")


def labelled_sheet(logged_dir: str, tmp_path, labelled: int) -> tuple[str, list[dict], dict[str, str]]:
    """The label sheet of the ordinary requests, its first `labelled` rows given their true class; returns the CSV's
    path, its rows as written by cnnpipe, and each sent image's true class by id."""
    images, labels = fashion_mnist("t10k", IMAGES)
    true_class = {logged_span.image_id(encode(p)): FASHION_MNIST.class_names[label] for p, label in zip(images, labels)}
    sheet = tmp_path / "sheet"
    result = cnnpipe("skew", "--requests", logged_dir, "--label-sheet", str(sheet), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    path = sheet / logged_span.SHEET
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, logged_span.COLUMNS)
        writer.writeheader()
        writer.writerows({**row, "class_name": true_class[row["image"]] if i < labelled else ""}
                         for i, row in enumerate(rows))
    return str(path), rows, true_class


def test_labelled_requests_become_the_next_span_laid_out_as_the_others(logged, tmp_path):
    """The loop closed: the logged images labelled, written as span 2 beside an IDX span 1, read back by ingestion."""
    path, rows, true_class = labelled_sheet(logged["ordinary"], tmp_path, labelled=300)
    assert sorted(row["image"] for row in rows) == sorted(true_class)  # every image sent, once
    for row in rows[:5]:
        with open(os.path.join(os.path.dirname(path), row["image"] + ".png"), "rb") as file:
            assert logged_span.image_id(file.read()) == row["image"]
    answered = np.mean([row["predicted_class"] == true_class[row["image"]] for row in rows])
    assert answered > 0.5  # the served model's answers, pre-filled for the people labelling

    data = tmp_path / "data"
    for split, count in (("train", 60), ("t10k", 20)):
        write_idx(str(data / "span-1"), split, *fashion_mnist(split, count))
    (data / source.CLASS_NAMES_FILE).write_text("\n".join(FASHION_MNIST.class_names) + "\n")
    result = cnnpipe("skew", "--requests", logged["ordinary"], "--labels", path, "--to-span", str(data), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"Span written to {data / 'span-2'}: 300 images in ")
    assert result.stdout.rstrip().endswith(f"; {len(rows) - 300} logged images without a label left out.")

    found = source.detect(str(data))  # span 2 is read as span 1 is: IDX with its own train/t10k split
    assert found.format == "idx" and found.has_own_split and found.class_names == FASHION_MNIST.class_names
    read = {split: [tf.train.Example.FromString(record).features.feature for record in
                    formats.read_idx(glob.glob(str(data / "span-2" / pattern.split("/", 1)[1]))[0], found.class_names)]
            for split, pattern in found.split_patterns.items()}
    assert [len(read["train"]), len(read["eval"])] == [270, 30]
    wanted = collections.Counter(true_class[row["image"]] for row in rows[:300])
    got = collections.Counter(f[features.CLASS_NAME].bytes_list.value[0].decode() for fs in read.values() for f in fs)
    assert got == wanted
    labels_of = {FASHION_MNIST.class_names[f[features.LABEL].int64_list.value[0]] for fs in read.values() for f in fs}
    assert labels_of == set(wanted)

    again = cnnpipe("skew", "--requests", logged["ordinary"], "--labels", path, "--to-span", str(data), cwd=tmp_path)
    assert again.returncode == 0 and os.path.isdir(data / "span-3")  # the next span each time, never one rewritten


@pytest.mark.fault("ingestion", "a labels.csv row naming an image that was not logged (cnnpipe skew --to-span)",
                   "error names the file and line; no span written")
def test_a_label_for_an_image_never_logged_is_named_and_nothing_is_written(logged, tmp_path, observed):
    path, rows, _ = labelled_sheet(logged["ordinary"], tmp_path, labelled=10)
    with open(path, "a", newline="") as file:
        csv.writer(file).writerow(["0123456789abcdef", "fashion", "1", "", "Bag"])
    data = tmp_path / "data"
    write_idx(str(data / "span-1"), "train", *fashion_mnist("train", 20))
    result = cnnpipe("skew", "--requests", logged["ordinary"], "--labels", path, "--to-span", str(data), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"cnnpipe: {path}, line {len(rows) + 2}: image '0123456789abcdef' is not among "
                                     "the logged requests; fix the id or drop the row.")
    assert sorted(os.listdir(data)) == ["span-1"]
    observed(result.stderr.strip())


@pytest.mark.parametrize("layout", ["folder", "tfrecord"])
def test_a_span_of_class_folders_or_tfrecords_gets_the_next_one_in_the_same_layout(layout, tmp_path):
    from cnnpipe.components.ingestion.span_writer import LabelledImage, write_next_span  # noqa: PLC0415

    images, labels = fashion_mnist("t10k", 40)
    names = ("Bag", "Sneaker", "Trouser")
    kept = [(encode(p), FASHION_MNIST.class_names[label]) for p, label in zip(images, labels)
            if FASHION_MNIST.class_names[label] in names]
    data = tmp_path / "data"
    if layout == "folder":  # span 1: train/ and test/ class folders
        for split in ("train", "test"):
            for name in names:
                os.makedirs(data / "span-1" / split / name)
                (data / "span-1" / split / name / "a.png").write_bytes(kept[0][0])
    else:
        (data / "span-1").mkdir(parents=True)
        (data / source.CLASS_NAMES_FILE).write_text("\n".join(names) + "\n")
        with tf.io.TFRecordWriter(str(data / "span-1" / "all.tfrecord")) as writer:
            writer.write(tf.train.Example.FromString(formats.make_example(kept[0][0], 0, "Bag", "x", 28, 28))
                         .SerializeToString())
    items = [LabelledImage(logged_span.image_id(image), image, name) for image, name in kept]
    span_dir = write_next_span(str(data), items)
    assert span_dir == str(data / "span-2")
    found = source.detect(str(data))
    assert found.class_names == names and (found.format, found.has_own_split) == (layout, layout == "folder")
    files = {split: glob.glob(str(data / "span-2" / pattern.split("/", 1)[1]))
             for split, pattern in found.split_patterns.items()}
    if layout == "folder":
        classes = sorted(os.path.basename(os.path.dirname(f)) for fs in files.values() for f in fs)
        assert len(files["eval"]) == (len(items) + 9) // 10
    else:
        records = formats.read_tfrecord(files["all"][0], names)
        classes = sorted(tf.train.Example.FromString(record).features.feature[features.CLASS_NAME].bytes_list.value[0]
                         .decode() for record in records)
    assert classes == sorted(name for _, name in kept)
    with pytest.raises(Exception, match=r"classes \['Coat'\] are not among the data's classes"):
        write_next_span(str(data), [LabelledImage("ab", kept[0][0], "Coat")])
    assert sorted(os.listdir(data / "span-2" / "..")) == sorted(["span-1", "span-2"] + (
        [] if layout == "folder" else [source.CLASS_NAMES_FILE]))
