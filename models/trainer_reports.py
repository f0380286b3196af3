"""What the Trainer's callbacks write beside its TensorBoard logs (the ModelRun directory) for the run's summary:
a small JSON file each."""

import json
import os
from typing import Optional

import tensorflow as tf


def write(report_dir: Optional[str], name: str, report: dict) -> None:
    """`report` as `report_dir`/`name`; no directory: not written (a non-chief worker)."""
    if not report_dir:
        return
    tf.io.gfile.makedirs(report_dir)
    with tf.io.gfile.GFile(os.path.join(report_dir, name), "w") as file:
        json.dump(report, file, indent=1)


def read(model_run_dir: str, name: str) -> dict:
    """The report `name` a run's Trainer wrote, or {} (one that did not write it)."""
    path = os.path.join(model_run_dir, name)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as file:
        return json.load(file)
