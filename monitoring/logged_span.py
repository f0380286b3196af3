"""Logged requests turned into a new span, closing the retraining loop (`cnnpipe skew --label-sheet`, `--to-span`).

Two steps, each keyed by an image's id (the first 16 hex digits of its bytes' SHA-256, so the same image sent twice
is one item): `label_sheet` writes every logged image and a CSV for people to label (the served model's answer
pre-filled beside an empty `class_name`); `write_span` reads the labelled CSV and writes the labelled images as the
data's next span, laid out as its other spans are (components/ingestion/span_writer.py).
"""

import collections
import csv
import hashlib
import os

from cnnpipe.components.ingestion.span_writer import LabelledImage, write_next_span
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import CLASS_NAMES
from cnnpipe.monitoring.skew import logged_images
from cnnpipe.serving import request_log

SHEET = "labels.csv"
COLUMNS = ("image", "model", "version", "predicted_class", "class_name")


def image_id(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()[:16]


def logged(requests_dir: str) -> dict[str, tuple[bytes, str, int, str]]:
    """Every distinct logged image by id: its bytes, the model and version that served it, and the class it
    answered (empty when the response has no class names)."""
    found = {}
    for (model, version), logs in sorted(request_log.read(requests_dir).items()):
        for log in logs:
            answered = list(log.predict_log.response.outputs[CLASS_NAMES].string_val) \
                if CLASS_NAMES in log.predict_log.response.outputs else []
            for i, image in enumerate(logged_images(log)):
                predicted = answered[i].decode() if i < len(answered) else ""
                found.setdefault(image_id(image), (image, model, version, predicted))
    if not found:
        raise CnnpipeError(f"{requests_dir}: no logged images here; give the --log-requests directory of `cnnpipe "
                           "serve`.")
    return found


def label_sheet(requests_dir: str, sheet_dir: str) -> str:
    """Writes each logged image as `sheet_dir/<id>.<png|jpg>` and `sheet_dir/labels.csv`; returns the CSV's path."""
    os.makedirs(sheet_dir, exist_ok=True)
    path = os.path.join(sheet_dir, SHEET)
    if os.path.exists(path):
        raise CnnpipeError(f"{path} exists: it may hold labels already. Give another --label-sheet directory, or "
                           "remove it to start again.")
    items = logged(requests_dir)
    for key, (image, *_) in items.items():
        with open(os.path.join(sheet_dir, key + (".png" if image.startswith(b"\x89PNG") else ".jpg")), "wb") as file:
            file.write(image)
    with open(path + ".tmp", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows((key, model, version, predicted, "") for key, (_, model, version, predicted) in items.items())
    os.replace(path + ".tmp", path)
    return path


def labels(labels_csv: str, known: dict) -> dict[str, str]:
    """The labelled rows of the sheet: id -> class name; a row naming an image that was not logged is an error.
    (span_writer checks the class names against the data's.)"""
    with open(labels_csv, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if rows and not {"image", "class_name"} <= set(rows[0]):
        raise CnnpipeError(f"{labels_csv}: needs the columns 'image' and 'class_name' (as --label-sheet writes them).")
    labels = {}
    for line, row in enumerate(rows, start=2):
        name, key = row["class_name"].strip(), row["image"].strip()
        if not name:
            continue
        if key not in known:
            raise CnnpipeError(f"{labels_csv}, line {line}: image '{key}' is not among the logged requests; fix the "
                               "id or drop the row.")
        labels[key] = name
    return labels


def write_span(requests_dir: str, labels_csv: str, data_dir: str) -> tuple[str, dict[str, int], int]:
    """Writes the labelled logged images as `data_dir`'s next span; returns its directory, the count per class and
    how many logged images were left out for want of a label."""
    items = logged(requests_dir)
    labelled = labels(labels_csv, items)
    if not labelled:
        raise CnnpipeError(f"{labels_csv}: no row has a class_name; label the images first.")
    span_dir = write_next_span(data_dir, [LabelledImage(key, items[key][0], name) for key, name in labelled.items()])
    return span_dir, dict(sorted(collections.Counter(labelled.values()).items())), len(items) - len(labelled)
