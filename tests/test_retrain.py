"""`cnnpipe retrain` without spans. Retraining over real spans (warm start, a push only when blessed, nothing
without a new span) is the retraining day of tests/faults/test_retraining_day.py."""

import io

import pytest

from conftest import fashion_mnist, small_run_config, write_idx
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.runners import retrain


def test_retrain_needs_spans(tmp_path):
    config = small_run_config(str(tmp_path / "data"), str(tmp_path / "out"), model_name="fashion", span_window=2)
    write_idx(str(tmp_path / "data"), "train", *fashion_mnist("train", 10))
    with pytest.raises(CnnpipeError, match="span directories"):
        retrain.retrain(config, out=io.StringIO())
