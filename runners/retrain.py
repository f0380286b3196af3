"""Scheduled retraining: run the pipeline on a new span, warm-started from the served model.

`retrain` is safe to run from cron: with no span newer than the newest one a run has finished
(through the Pusher, pushed or not) it does nothing, and a run that was killed or failed is run
again (its finished components come from the cache). The caller holds `output_dir.output_lock` so
that two runs never share one metadata store.
"""

import dataclasses
import os
import sys
from typing import Optional, TextIO

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.components.ingestion import source as data_source
from cnnpipe.models.training_config import WARM_START_LATEST
from cnnpipe.runners import local_runner
from cnnpipe.report import summary
from cnnpipe.pipeline import metadata
from cnnpipe.pipeline.config import PipelineConfig

PUSHER = "AtomicPusher"
EXAMPLE_GEN = "ImageExampleGen"


def trained_spans(metadata_file: str, pipeline_name: str) -> list[int]:
    """The spans whose run of `pipeline_name` finished, through the Pusher (pushed or not), ascending."""
    if not os.path.exists(metadata_file):
        return []
    mlmd = metadata.store(metadata_file)
    spans = set()
    for run_id in metadata.finished_runs(mlmd, pipeline_name, PUSHER):
        examples = metadata.outputs_of(mlmd, [execution for execution in metadata.run_executions(mlmd, run_id)
                                              if metadata.component_of(mlmd, execution.id, pipeline_name) ==
                                              EXAMPLE_GEN])
        spans.update(artifact.custom_properties["span"].int_value for artifact in examples.values())
    return sorted(spans)


@dataclasses.dataclass
class RetrainResult:
    """What `retrain` did: the newest span, and its run's summary (None when there was nothing new)."""

    span: int
    run: Optional[summary.RunSummary] = None


def retrain(config: PipelineConfig, out: TextIO = sys.stdout) -> RetrainResult:
    """Runs the pipeline on the newest span unless a run on it has finished already.

    The Trainer warm-starts from the served model (the newest pushed version), the Evaluator compares
    with it, and the Pusher pushes only a model that is blessed.
    """
    spans = data_source.spans(config.data_path)
    if not spans:
        raise CnnpipeError(
            f"{config.data_path}: retraining needs data in span directories "
            f"({data_source.SPAN_DIRECTORY.replace('{SPAN}', 'N')}"
            "/ for N = 1, 2, ...); put each new batch of images in the next span."
        )
    metadata_file = local_runner.metadata_path(config.output_dir)
    done = trained_spans(metadata_file, config.name)
    if done and spans[-1] <= done[-1]:
        print(f"cnnpipe retrain: no new span in {config.data_path} (span {done[-1]} is already trained); "
              "nothing to do.", file=out, flush=True)
        return RetrainResult(spans[-1])
    print(f"cnnpipe retrain: span {spans[-1]} has no finished run; training from the served model.", file=out,
          flush=True)
    local_runner.run(config.with_options(warm_start=WARM_START_LATEST), out)
    return RetrainResult(spans[-1], summary.summarize(metadata_file, config.name))
