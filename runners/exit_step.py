"""The exit step of a compiled Kubeflow pipeline: every run's outcome, a failed run's included.

TFX's exit handler, which KubeflowV2DagRunner compiles to KFP's: the run's steps go into a sub-DAG (`tfx-dag`) and
RunOutcome runs after it whatever happened, given the sub-DAG's final status (KFP's PipelineTaskFinalStatus). It reads
the run's artifacts from RunRecord's record (components/run_record.py; none when the run failed before it), and writes
the run's outcome.json and HTML report as its output artifacts, under the pipeline root beside the run's other
outputs, and posts the outcome to the webhook (`--notify-url`), as a local run's end does (report/outcome.py).

KFP's UI shows an artifact of type `system.HTML` as a page, and TFX's executor cannot run a component with such an
output (it imports an artifact's class from its type's name), so the compiled step runs this module on its
ExecutorInput instead (`python -m cnnpipe.runners.exit_step --executor_input {{$}}`), as KFP's own Python components
run: parameters in, artifacts written to their URIs, the ExecutorOutput written back.
"""

import argparse
import json
import os
import re
from typing import Any, Optional, Sequence

from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.orchestration.kubeflow import decorators
from tfx.types.experimental import simple_artifacts
from tfx.dsl.io import fileio
from tfx.utils import io_utils

from cnnpipe.components import run_record
from cnnpipe.report import run_facts, writer
from cnnpipe.report.outcome import Outcome, notify, of_summary
from cnnpipe.report.summary import summary_of

ID = "RunOutcome"
TFX_DAG = "tfx-dag"  # the sub-DAG of the pipeline's steps, which the exit step follows
FINAL_STATUS, REPORT, OUTCOME = "final_status", "report", "outcome"
OUTPUT_TYPES = {REPORT: "system.HTML", OUTCOME: "system.Artifact"}  # as KFP's UI shows them
COMMAND = ["python", "-m", "cnnpipe.runners.exit_step"]
ARGS = ["--executor_input", "{{$}}"]
FAILED_TASKS = re.compile(r"failed tasks are: \[([^\],]+)")  # Vertex AI names them in the sub-DAG's error


@decorators.exit_handler
def RunOutcome(  # noqa: N802 - a TFX component, named as a class
    final_status: Parameter[str],
    pipeline: Parameter[str],
    notify_url: Parameter[str],
    report: OutputArtifact[simple_artifacts.File],
    outcome: OutputArtifact[simple_artifacts.File],
) -> None:
    """Concludes the run: its outcome and report, and the webhook's post."""
    conclude(json.loads(final_status), pipeline, notify_url, report.uri, outcome.uri)


def pipeline_tasks(spec: Any) -> Any:
    """The tasks of a compiled spec's steps, by id: in the sub-DAG that the exit step follows."""
    return spec.components[TFX_DAG].dag.tasks if TFX_DAG in spec.components else spec.root.dag.tasks


def conclude(final_status: dict, pipeline: str, notify_url: str, report_uri: str, outcome_uri: str) -> Outcome:
    """Writes the outcome of the run whose sub-DAG ended with `final_status` to `outcome_uri` and its report to
    `report_uri`, and posts the outcome to `notify_url` (if any); returns it."""
    run_dir = os.path.dirname(os.path.dirname(report_uri))  # <run>/<this step>/report: its steps are beside this one
    run_id = final_status.get("pipelineJobResourceName", "").rsplit("/", 1)[-1] or os.path.basename(run_dir)
    record = _record_dir(run_dir)
    outputs = run_record.read(record) if record else {}
    result = summary_of(run_id, outputs)
    failed_step = None
    if final_status.get("state") != "SUCCEEDED" or record is None:
        message = (final_status.get("error") or {}).get("message") or (
            f"the run ended {final_status.get('state', 'without a state')}; each step's log is in the orchestrator's "
            "UI")
        result.stopped_by = message
        found = FAILED_TASKS.search(message)
        failed_step = found.group(1).strip() if found else None
    ended = of_summary(pipeline, result, failed_step, report=report_uri)
    io_utils.write_string_file(report_uri, writer.page(run_facts.facts_of(pipeline, result, outputs)))
    io_utils.write_string_file(outcome_uri, ended.to_json())
    print(ended.to_json())
    if notify_url:
        print(notify(notify_url, ended))
    return ended


def _record_dir(run_dir: str) -> Optional[str]:
    """RunRecord's output in the run's directory (its step's directory is named after it, under Vertex AI with a
    task id), if it ran."""
    found = fileio.glob(os.path.join(run_dir, f"{run_record.ID}*", "record", run_record.RECORD_FILE))
    return os.path.dirname(found[0]) if found else None


def _parameter(executor_input, name: str):
    """A parameter's value as given: `parameterValues` (schema 2.1), else the typed `parameters` (2.0)."""
    from google.protobuf import json_format  # noqa: PLC0415

    if name in executor_input.inputs.parameter_values:
        return json_format.MessageToDict(executor_input.inputs.parameter_values[name])
    typed = executor_input.inputs.parameters[name]
    return getattr(typed, typed.WhichOneof("value"))


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Runs the exit step on the ExecutorInput (JSON) that KFP passes as `--executor_input`."""
    from google.protobuf import json_format  # noqa: PLC0415
    from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executor_input", required=True)
    executor_input = json_format.Parse(parser.parse_args(argv).executor_input, pipeline_spec_pb2.ExecutorInput())
    status = _parameter(executor_input, FINAL_STATUS)
    uris = {key: artifacts.artifacts[0].uri for key, artifacts in executor_input.outputs.artifacts.items()}
    ended = conclude(json.loads(status) if isinstance(status, str) else status, _parameter(executor_input, "pipeline"),
                     _parameter(executor_input, "notify_url"), uris[REPORT], uris[OUTCOME])
    written = pipeline_spec_pb2.ExecutorOutput()
    for key, artifacts in executor_input.outputs.artifacts.items():
        artifact = written.artifacts[key].artifacts.add()
        artifact.CopyFrom(artifacts.artifacts[0])
        artifact.metadata.update({"status": ended.status, "summary": ended.summary})
    io_utils.write_string_file(executor_input.outputs.output_file, json_format.MessageToJson(written))


if __name__ == "__main__":
    main()
