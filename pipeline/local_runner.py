"""Runs the pipeline on this machine: LocalDagRunner, Beam's DirectRunner, MLMD in sqlite.

Everything of a run lives under the output directory: `metadata.sqlite`, the artifacts under
`pipeline/`, the full log under `logs/` and, by default, the pushed models under `serving/`.
The caller holds `output_dir.output_lock` on the output directory while a run goes on.
"""

import contextlib
import datetime
import logging
import os
import sys
import time
from typing import Iterator, TextIO

from absl import logging as absl_logging
from tfx import v1 as tfx

from cnnpipe.pipeline import dag
from cnnpipe.pipeline.config import PipelineConfig
from cnnpipe.pipeline.output_dir import metadata_path


def build_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    """The pipeline for `config`, with its state under `config.output_dir`."""
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path(config.output_dir))
    return dag.pipeline_for(config, config.name, os.path.join(config.output_dir, "pipeline"), config.schema_file(), metadata)


class ComponentProgress(logging.Handler):
    """Prints each component's start and finish (with wall time, and whether cached).

    It listens to the messages TFX's LocalDagRunner and Launcher log for every component.
    """

    def __init__(self, out: TextIO):
        super().__init__(logging.INFO)
        self.out = out
        self.seconds: dict[str, float] = {}  # component id -> wall time of this run
        self.cached: set[str] = set()
        self._started: dict[str, float] = {}
        self._current = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Component %s is running.":
            self._current = record.args[0]
            self._started[self._current] = time.monotonic()
            print(f"{datetime.datetime.now():%H:%M:%S} ▶ {self._current}", file=self.out, flush=True)
        elif record.msg == "A cached execution %d is used.":
            self.cached.add(self._current)
        elif record.msg == "Component %s is finished.":
            name = record.args[0]
            self.seconds[name] = time.monotonic() - self._started[name]
            note = " (cached)" if name in self.cached else ""
            print(f"{datetime.datetime.now():%H:%M:%S} ✓ {name} {self.seconds[name]:.1f}s{note}", file=self.out, flush=True)


@contextlib.contextmanager
def logging_to(log_file: str, out: TextIO) -> Iterator[ComponentProgress]:
    """Sends TFX's and Beam's full log to `log_file`, and component progress to `out`."""
    os.makedirs(os.path.dirname(log_file), exist_ok=True)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    progress = ComponentProgress(out)
    root = logging.getLogger()
    saved = root.level, absl_logging.get_verbosity(), [(handler, handler.level) for handler in root.handlers]
    for handler, _ in saved[2]:  # console handlers that libraries installed: the log file has it all
        handler.setLevel(logging.CRITICAL)
    root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    logging.captureWarnings(True)  # library warnings go to the log file, not the console
    tensorflow_logger = logging.getLogger("tensorflow")
    tensorflow_logger.propagate, tensorflow_logger.handlers, saved_tensorflow = True, [], tensorflow_logger.handlers
    # INFO through absl's verbosity, which TensorFlow's SavedModel writer saves and restores.
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.get_absl_logger().addHandler(progress)
    try:
        yield progress
    finally:
        absl_logging.get_absl_logger().removeHandler(progress)
        root.removeHandler(file_handler)
        logging.captureWarnings(False)
        tensorflow_logger.handlers = saved_tensorflow
        file_handler.close()
        root.setLevel(saved[0])
        absl_logging.set_verbosity(saved[1])
        for handler, level in saved[2]:
            handler.setLevel(level)


def run(config: PipelineConfig, out: TextIO = sys.stdout) -> dict[str, float]:
    """Runs the whole pipeline; returns each component's wall time in seconds.

    Raises the component's exception when one fails (CnnpipeError for bad data).
    """
    pipeline = build_pipeline(config)
    log_file = os.path.join(config.output_dir, "logs", f"run-{datetime.datetime.now():%Y%m%d-%H%M%S}.log")
    print(f"cnnpipe: pipeline '{config.name}' — output in {config.output_dir}, full log in {log_file}", file=out, flush=True)
    with logging_to(log_file, out) as progress:
        try:
            tfx.orchestration.LocalDagRunner().run(pipeline)
        except Exception:
            logging.exception("The run failed.")
            raise
    return progress.seconds
