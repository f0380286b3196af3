"""Scheduled retraining over spans of real Fashion-MNIST: warm start, push only when blessed, no-op without news."""

import io
import os

import numpy as np
import pytest

from conftest import fashion_mnist, small_run_config, write_idx
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.pipeline import local_runner, retrain, summary
from cnnpipe.pipeline.config import PipelineConfig


def write_span(data_dir, span: int, train: slice, test: slice, shuffle_labels: bool = False) -> None:
    """Span `span` of the data: real train and t10k images; with `shuffle_labels`, labels that mean nothing."""
    for split, rows in (("train", train), ("t10k", test)):
        images, labels = fashion_mnist(split, rows.stop)
        labels = labels[rows]
        if shuffle_labels:
            labels = np.random.default_rng(span).permutation(labels)
        write_idx(str(data_dir / f"span-{span}"), split, images[rows], labels)


def versions(config: PipelineConfig) -> list[int]:
    return sorted(int(name) for name in os.listdir(config.serving_base) if name.isdigit())


def trainer_spans(config: PipelineConfig) -> list[int]:
    """The spans of the examples behind the newest Trainer execution, traced in MLMD through Transform."""
    store = summary.store(local_runner.metadata_path(config.output_dir))
    types = {t.name.rsplit(".", 1)[-1]: t.name for t in store.get_execution_types()}
    trainer = max(store.get_executions_by_type(types["Trainer"]), key=lambda e: e.id)
    inputs = [e.artifact_id for e in store.get_events_by_execution_ids([trainer.id]) if e.path.steps[0].key == "examples"]
    transform = next(e.execution_id for e in store.get_events_by_artifact_ids(inputs) if e.type == e.OUTPUT)
    raw = [e.artifact_id for e in store.get_events_by_execution_ids([transform])
           if e.type == e.INPUT and e.path.steps[0].key == "examples"]
    return sorted(artifact.custom_properties["span"].int_value for artifact in store.get_artifacts_by_id(raw))


@pytest.fixture()
def config(tmp_path) -> PipelineConfig:
    return small_run_config(str(tmp_path / "data"), str(tmp_path / "out"), model_name="fashion", span_window=2)


def test_retrain_pushes_each_better_span_and_nothing_else(config, tmp_path, capfd):
    data = tmp_path / "data"
    write_span(data, 1, slice(0, 1000), slice(0, 300))
    first = retrain.retrain(config, out=io.StringIO())
    assert first.span == 1 and first.run.blessed and len(versions(config)) == 1
    _, outputs = summary.run_outputs(local_runner.metadata_path(config.output_dir), config.name)
    blessed = os.path.join(outputs["model"].uri, "Format-Serving")

    write_span(data, 2, slice(1000, 3000), slice(300, 600))  # more data
    capfd.readouterr()
    second = retrain.retrain(config, out=io.StringIO())
    assert f"warm start from {blessed}: 5 layers copied" in capfd.readouterr().out  # LeNet-5's five
    assert second.run.blessed and second.run.baseline_accuracy is not None
    assert second.run.accuracy >= second.run.baseline_accuracy
    assert trainer_spans(config) == [1, 2]  # the window of the newest two spans
    assert len(versions(config)) == 2

    write_span(data, 3, slice(3000, 4000), slice(600, 900), shuffle_labels=True)
    third = retrain.retrain(config, out=io.StringIO())
    assert trainer_spans(config) == [2, 3] and not third.run.blessed and not third.run.pushed_to
    assert len(versions(config)) == 2  # v2 is still the newest served version

    out = io.StringIO()
    again = retrain.retrain(config, out=out)
    assert again.run is None and "no new span" in out.getvalue() and "span 3 is already trained" in out.getvalue()
    assert retrain.trained_spans(local_runner.metadata_path(config.output_dir), config.name) == [1, 2, 3]
    assert len(versions(config)) == 2


def test_retrain_needs_spans(config, tmp_path):
    write_idx(str(tmp_path / "data"), "train", *fashion_mnist("train", 10))
    with pytest.raises(CnnpipeError, match="span directories"):
        retrain.retrain(config, out=io.StringIO())
