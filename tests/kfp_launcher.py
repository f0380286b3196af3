"""A local stand-in for a Kubeflow Pipelines v2 launcher: runs a compiled pipeline spec's tasks, in order.

For each task, in topological order, it does what the orchestrator does for the task's pod: builds its
ExecutorInput (constant parameters, the run's pipeline parameters, the artifacts upstream tasks wrote, fresh output
URIs under the pipeline root, the executor output file), resolves the container's placeholders with kfp.local's
helpers, runs the container's command with this interpreter, checks its exit code, reads the ExecutorOutput it wrote
and hands the output artifacts (URI and metadata as the executor wrote them) to the tasks downstream. A sub-DAG (TFX's
`tfx-dag`, when the pipeline has an exit step) runs its tasks given its inputs; after a failure only a task that runs
whatever happened upstream (an exit step) still runs, given its producer's final status.

What the orchestrator supplies depends on which one runs the spec (CONTRACTS):

- "kfp", open-source Kubeflow Pipelines 2.x: its API server takes schema 2.1.0 only; its driver sets
  `inputs.parameterValues` alone; its backend runs no lifecycle hook; its launcher records each output in ML
  Metadata, so a downstream task gets it named by its metadata id, its metadata as MLMD gives it back (booleans as
  numbers, lists and structs wrapped as {"list": …} / {"struct": …}) with the `display_name` and
  `store_session_info` the launcher adds; outputs under <root>/<pipeline>/<run id>/<task>/; an exit step's final
  status names the run by its workflow's name (not the run id) and carries no error message.
- "vertex", Vertex AI Pipelines: either schema; the deprecated typed `inputs.parameters` besides
  `parameterValues`; the container's `lifecycle.preCacheCheck` (ExampleGen's driver) runs before the container,
  writing the executor output file the container then reads; artifacts named by their metadata resource names;
  outputs under <root>/<project number>/<job id>/<task>_<task id>/; a failed sub-DAG's final status names the job by
  its resource name and the failed task in its error message.

TFX's container entrypoint (kubeflow_v2_run_executor.py) reads `parameterValues` when the spec passes
`--json_serialized_inputs_spec_args` (schema 2.1) and `inputs.parameters` when it does not (schema 2.0): a 2.0 spec
exercises the Vertex contract's typed parameters, a 2.1 spec the parameter values both contracts set.

Only container executors run here: an importer or resolver (ML Metadata queries) is refused, by task, up front.
"""

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.local import executor_input_utils, executor_output_utils, graph_utils, placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

INTERPRETERS = ("python", "python3")  # the image's Python, replaced by this one
STDERR_TAIL = 4000  # characters of a failed task's stderr to show
ParameterType = pb.ParameterType.ParameterTypeEnum
ALWAYS = pb.PipelineTaskSpec.TriggerPolicy.ALL_UPSTREAM_TASKS_COMPLETED  # runs after its upstream tasks, failed or not
PRIMITIVE_TYPES = {"INT": "NUMBER_INTEGER", "DOUBLE": "NUMBER_DOUBLE", "STRING": "STRING"}  # a 2.0 spec's types


class LaunchError(Exception):
    """A task the harness cannot run, or one that failed (`task`)."""

    task = ""


@dataclasses.dataclass(frozen=True)
class Contract:
    """What an orchestrator accepts and puts in a task's ExecutorInput (the module's docstring)."""

    name: str
    schemas: tuple[str, ...]  # pipeline spec schema versions it accepts
    typed_parameters: bool  # also sets the deprecated `inputs.parameters`
    runs_pre_cache_check: bool  # runs a container's lifecycle.preCacheCheck first
    output_file: str  # the executor output file's name in the task's root
    artifact_name: str  # a recorded artifact's name, formatted with its metadata id
    through_mlmd: bool  # downstream metadata as KFP's launcher records it in ML Metadata and reads it back
    run_dir: str  # a run's outputs under the pipeline root, formatted with the pipeline's name and the run's id
    task_dir: str  # a task's under the run's, formatted with its name and a task id
    job_name: str  # the run as an exit step's final status names it (`pipelineJobResourceName`)
    names_failed_tasks: bool  # a failed sub-DAG's final status says which of its tasks failed


KFP = Contract("kfp", ("2.1.0",), typed_parameters=False, runs_pre_cache_check=False,
               output_file="output_metadata.json", artifact_name="{}", through_mlmd=True,
               run_dir="{pipeline}/{run}", task_dir="{task}", job_name="{pipeline}-{workflow}",
               names_failed_tasks=False)
VERTEX = Contract("vertex", ("2.0.0", "2.1.0"), typed_parameters=True, runs_pre_cache_check=True,
                  output_file="executor_output.json",
                  artifact_name="projects/cnnpipe-test/locations/local/metadataStores/default/artifacts/{}",
                  through_mlmd=False, run_dir="123456789012/{run}", task_dir="{task}_{id}",
                  job_name="projects/cnnpipe-test/locations/local/pipelineJobs/{run}", names_failed_tasks=True)
CONTRACTS = {contract.name: contract for contract in (KFP, VERTEX)}


@dataclasses.dataclass(frozen=True)
class TaskRun:
    """A task that ran: its ExecutorInput, what ran ("preCacheCheck", "executor"), the outputs handed downstream."""

    executor_input: pb.ExecutorInput
    steps: tuple[str, ...]
    outputs: dict[str, pb.RuntimeArtifact]


def load_spec(path: str) -> pb.PipelineSpec:
    """The PipelineSpec in a compiled YAML or JSON file (its first document)."""
    with open(path) as f:
        return json_format.ParseDict(next(yaml.safe_load_all(f)), pb.PipelineSpec())


def deployment(spec: pb.PipelineSpec) -> pb.PipelineDeploymentConfig:
    """The spec's executors, typed (the spec holds them as a Struct)."""
    return json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec), pb.PipelineDeploymentConfig())


def tasks_of(spec: pb.PipelineSpec) -> dict[str, pb.PipelineTaskSpec]:
    """Every task of the spec, those in sub-DAGs included, by name."""
    found: dict[str, pb.PipelineTaskSpec] = {}
    pending = [spec.root.dag]
    while pending:
        for name, task in pending.pop().tasks.items():
            found[name] = task
            component = spec.components[task.component_ref.name]
            if component.HasField("dag"):
                pending.append(component.dag)
    return found


def executor_of(spec: pb.PipelineSpec, executors: pb.PipelineDeploymentConfig,
                task: str) -> pb.PipelineDeploymentConfig.ExecutorSpec:
    """The executor that runs `task`."""
    return executors.executors[spec.components[tasks_of(spec)[task].component_ref.name].executor_label]


def check_runnable(spec: pb.PipelineSpec, contract: Contract) -> None:
    """Refuses, before anything runs, a schema the orchestrator would refuse and an executor the harness cannot run."""
    if spec.schema_version not in contract.schemas:
        raise LaunchError(f"the {contract.name} contract takes pipeline spec schema {' or '.join(contract.schemas)}, "
                          f"not {spec.schema_version}")
    executors = deployment(spec)
    for task, task_spec in tasks_of(spec).items():
        if spec.components[task_spec.component_ref.name].HasField("dag"):
            continue
        kind = executor_of(spec, executors, task).WhichOneof("spec")
        if kind != "container":
            raise LaunchError(f"task '{task}' has a {kind} executor, which this harness cannot run: it runs "
                              "container executors only (importers and resolvers query ML Metadata)")


def execution_order(dag: pb.DagSpec) -> list[str]:
    """A DAG's tasks, each after the tasks it depends on."""
    return graph_utils.topological_sort_tasks(dict(dag.tasks))[::-1]


def pipeline_parameters(spec: pb.PipelineSpec, given: dict[str, Any]) -> dict[str, struct_pb2.Value]:
    """The run's pipeline parameters, as the orchestrator's runtime config holds them: `given` over the spec's
    defaults; a parameter the spec lacks, or one with neither, refused as KFP refuses the run."""
    definitions = spec.root.input_definitions.parameters
    unknown = set(given) - set(definitions)
    if unknown:
        raise LaunchError(f"the spec has no pipeline parameter {', '.join(sorted(unknown))}")
    values = {}
    for name, definition in definitions.items():
        if name in given:
            values[name] = json_format.ParseDict(given[name], struct_pb2.Value())
        elif definition.HasField("default_value"):
            values[name] = definition.default_value
        else:
            raise LaunchError(f"pipeline parameter '{name}' has no value and no default")
    return values


def parameter_value(task: str, key: str, parameter: pb.TaskInputsSpec.InputParameterSpec,
                    scope: dict[str, struct_pb2.Value], final_statuses: dict[str, struct_pb2.Value],
                    ) -> struct_pb2.Value:
    """An input parameter as `parameterValues` holds it: an input of the enclosing DAG (`scope`: the pipeline's
    parameters at the root), an upstream task's final status, or a constant from `runtimeValue.constant` (schema 2.1)
    or `runtimeValue.constantValue` (2.0)."""
    if parameter.component_input_parameter:
        return scope[parameter.component_input_parameter]
    if parameter.HasField("task_final_status"):
        return final_statuses[parameter.task_final_status.producer_task]
    kind = parameter.runtime_value.WhichOneof("value")
    if kind == "constant":
        return parameter.runtime_value.constant
    if kind == "constant_value":
        typed = parameter.runtime_value.constant_value
        value = getattr(typed, typed.WhichOneof("value"))
        return struct_pb2.Value(string_value=value) if isinstance(value, str) else struct_pb2.Value(number_value=value)
    raise LaunchError(f"task '{task}': input parameter '{key}' is neither a constant, a pipeline parameter nor a "
                      "final status, which this harness cannot supply")


def typed_parameter(parameter: pb.TaskInputsSpec.InputParameterSpec, value: struct_pb2.Value,
                    definition: pb.ComponentInputsSpec.ParameterSpec) -> pb.Value:
    """An input parameter as the deprecated, typed `inputs.parameters` holds it (its type from `parameterType`, or
    from a 2.0 spec's `type`)."""
    if parameter.runtime_value.HasField("constant_value"):  # schema 2.0 writes it typed
        return parameter.runtime_value.constant_value
    kind = ParameterType.Name(definition.parameter_type) if definition.parameter_type else \
        PRIMITIVE_TYPES[pb.PrimitiveType.PrimitiveTypeEnum.Name(definition.type)]
    if kind == "NUMBER_INTEGER":
        return pb.Value(int_value=int(value.number_value))
    if kind == "NUMBER_DOUBLE":
        return pb.Value(double_value=value.number_value)
    if kind == "STRING":  # a final status, a struct, as its JSON
        return pb.Value(string_value=value.string_value if value.WhichOneof("kind") == "string_value"
                        else json_format.MessageToJson(value))
    raise LaunchError(f"a {kind} parameter has no typed `inputs.parameters`")


def mlmd_round_trip(metadata: struct_pb2.Struct) -> struct_pb2.Struct:
    """Metadata as KFP's launcher stores it in ML Metadata and its driver reads it back for a downstream task."""
    stored = struct_pb2.Struct()
    for key, value in metadata.fields.items():
        kind = value.WhichOneof("kind")
        if kind == "bool_value":
            stored.fields[key].number_value = float(value.bool_value)
        elif kind in ("list_value", "struct_value"):
            stored.fields[key].struct_value.fields[kind.removesuffix("_value")].CopyFrom(value)
        else:
            stored.fields[key].CopyFrom(value)
    return stored


class TaskFailed(LaunchError):
    """A task failed: the error, and the tasks that ran (those that run whatever happened upstream included)."""

    def __init__(self, message: str, runs: dict[str, "TaskRun"]):
        super().__init__(message)
        self.runs = runs


class Launcher:
    """Runs one compiled pipeline spec, task by task, under one contract; artifacts under `pipeline_root`.

    A task whose component is a DAG (TFX's `tfx-dag`, which an exit step follows) runs its tasks, given the task's
    inputs as its own. After a failure the tasks downstream of it are skipped, except those whose trigger policy runs
    them when their upstream tasks have completed, failed or not: an exit step, given its producer's final status."""

    def __init__(self, spec: pb.PipelineSpec, contract: Contract, pipeline_root: str, pythonpath: Sequence[str],
                 timeout: float, parameters: Optional[dict[str, Any]] = None):
        self.spec, self.contract, self.timeout = spec, contract, timeout
        self.parameters = pipeline_parameters(spec, parameters or {})
        self.executors = deployment(spec)
        self.pipeline_root = pipeline_root
        self.run_id = f"{spec.pipeline_info.name}-{uuid.uuid4().hex[:8]}"
        self.run_dir = Path(pipeline_root) / contract.run_dir.format(pipeline=spec.pipeline_info.name, run=self.run_id)
        self.job_name = contract.job_name.format(pipeline=spec.pipeline_info.name, run=self.run_id,
                                                 workflow=uuid.uuid4().hex[:5])
        self.metadata_ids: Iterator[int] = itertools.count(1)
        self.task_ids: Iterator[int] = itertools.count(7001)
        paths = [*pythonpath, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
        self.runs: dict[str, TaskRun] = {}
        self.task_roots: dict[str, Path] = {}
        self.final_statuses: dict[str, struct_pb2.Value] = {}

    def run(self) -> dict[str, TaskRun]:
        """Runs the pipeline; raises TaskFailed (after the tasks that run whatever happened) when a task failed."""
        check_runnable(self.spec, self.contract)
        failure = self.run_dag(self.spec.root.dag, self.parameters)
        if failure is not None:
            raise TaskFailed(str(failure), self.runs)
        return self.runs

    def run_dag(self, dag: pb.DagSpec, scope: dict[str, struct_pb2.Value]) -> Optional[LaunchError]:
        """Runs `dag`'s tasks in order, its inputs `scope`; returns the first failure."""
        failed: list[str] = []
        first: Optional[LaunchError] = None
        for task in execution_order(dag):
            spec = dag.tasks[task]
            if any(upstream in failed for upstream in spec.dependent_tasks) and spec.trigger_policy.strategy != ALWAYS:
                failed.append(task)  # skipped: its downstream tasks are skipped too
                continue
            inputs = {key: parameter_value(task, key, parameter, scope, self.final_statuses)
                      for key, parameter in spec.inputs.parameters.items()}
            component = self.spec.components[spec.component_ref.name]
            error = self.run_dag(component.dag, inputs) if component.HasField("dag") else self.run_task(task, inputs)
            self.final_statuses[task] = self.final_status(task, error)
            if error is not None:
                failed.append(task)
                first = first or error
        return first

    def final_status(self, task: str, error: Optional[LaunchError]) -> struct_pb2.Value:
        """The task's PipelineTaskFinalStatus as the contract's orchestrator hands it to an exit step: under Vertex AI
        a failed sub-DAG's error names its failed tasks; open-source KFP gives no error message."""
        message = ""
        if error is not None and self.contract.names_failed_tasks:
            message = (f"The DAG failed because some tasks failed. The failed tasks are: [{error.task}].; Job "
                       f"(project_id = cnnpipe-test, job_id = {self.run_id}) is failed due to the above error.")
        status = {"state": "FAILED" if error else "SUCCEEDED", "pipelineJobResourceName": self.job_name,
                  "pipelineTaskName": task, "error": {"code": 9, "message": message} if message else {}}
        return json_format.ParseDict(status, struct_pb2.Value())

    def run_task(self, task: str, inputs: dict[str, struct_pb2.Value]) -> Optional[LaunchError]:
        """Runs a container task given its input parameters' values; returns its failure, if it failed."""
        executor_input = self.executor_input(task, inputs)
        try:
            steps = self.launch(task, executor_input)
        except LaunchError as error:
            error.task = task  # the container task that failed
            return error
        written = executor_output_utils.load_executor_output(executor_input.outputs.output_file)
        outputs = {key: self.recorded(key, provisioned.artifacts[0], written.artifacts.get(key))
                   for key, provisioned in executor_input.outputs.artifacts.items()}
        self.runs[task] = TaskRun(executor_input, steps, outputs)
        return None

    def task_root(self, task: str) -> Path:
        """The task's directory under the run's, as the contract's orchestrator names it."""
        if task not in self.task_roots:
            self.task_roots[task] = self.run_dir / self.contract.task_dir.format(task=task, id=next(self.task_ids))
        return self.task_roots[task]

    def component(self, task: str) -> pb.ComponentSpec:
        return self.spec.components[tasks_of(self.spec)[task].component_ref.name]

    def executor_input(self, task: str, values: dict[str, struct_pb2.Value]) -> pb.ExecutorInput:
        """The task's ExecutorInput: its parameters' `values`, upstream outputs, fresh output URIs, the output file."""
        spec, component = tasks_of(self.spec)[task], self.component(task)
        inputs = pb.ExecutorInput.Inputs()
        for key, parameter in spec.inputs.parameters.items():
            inputs.parameter_values[key].CopyFrom(values[key])
            if self.contract.typed_parameters:
                inputs.parameters[key].CopyFrom(
                    typed_parameter(parameter, values[key], component.input_definitions.parameters[key]))
        for key, artifact in spec.inputs.artifacts.items():
            if not artifact.HasField("task_output_artifact"):
                raise LaunchError(f"task '{task}': input artifact '{key}' is not an upstream task's output")
            source = artifact.task_output_artifact
            inputs.artifacts[key].artifacts.append(self.runs[source.producer_task].outputs[source.output_artifact_key])
        root = str(self.task_root(task))
        outputs = pb.ExecutorInput.Outputs(output_file=os.path.join(root, self.contract.output_file))
        for key, definition in component.output_definitions.artifacts.items():
            outputs.artifacts[key].CopyFrom(
                executor_input_utils.artifact_type_schema_to_artifact_list(key, definition.artifact_type, root))
        return pb.ExecutorInput(inputs=inputs, outputs=outputs)

    def launch(self, task: str, executor_input: pb.ExecutorInput) -> tuple[str, ...]:
        """Runs the task's container, after its pre-cache check where the contract runs one; returns what ran."""
        container = executor_of(self.spec, self.executors, task).container
        steps = {"executor": [*container.command, *container.args]}
        if self.contract.runs_pre_cache_check and container.lifecycle.HasField("pre_cache_check"):
            hook = container.lifecycle.pre_cache_check
            steps = {"preCacheCheck": [*hook.command, *hook.args], **steps}
        self.task_root(task).mkdir(parents=True)
        for step, template in steps.items():
            self.execute(task, step, self.command(task, template, executor_input))
        return tuple(steps)

    def command(self, task: str, template: list[str], executor_input: pb.ExecutorInput) -> list[str]:
        """`template` with its placeholders resolved ({{$}} is the ExecutorInput's JSON), this interpreter for the
        image's Python."""
        resolved = placeholder_utils.replace_placeholders(
            full_command=template,
            executor_input_dict=executor_input_utils.executor_input_to_dict(executor_input, self.component(task)),
            pipeline_resource_name=self.run_id, task_resource_name=task, pipeline_root=self.pipeline_root,
            unique_pipeline_id=self.run_id)
        if resolved[0] not in INTERPRETERS:
            raise LaunchError(f"task '{task}' runs {resolved[0]!r}; this harness runs Python entry points only")
        return [sys.executable, *resolved[1:]]

    def execute(self, task: str, step: str, argv: list[str]) -> None:
        """Runs `argv` in the task's root, its output in STEP.out and STEP.err there; fails with stderr's tail."""
        cwd = self.task_root(task)
        pod_tmp = cwd / f"{step}.tmp"  # a pod's own /tmp, gone with the pod (TFX leaves 60 MB there per Beam step)
        pod_tmp.mkdir()
        with open(cwd / f"{step}.out", "w") as stdout, open(cwd / f"{step}.err", "w") as stderr:
            code = subprocess.run(argv, cwd=cwd, env={**self.env, "TMPDIR": str(pod_tmp)}, stdout=stdout,
                                  stderr=stderr, timeout=self.timeout).returncode
        shutil.rmtree(pod_tmp)
        if code != 0:
            tail = (cwd / f"{step}.err").read_text()[-STDERR_TAIL:]
            raise LaunchError(f"task '{task}' ({step}, {self.contract.name} contract) exited with {code}; "
                              f"its stderr ends:\n{tail}")

    def recorded(self, key: str, provisioned: pb.RuntimeArtifact,
                 written: Optional[pb.ArtifactList]) -> pb.RuntimeArtifact:
        """An output as a downstream task gets it: the URI and metadata the executor wrote over the provisioned ones,
        named by its metadata id (and, under KFP, its metadata as ML Metadata keeps it)."""
        artifact = pb.RuntimeArtifact()
        artifact.CopyFrom(provisioned)
        if written is not None and written.artifacts:
            artifact.uri = written.artifacts[0].uri or artifact.uri
            for field, value in written.artifacts[0].metadata.fields.items():
                artifact.metadata.fields[field].CopyFrom(value)
        artifact.name = self.contract.artifact_name.format(next(self.metadata_ids))
        if self.contract.through_mlmd:
            artifact.metadata.update({"display_name": key, "store_session_info": json.dumps({"Provider": "file"})})
            artifact.metadata.CopyFrom(mlmd_round_trip(artifact.metadata))
        return artifact


def run_pipeline(spec_path: str, contract: str, pipeline_root: Optional[str] = None, pythonpath: Sequence[str] = (),
                 timeout: float = 1800, parameters: Optional[dict[str, Any]] = None) -> dict[str, TaskRun]:
    """Runs every task of the compiled spec at `spec_path` under `contract` ("kfp" or "vertex"), with `pythonpath`
    before the inherited PYTHONPATH, given the pipeline `parameters` (the rest at their defaults); artifacts under
    `pipeline_root` (default the spec's). Returns the runs by task; a failed task raises TaskFailed, which holds the
    runs too."""
    spec = load_spec(spec_path)
    return Launcher(spec, CONTRACTS[contract], pipeline_root or spec.default_pipeline_root, pythonpath, timeout,
                    parameters).run()
