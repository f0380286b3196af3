"""Runs the pipeline on this machine: LocalDagRunner, Beam's DirectRunner, MLMD in sqlite.

Everything of a run lives under the output directory: `metadata.sqlite`, the artifacts under
`pipeline/`, the full log under `logs/` and, by default, the pushed models under `serving/`.
The caller holds `output_dir.output_lock` on the output directory while a run goes on.
"""

import contextlib
import datetime
import logging
import os
import shutil
import sys
import tempfile
from typing import Iterator, Optional, TextIO

from absl import logging as absl_logging
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.metadata import sqlite_metadata_connection_config
from tfx.orchestration.pipeline import Pipeline

from cnnpipe.components.served_model import served_state
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.pipeline import dag
from cnnpipe.pipeline.config import PipelineConfig
from cnnpipe.pipeline.output_dir import metadata_path
from cnnpipe.runners.progress import ComponentProgress


def pipeline_root(output_dir: str) -> str:
    """Where the artifacts go, as an absolute path: the URIs ML Metadata records then hold from any directory
    (`cnnpipe report`, `cnnpipe runs`)."""
    return os.path.abspath(os.path.join(output_dir, "pipeline"))


def build_pipeline(config: PipelineConfig) -> Pipeline:
    """The pipeline for `config`, with its state under `config.output_dir`."""
    metadata = sqlite_metadata_connection_config(metadata_path(config.output_dir))
    return dag.pipeline_for(config, config.name, pipeline_root(config.output_dir), config.schema_file(),
                            metadata, served_state(config.serving_base))


def index_pipeline_name(config: PipelineConfig) -> str:
    return f"{config.name}-index"


def build_index_pipeline(config: PipelineConfig) -> Pipeline:
    """`cnnpipe index`'s pipeline for `config` (its --catalog, serving directory and model name)."""
    catalog = config.catalog_source()
    if catalog is None:
        raise CnnpipeError("cnnpipe index needs --catalog PATH: the images the served model's search answers with.")
    return dag.create_index_pipeline(
        index_pipeline_name(config), pipeline_root(config.output_dir), catalog, config.serving_base,
        search_top_k=config.search_top_k, keep_versions=config.keep_versions,
        served_state=served_state(config.serving_base),
        metadata_connection_config=sqlite_metadata_connection_config(metadata_path(config.output_dir)),
        beam_pipeline_args=config.beam_args)


@contextlib.contextmanager
def logging_to(log_file: str) -> Iterator[None]:
    """Sends TFX's, Beam's and TensorFlow's full log to `log_file`, none of it to the console."""
    os.makedirs(os.path.dirname(log_file), exist_ok=True)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
    try:
        yield
    finally:
        root.removeHandler(file_handler)
        logging.captureWarnings(False)
        tensorflow_logger.handlers = saved_tensorflow
        file_handler.close()
        root.setLevel(saved[0])
        absl_logging.set_verbosity(saved[1])
        for handler, level in saved[2]:
            handler.setLevel(level)


@contextlib.contextmanager
def own_temp_dir() -> Iterator[None]:
    """Python's temporary files go to a directory of the run's own while the block runs, removed afterwards: TFX
    leaves a 60 MB copy of itself there per Beam component (a package for remote Beam workers) and does not
    remove it."""
    saved, scratch = tempfile.tempdir, tempfile.mkdtemp(prefix="cnnpipe-run-")
    tempfile.tempdir = scratch
    try:
        yield
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(scratch, ignore_errors=True)


def run(config: PipelineConfig, out: TextIO = sys.stdout, pipeline: Optional[Pipeline] = None) -> dict[str, float]:
    """Runs the whole pipeline (or `pipeline`, built for `config`); returns each component's wall time in seconds.

    Raises the component's exception when one fails (CnnpipeError for bad data).
    """
    pipeline = pipeline or build_pipeline(config)
    name = pipeline.pipeline_info.pipeline_name
    log_file = os.path.join(config.output_dir, "logs", f"run-{datetime.datetime.now():%Y%m%d-%H%M%S}.log")
    print(f"cnnpipe: pipeline '{name}' — output in {config.output_dir}, full log in {log_file}", file=out, flush=True)
    with (own_temp_dir(), logging_to(log_file),
          ComponentProgress(pipeline.metadata_connection_config, name, out) as progress):
        try:
            LocalDagRunner().run(pipeline)
        except Exception:
            logging.exception("The run failed.")
            raise
    return progress.seconds
