"""Runs the pipeline on Kubeflow Pipelines: compiles it to a KFP v2 pipeline spec, submits or schedules it.

The DAG is `dag.create_pipeline`'s, as for the local runner; TFX's KubeflowV2DagRunner compiles it, and
every step runs in the image that `kubeflow/Dockerfile` builds (this project installed at
IMAGE_PROJECT_DIR, Fashion-MNIST at its Debian path). Artifacts go under the pipeline root, a URI
the pods can write (gs:// with the image's libraries); ML Metadata is the cluster's, so no sqlite here.
"""

import contextlib
import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

import yaml
from google.protobuf import json_format, struct_pb2
from tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner import KubeflowV2DagRunner, KubeflowV2DagRunnerConfig
from tfx.orchestration.data_types import RuntimeParameter
from tfx.orchestration.kubeflow.decorators import FinalStatusStr
from tfx.orchestration.pipeline import Pipeline

from cnnpipe.components import run_record
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.pipeline import dag
from cnnpipe.runners import exit_step, resources
from cnnpipe.pipeline.run_parameters import RunParameters
from cnnpipe.pipeline.config import KUBEFLOW_EXPERIMENT, KUBEFLOW_PACKAGE, KUBEFLOW_SPEC_VERSIONS, PipelineConfig
from cnnpipe.schemas import SCHEMA_DIR

if TYPE_CHECKING:
    import kfp
    from kfp.pipeline_spec import pipeline_spec_pb2

IMAGE_PROJECT_DIR = "/opt/cnnpipe"  # where kubeflow/Dockerfile puts this project
INSTALL_HINT = "pip install --ignore-requires-python -c constraints.txt -e '.[kubeflow]' (in cnnpipe's directory)"
DESCRIPTION = "cnnpipe: labelled images to a CNN served by TensorFlow Serving (compiled by `cnnpipe compile`)."


def require_kfp() -> None:
    """Raises CnnpipeError saying how to install the Kubeflow Pipelines SDK when it is missing."""
    try:
        import kfp  # noqa: F401, PLC0415
    except ImportError:
        raise CnnpipeError("Kubeflow support needs the Kubeflow Pipelines SDK (kfp); install it with: "
                           f"{INSTALL_HINT}") from None


def pipeline_name(name: str) -> str:
    """`name` as KFP allows a pipeline name: lower-case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:128] or "cnnpipe"


def schema_in_image(schema_file: Optional[str]) -> Optional[str]:
    """A curated schema's path inside the image; any other schema path is left as given (it must be a URI)."""
    if schema_file and Path(schema_file).parent == SCHEMA_DIR:
        return f"{IMAGE_PROJECT_DIR}/schemas/{Path(schema_file).name}"
    return schema_file


def for_kubeflow(config: PipelineConfig, pipeline_root: str) -> PipelineConfig:
    """`config` with its pushed models under `<pipeline_root>/serving` unless its serving_dir says otherwise."""
    return dataclasses.replace(config, serving_dir=config.serving_dir or f"{pipeline_root.rstrip('/')}/serving")


def build_pipeline(config: PipelineConfig, pipeline_root: str) -> Pipeline:
    """The pipeline for `config` with its artifacts under `pipeline_root` (no metadata config: the cluster's), and
    RunRecord last, which writes down for the exit step the artifacts the run's report reads."""
    config = for_kubeflow(config, pipeline_root)
    return dag.pipeline_for(config, pipeline_name(config.name), pipeline_root, schema_in_image(config.schema_file()),
                            run_parameters=RunParameters(runtime=True), record_run=True)


def wire_exit_step(spec: "pipeline_spec_pb2.PipelineSpec") -> None:
    """Completes the exit step TFX compiles: the pipeline parameters passed on to the steps' sub-DAG (TFX gives it
    none, yet its tasks read them), the exit step run by runners/exit_step.py, its outputs typed for KFP's UI."""
    sub_dag, task = spec.components[exit_step.TFX_DAG], spec.root.dag.tasks[exit_step.TFX_DAG]
    for name, definition in spec.root.input_definitions.parameters.items():
        sub_dag.input_definitions.parameters[name].CopyFrom(definition)
        task.inputs.parameters[name].component_input_parameter = name
    component = spec.components[spec.root.dag.tasks[exit_step.ID].component_ref.name]
    for key, title in exit_step.OUTPUT_TYPES.items():
        component.output_definitions.artifacts[key].artifact_type.Clear()
        component.output_definitions.artifacts[key].artifact_type.schema_title = title
        component.output_definitions.artifacts[key].artifact_type.schema_version = "0.0.1"
    deployment = json_format.MessageToDict(spec.deployment_spec)
    deployment["executors"][component.executor_label]["container"].update(command=exit_step.COMMAND,
                                                                           args=exit_step.ARGS)
    spec.deployment_spec.Clear()
    spec.deployment_spec.update(deployment)


def compile_pipeline(
    config: PipelineConfig, pipeline_root: str, image: str, package_path: str = KUBEFLOW_PACKAGE,
    spec_version: str = KUBEFLOW_SPEC_VERSIONS[0], step_resources: tuple[str, ...] = (), target: str = "kfp",
) -> "pipeline_spec_pb2.PipelineSpec":
    """Writes the KFP v2 pipeline spec (YAML) of `config` to `package_path` in schema `spec_version` ("2.1", the
    one open-source Kubeflow Pipelines 2.x accepts, or "2.0"); returns the PipelineSpec proto.

    Each step asks for the model's default resources with `step_resources` (`STEP=cpu:8,memory:32Gi,gpu:1`) over
    them, its GPUs named as `target` ("kfp" or "vertex") names them."""
    require_kfp()
    from kfp.compiler import pipeline_spec_builder  # noqa: PLC0415
    from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: PLC0415

    runner = KubeflowV2DagRunner(config=KubeflowV2DagRunnerConfig(
        default_image=image, use_pipeline_spec_2_1=spec_version == "2.1"))
    pipeline = build_pipeline(config, pipeline_root)
    runner.set_exit_handler(exit_step.RunOutcome(
        final_status=FinalStatusStr(), pipeline=pipeline.pipeline_info.pipeline_name,
        notify_url=config.notify_url or "").with_id(exit_step.ID))
    chosen = resources.resolve(config.training.model, step_resources, [node.id for node in pipeline.components])
    for node in pipeline.components:
        if node.id in chosen:
            node.with_platform_config(resources.resource_spec(chosen[node.id], target))
    try:
        job = runner.run(pipeline, write_out=False)  # a PipelineJob, as a dict
    except TypeError as error:
        # TFX compiles the latest-artifact and latest-blessed-model resolvers only (span windows)
        if "resolver policy" not in str(error):
            raise
        raise CnnpipeError(
            f"cannot compile for Kubeflow: {error} With data in spans, compile with --span-window 1 (the newest span)."
        ) from None
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    for task in (*dag.UNCACHED, run_record.ID):
        if task in exit_step.pipeline_tasks(spec):
            exit_step.pipeline_tasks(spec)[task].caching_options.enable_cache = False
    spec.default_pipeline_root = pipeline_root  # a PipelineJob's runtime config holds it; a spec file, here
    set_parameter_defaults(spec, pipeline)
    wire_exit_step(spec)
    platform = resources.platform_spec(spec, chosen, target)
    os.makedirs(os.path.dirname(os.path.abspath(package_path)), exist_ok=True)
    if spec.schema_version == "2.0.0":  # kfp's writer reads `parameterType`, which a 2.0 pipeline's inputs lack
        with open(package_path, "w") as f:
            yaml.dump_all([json_format.MessageToDict(message) for message in (spec, platform) if message.ListFields()],
                          f, sort_keys=True)
    else:
        pipeline_spec_builder.write_pipeline_spec_to_file(spec, DESCRIPTION, platform, package_path)
    return spec


def run_parameters(pipeline: Pipeline) -> dict[str, RuntimeParameter]:
    """The pipeline's RuntimeParameters, by name."""
    return {value.name: value for node in pipeline.components for value in node.exec_properties.values()
            if isinstance(value, RuntimeParameter)}


def set_parameter_defaults(spec: "pipeline_spec_pb2.PipelineSpec", pipeline: Pipeline) -> None:
    """Writes each pipeline parameter's default and description into `spec`, which TFX's compiler leaves out (a run
    given no value would be refused)."""
    for name, parameter in run_parameters(pipeline).items():
        definition = spec.root.input_definitions.parameters[name]
        definition.default_value.CopyFrom(struct_pb2.Value(string_value=parameter.default) if parameter.ptype is str
                                          else struct_pb2.Value(number_value=parameter.default))
        definition.description = parameter.description


def _require_package(package_path: str) -> None:
    if not os.path.isfile(package_path):
        raise CnnpipeError(f"{package_path}: no such pipeline spec; write it with `cnnpipe compile` "
                           "(or pass --package).")


PARAMETER_TYPES = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "STRING": str}  # as a 2.1 spec names them
PRIMITIVE_TYPES = {"INT": int, "DOUBLE": float, "STRING": str}  # as a 2.0 spec does
TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}


def spec_parameters(package_path: str) -> dict[str, tuple[type, Any]]:
    """The pipeline parameters of the compiled spec at `package_path`: each one's type and default."""
    _require_package(package_path)
    with open(package_path) as f:
        inputs = (next(yaml.safe_load_all(f)).get("root", {}).get("inputDefinitions") or {}).get("parameters", {})
    typed = {name: PARAMETER_TYPES.get(spec.get("parameterType")) or PRIMITIVE_TYPES[spec.get("type")]
             for name, spec in inputs.items()}
    return {name: (kind, kind(inputs[name]["defaultValue"]) if "defaultValue" in inputs[name] else None)
            for name, kind in typed.items()}


def checked_parameters(package_path: str, given: tuple[str, ...]) -> dict[str, Any]:
    """`--param NAME=VALUE`s as the spec at `package_path` types them; an unknown name or a value of the wrong type
    is a CnnpipeError that lists the spec's parameters."""
    parameters = spec_parameters(package_path)
    listed = ", ".join(f"{name} (default {default})" for name, (_, default) in parameters.items())
    values: dict[str, Any] = {}
    for text in given:
        name, equals, value = text.partition("=")
        if not equals or name not in parameters:
            raise CnnpipeError(f"--param {text!r}: {package_path} has no parameter {name!r}; give NAME=VALUE with "
                               f"one of: {listed or 'none'}.")
        kind = parameters[name][0]
        try:
            values[name] = kind(value)
        except ValueError:
            raise CnnpipeError(f"--param {text!r}: {name} takes {TYPE_NAMES[kind]}, e.g. "
                               f"{name}={parameters[name][1]}.") from None
    return values


def _server_message(body: Optional[str]) -> str:
    """The `message` of a KFP API error body (JSON), else the body itself, on one line."""
    try:
        text = json.loads(body or "").get("message", body)
    except (ValueError, AttributeError):
        text = body
    return " ".join(str(text or "").split())


@contextlib.contextmanager
def _kubeflow_at(host: str) -> Iterator[None]:
    """Turns the SDK's connection and API errors into one-line CnnpipeErrors naming `host`."""
    from kfp_server_api.exceptions import ApiException  # noqa: PLC0415
    from urllib3.exceptions import HTTPError  # noqa: PLC0415

    retries = logging.getLogger("urllib3.connectionpool")  # warns at each retry; the error below says it once
    saved_level = retries.level
    retries.setLevel(logging.ERROR)
    try:
        yield
    except HTTPError as error:  # no answer: refused, unresolvable, timed out
        reason = str(getattr(error, "reason", None) or error).rsplit(": ", 1)[-1]
        raise CnnpipeError(
            f"cannot reach Kubeflow Pipelines at {host} ({reason}); check --host, e.g. http://localhost:8080 "
            "after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`."
        ) from None
    except ApiException as error:
        raise CnnpipeError(
            f"Kubeflow Pipelines at {host} refused the request: {error.status} {error.reason}: "
            f"{_server_message(error.body)}"
        ) from None
    except TimeoutError as error:  # the SDK's health check gave up
        raise CnnpipeError(f"Kubeflow Pipelines at {host} did not answer: {error}") from None
    finally:
        retries.setLevel(saved_level)


def _client(host: str) -> "kfp.Client":
    import kfp  # noqa: PLC0415

    return kfp.Client(host=host)


def submit(host: str, package_path: str = KUBEFLOW_PACKAGE, experiment: str = KUBEFLOW_EXPERIMENT,
           run_name: Optional[str] = None, parameters: tuple[str, ...] = ()) -> str:
    """Creates a run of the compiled pipeline at the KFP API `host`, given the pipeline `parameters` (NAME=VALUE;
    the others at their defaults); returns the run's id."""
    values = checked_parameters(package_path, parameters)
    require_kfp()
    with _kubeflow_at(host):
        result = _client(host).create_run_from_pipeline_package(
            package_path, arguments=values, run_name=run_name, experiment_name=experiment
        )
    return result.run_id


def check_cron(cron: str) -> None:
    """Refuses what is not KFP's cron format: six fields, seconds first."""
    if len(cron.split()) != 6:
        raise CnnpipeError(
            f"--cron '{cron}': Kubeflow Pipelines wants six fields (second minute hour day-of-month month "
            "day-of-week), e.g. '0 0 3 * * *' for 03:00 every day."
        )


def schedule(host: str, cron: str, package_path: str = KUBEFLOW_PACKAGE, experiment: str = KUBEFLOW_EXPERIMENT,
             name: Optional[str] = None, parameters: tuple[str, ...] = ()) -> str:
    """Creates a recurring run of the compiled pipeline at `host` on `cron`, each run given the pipeline `parameters`
    (NAME=VALUE); returns its id.

    At most one run at a time, and no catching up on the times missed while the schedule was paused.
    """
    values = checked_parameters(package_path, parameters)
    check_cron(cron)
    require_kfp()
    with _kubeflow_at(host):
        client = _client(host)
        experiment_id = client.create_experiment(name=experiment).experiment_id
        recurring_run = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=name or f"{Path(package_path).stem} {cron}",
            cron_expression=cron,
            pipeline_package_path=package_path,
            params=values,
            max_concurrency=1,
            no_catchup=True,
        )
    return recurring_run.recurring_run_id
