"""The Kubeflow runner: the compiled KFP v2 spec, the image's pins, and submit's errors (no cluster is reachable)."""

import dataclasses
import importlib
import re
import sys
from pathlib import Path
from typing import Any

import kfp
import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.data_types import RuntimeParameter

from conftest import cnnpipe, free_ports, write_fashion_mnist_slice
from kfp_api import kfp_api
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.cli import main as cli
from cnnpipe.components import run_record
from cnnpipe.runners import exit_step, kubeflow_runner, local_runner
from cnnpipe.pipeline.config import KUBEFLOW_BEAM_ARGS, PipelineConfig, flags
from cnnpipe.pipeline.datasets import FASHION_MNIST

REPO = Path(__file__).resolve().parent.parent
COMMITTED_SPEC = REPO / "kubeflow" / "pipeline.yaml"
DOCKERFILE = REPO / "kubeflow" / "Dockerfile"
# The arguments kubeflow/pipeline.yaml was compiled with (kubeflow/README.md: placeholders to replace).
PIPELINE_ROOT = "gs://BUCKET/cnnpipe"
IMAGE = "REGISTRY/cnnpipe:0.1.0"
SERVED_MODEL = "ServedModel"
COMPONENTS = {
    "ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "ValidationGate", "Transform",
    "Trainer", "EmbeddingIndex", "AdversarialExamples", "Evaluator", "PushCheck", "AtomicPusher", run_record.ID,
}
TFX_EXECUTOR_COMMAND = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]




@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """The default pipeline (all of Fashion-MNIST), compiled by the CLI as kubeflow/pipeline.yaml was."""
    if not Path(FASHION_MNIST.path).is_dir():
        pytest.skip(f"Fashion-MNIST is not installed: {FASHION_MNIST.install_hint}")
    directory = tmp_path_factory.mktemp("kubeflow")
    result = cnnpipe("compile", "--pipeline-root", PIPELINE_ROOT, "--image", IMAGE, "-o", "pipeline.yaml",
                     cwd=directory)
    assert result.returncode == 0, result.stderr
    assert "14 steps and the exit step RunOutcome, written to pipeline.yaml (pipeline spec schema 2.1.0)" in \
        result.stdout
    return directory / "pipeline.yaml"


@pytest.fixture(scope="module")
def spec(compiled) -> pipeline_spec_pb2.PipelineSpec:
    return json_format.ParseDict(yaml.safe_load(compiled.read_text()), pipeline_spec_pb2.PipelineSpec())


def executors(spec: pipeline_spec_pb2.PipelineSpec) -> dict:
    return json_format.MessageToDict(spec.deployment_spec)["executors"]


def container(spec: pipeline_spec_pb2.PipelineSpec, task: str) -> dict:
    tasks = {**spec.root.dag.tasks, **exit_step.pipeline_tasks(spec)}
    label = spec.components[tasks[task].component_ref.name].executor_label
    return executors(spec)[label]["container"]


def constant(spec: pipeline_spec_pb2.PipelineSpec, task: str, parameter: str) -> str:
    return exit_step.pipeline_tasks(spec)[task].inputs.parameters[parameter].runtime_value.constant.string_value


def run_default(spec: pipeline_spec_pb2.PipelineSpec, task: str, parameter: str) -> Any:
    """What a task's input is given when a run sets no parameter: the pipeline parameter's default it is bound to."""
    name = exit_step.pipeline_tasks(spec)[task].inputs.parameters[parameter].component_input_parameter
    assert name, f"{task}'s {parameter} is not a pipeline parameter"
    value = spec.root.input_definitions.parameters[name].default_value
    return value.string_value if value.HasField("string_value") else value.number_value


def constant_fields(spec: pipeline_spec_pb2.PipelineSpec) -> set[str]:
    """How the tasks' constant parameters are written: `constant` (schema 2.1) or `constant_value` (2.0)."""
    return {parameter.runtime_value.WhichOneof("value") for task in exit_step.pipeline_tasks(spec).values()
            for parameter in task.inputs.parameters.values() if parameter.HasField("runtime_value")}


def test_every_component_is_a_step_and_the_baseline_is_the_served_model(spec):
    """No resolver (on Kubeflow only Vertex AI runs one): the baseline is read from the serving base path by a step
    of its own, which is never cached, since what is served changes between runs."""
    tasks = exit_step.pipeline_tasks(spec)
    assert set(tasks) == COMPONENTS | {SERVED_MODEL}
    assert spec.pipeline_info.name == "fashion-mnist"
    assert all("container" in executor for executor in executors(spec).values())
    assert constant(spec, SERVED_MODEL, "serving_base") == f"{PIPELINE_ROOT}/serving/fashion_mnist"
    assert {task for task in tasks if not tasks[task].caching_options.enable_cache} == {SERVED_MODEL, run_record.ID}


def test_the_exit_step_runs_after_the_steps_whatever_happened(spec):
    """TFX's exit handler as KFP runs one: the steps in a sub-DAG, given the pipeline's parameters (TFX gives it none),
    and after it the exit step, run when the sub-DAG has ended, failed or not, given its final status; its report an
    HTML artifact for KFP's UI, and its container this project's entry point."""
    root = spec.root.dag.tasks
    assert set(root) == {exit_step.TFX_DAG, exit_step.ID}
    parameters = set(spec.root.input_definitions.parameters)
    assert set(spec.components[exit_step.TFX_DAG].input_definitions.parameters) == parameters
    assert {name: value.component_input_parameter for name, value in root[exit_step.TFX_DAG].inputs.parameters.items()
            } == {name: name for name in parameters}
    exit_task = root[exit_step.ID]
    assert exit_task.trigger_policy.strategy == exit_task.TriggerPolicy.ALL_UPSTREAM_TASKS_COMPLETED
    assert exit_task.inputs.parameters["final_status"].task_final_status.producer_task == exit_step.TFX_DAG
    outputs = spec.components[exit_task.component_ref.name].output_definitions.artifacts
    assert {key: outputs[key].artifact_type.schema_title for key in outputs} == exit_step.OUTPUT_TYPES
    assert container(spec, exit_step.ID)["command"] == exit_step.COMMAND


def test_the_dag_edges_follow_the_artifacts(spec):
    tasks = exit_step.pipeline_tasks(spec)
    assert set(tasks["StatisticsGen"].dependent_tasks) == {"ImageExampleGen"}
    assert set(tasks["ValidationGate"].dependent_tasks) == {"ExampleValidator", "ImageExampleGen", "ImportSchemaGen",
                                                            "StatisticsGen", SERVED_MODEL}
    assert "ValidationGate" in tasks["Transform"].dependent_tasks  # bad data never reaches Transform
    assert "Transform" in tasks["Trainer"].dependent_tasks
    assert {"Trainer", "Transform", "ImageExampleGen"} <= set(tasks["EmbeddingIndex"].dependent_tasks)
    assert {"AdversarialExamples", "EmbeddingIndex", SERVED_MODEL} <= set(tasks["Evaluator"].dependent_tasks)
    assert {"Evaluator", "EmbeddingIndex"} <= set(tasks["PushCheck"].dependent_tasks)
    assert {"Evaluator", "PushCheck", "EmbeddingIndex"} <= set(tasks["AtomicPusher"].dependent_tasks)

    def source(task: str, key: str) -> tuple[str, str]:
        artifact = tasks[task].inputs.artifacts[key].task_output_artifact
        return artifact.producer_task, artifact.output_artifact_key

    assert source("Trainer", "examples") == ("Transform", "transformed_examples")
    assert source("Trainer", "transform_graph") == ("Transform", "transform_graph")
    assert source("EmbeddingIndex", "model") == ("Trainer", "model")
    assert source("EmbeddingIndex", "examples") == ("ImageExampleGen", "examples")
    assert source("EmbeddingIndex", "baseline") == (SERVED_MODEL, "baseline")
    assert source("Evaluator", "model") == ("EmbeddingIndex", "indexed_model")
    assert source("Evaluator", "baseline_model") == (SERVED_MODEL, "baseline")
    assert source("AdversarialExamples", "examples") == ("ImageExampleGen", "examples")
    assert source("AdversarialExamples", "model") == ("EmbeddingIndex", "indexed_model")
    assert source("AdversarialExamples", "baseline_model") == (SERVED_MODEL, "baseline")
    assert source("Evaluator", "examples") == ("AdversarialExamples", "adversarial_examples")
    assert source("AtomicPusher", "model_blessing") == ("Evaluator", "blessing")
    assert source("PushCheck", "model") == ("EmbeddingIndex", "indexed_model")
    assert source("AtomicPusher", "infra_blessing") == ("PushCheck", "infra_blessing")
    assert source("AtomicPusher", "statistics") == ("StatisticsGen", "statistics")  # the next run's drift reference
    assert source("ValidationGate", "served_statistics") == (SERVED_MODEL, "served_statistics")


def test_every_step_runs_the_image_with_the_beam_args_and_importable_executors(spec):
    containers = {task: container(spec, task) for task in COMPONENTS | {SERVED_MODEL}}
    for task, step in containers.items():
        args = step["args"]
        assert step["image"] == IMAGE, task
        assert step["command"] == TFX_EXECUTOR_COMMAND, task
        assert args[-2:] == list(KUBEFLOW_BEAM_ARGS), task
        module, _, name = args[args.index("--executor_class_path") + 1].rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), task
    class_path = {task: step["args"][1] for task, step in containers.items()}
    assert class_path["ImageExampleGen"] == "cnnpipe.components.ingestion.executor.Executor"
    assert class_path["AtomicPusher"].startswith("cnnpipe.components.pusher.")
    assert class_path["ValidationGate"].startswith("cnnpipe.components.validation_gate.")


def test_pipeline_root_data_schema_and_serving_are_where_the_pods_find_them(spec):
    assert spec.default_pipeline_root == PIPELINE_ROOT
    assert run_default(spec, "ImageExampleGen", "input_base") == FASHION_MNIST.path  # installed in the image
    schema = constant(spec, "ImportSchemaGen", "schema_file")
    assert schema == f"{kubeflow_runner.IMAGE_PROJECT_DIR}/schemas/fashion_mnist.pbtxt"
    assert (REPO / Path(schema).relative_to(kubeflow_runner.IMAGE_PROJECT_DIR)).is_file()
    assert (f'"base_directory": "{PIPELINE_ROOT}/serving/fashion_mnist"'
            in constant(spec, "AtomicPusher", "push_destination"))
    assert constant(spec, "Trainer", "run_fn") == "cnnpipe.models.trainer.run_fn"
    assert constant(spec, "Transform", "preprocessing_fn") == "cnnpipe.models.preprocessing.preprocessing_fn"


def test_the_spec_is_in_the_schema_open_source_kubeflow_pipelines_accepts(spec):
    """KFP 2.x's API server takes pipeline spec schema 2.1.0 only, and its driver reads each constant parameter from
    `runtimeValue.constant`: parameters typed with `parameterType`, none with the deprecated `constantValue`."""
    assert spec.schema_version == "2.1.0"
    assert constant_fields(spec) == {"constant"}
    parameters = [parameter for component in spec.components.values()
                  for parameter in component.input_definitions.parameters.values()]
    assert parameters and all(parameter.parameter_type and not parameter.type for parameter in parameters)


def test_spec_version_2_0_is_there_for_a_target_that_needs_it(tmp_path):
    config = PipelineConfig.from_options(data=write_fashion_mnist_slice(str(tmp_path / "data"), 30, 10),
                                         class_names=FASHION_MNIST.class_names, schema="fashion_mnist")
    spec = kubeflow_runner.compile_pipeline(config, "gs://cnnpipe-test/root", IMAGE, str(tmp_path / "spec.yaml"),
                                            spec_version="2.0")
    assert spec.schema_version == "2.0.0"
    assert constant_fields(spec) == {"constant_value"}
    assert "schemaVersion: 2.0.0" in (tmp_path / "spec.yaml").read_text()


def test_the_installed_kfp_loads_the_spec(compiled, spec):
    component = kfp.components.load_component_from_file(str(compiled))
    assert component.pipeline_spec == spec
    assert component.name == "fashion-mnist"


def test_the_committed_spec_is_the_current_compilation(compiled):
    assert COMMITTED_SPEC.read_text() == compiled.read_text(), (
        "kubeflow/pipeline.yaml is stale; recompile it from the repository's root with: "
        f"cnnpipe compile --pipeline-root {PIPELINE_ROOT} --image {IMAGE}"
    )


def test_user_beam_args_a_data_uri_and_a_serving_dir_reach_every_step(tmp_path):
    dataflow = ("--runner=DataflowRunner", "--project=cnnpipe-test", "--region=europe-west4",
                "--temp_location=gs://cnnpipe-test/tmp", f"--sdk_container_image={IMAGE}")
    config = PipelineConfig.from_options(data=write_fashion_mnist_slice(str(tmp_path / "data"), 60, 20),
                            class_names=FASHION_MNIST.class_names, schema="fashion_mnist",
                            serving_dir="gs://models/serving", model_name="Shoes v2", beam_args=dataflow)
    spec = kubeflow_runner.compile_pipeline(config, "gs://cnnpipe-test/root", IMAGE, str(tmp_path / "spec.yaml"))
    assert spec.pipeline_info.name == "shoes-v2"
    for task in COMPONENTS:
        assert container(spec, task)["args"][-len(dataflow):] == list(dataflow), task
    assert run_default(spec, "ImageExampleGen", "input_base") == str(tmp_path / "data")
    assert '"base_directory": "gs://models/serving/Shoes v2"' in constant(spec, "AtomicPusher", "push_destination")


def kfp_sdk_resources(cpu: str, memory: str, accelerator: str, count: int) -> dict:
    """A container's resources as the KFP SDK's own compiler writes them for a task given these."""
    @kfp.dsl.container_component
    def step():
        return kfp.dsl.ContainerSpec(image=IMAGE, command=["true"])

    @kfp.dsl.pipeline(name="resources")
    def pipeline():
        (step().set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
         .set_accelerator_type(accelerator).set_accelerator_limit(count))

    executor = json_format.MessageToDict(pipeline.pipeline_spec.deployment_spec)["executors"]["exec-step"]
    return executor["container"]["resources"]


def test_the_default_steps_resources_are_the_models_and_written_where_kfp_reads_them(spec):
    """LeNet-5's steps ask for 4 CPUs and 8 GiB, no GPU; the fields are those the KFP SDK writes."""
    for task in ("Transform", "Trainer", "AdversarialExamples", "Evaluator"):
        assert container(spec, task)["resources"]["resourceCpuLimit"] == "4", task
        assert container(spec, task)["resources"]["resourceMemoryRequest"] == "8Gi", task
        assert "accelerator" not in container(spec, task)["resources"], task
    assert "resources" not in container(spec, "ImageExampleGen")


def test_resources_given_per_step_are_written_as_the_kfp_sdk_writes_them(tmp_path):
    data = write_fashion_mnist_slice(str(tmp_path / "data"), 30, 10)
    result = cnnpipe("compile", "--data", data, "--class-names", ",".join(FASHION_MNIST.class_names), "--schema",
                     "fashion_mnist", "--model", "alexnet", "--pipeline-root", "gs://cnnpipe-test/root", "--image",
                     IMAGE, "-o", "spec.yaml", "--resources", "Trainer=cpu:16,memory:64Gi,gpu:2:nvidia-tesla-t4",
                     "--resources", "Transform=cpu:500m,memory:2Gi", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Trainer: cpu 16, memory 64Gi, 2 nvidia.com/gpu" in result.stdout
    spec_file, platform = yaml.safe_load_all((tmp_path / "spec.yaml").read_text())
    compiled = json_format.ParseDict(spec_file, pipeline_spec_pb2.PipelineSpec())
    assert container(compiled, "Trainer")["resources"] == kfp_sdk_resources("16", "64Gi", "nvidia.com/gpu", 2)
    assert container(compiled, "Transform")["resources"]["cpuLimit"] == 0.5
    # AlexNet's defaults for the steps not given: a GPU where its gradients are computed
    assert container(compiled, "AdversarialExamples")["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    selector = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["Trainer_executor"]["nodeSelector"]
    assert selector == {"labels": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}}

    vertex = cnnpipe("compile", "--data", data, "--class-names", ",".join(FASHION_MNIST.class_names), "--schema",
                     "fashion_mnist", "--pipeline-root", "gs://cnnpipe-test/root", "--image", IMAGE, "-o", "v.yaml",
                     "--target", "vertex", "--resources", "Trainer=gpu:1:nvidia-tesla-t4", cwd=tmp_path)
    assert vertex.returncode == 0, vertex.stderr
    compiled = json_format.ParseDict(next(yaml.safe_load_all((tmp_path / "v.yaml").read_text())),
                                     pipeline_spec_pb2.PipelineSpec())
    assert container(compiled, "Trainer")["resources"]["accelerator"]["type"] == "NVIDIA_TESLA_T4"


@pytest.mark.parametrize("given, error", [
    ("Trainr=cpu:8", "no step 'Trainr'; its steps are AdversarialExamples, AtomicPusher"),
    ("Trainer=cpu:eight", "cannot read 'cpu:eight'"),
    ("Trainer=memory:32GB", "cannot read 'memory:32GB'; give cpu:N"),
    ("Trainer", "expected STEP=cpu:N,memory:SIZE,gpu:N[:TYPE]"),
])
def test_resources_that_cannot_be_read_are_refused_before_anything_is_written(tmp_path, given, error):
    data = write_fashion_mnist_slice(str(tmp_path / "data"), 30, 10)
    result = cnnpipe("compile", "--data", data, "--class-names", ",".join(FASHION_MNIST.class_names), "--schema",
                     "fashion_mnist", "--pipeline-root", "gs://cnnpipe-test/root", "--image", IMAGE, "-o", "spec.yaml",
                     "--resources", given, cwd=tmp_path)
    assert result.returncode != 0
    assert error in result.stderr
    assert not (tmp_path / "spec.yaml").exists()


def test_a_span_window_kubeflow_cannot_resolve_is_refused_by_name(tmp_path):
    for span in (1, 2):
        write_fashion_mnist_slice(str(tmp_path / "data" / f"span-{span}"), 30, 10)
    config = PipelineConfig.from_options(data=str(tmp_path / "data"), class_names=FASHION_MNIST.class_names,
                            schema="fashion_mnist", span_window=2)
    with pytest.raises(CnnpipeError, match=r"SpanRangeStrategy.* compile with --span-window 1"):
        kubeflow_runner.compile_pipeline(config, "gs://cnnpipe-test/root", IMAGE, str(tmp_path / "spec.yaml"))
    assert not (tmp_path / "spec.yaml").exists()
    spec = kubeflow_runner.compile_pipeline(dataclasses.replace(config, span_window=1), "gs://cnnpipe-test/root",
                                            IMAGE, str(tmp_path / "spec.yaml"))
    assert "span-{SPAN}/train" in constant(spec, "ImageExampleGen", "input_config")


def test_without_a_baseline_there_is_no_served_model_step_and_no_change_threshold(tmp_path):
    config = PipelineConfig.from_options(data=write_fashion_mnist_slice(str(tmp_path / "data"), 30, 10),
                            class_names=FASHION_MNIST.class_names, schema="fashion_mnist", compare_with_baseline=False)
    spec = kubeflow_runner.compile_pipeline(config, "gs://cnnpipe-test/root", IMAGE, str(tmp_path / "spec.yaml"))
    assert set(exit_step.pipeline_tasks(spec)) == COMPONENTS
    assert "baseline_model" not in exit_step.pipeline_tasks(spec)["Evaluator"].inputs.artifacts
    assert run_default(spec, "Evaluator", "min_accuracy") == 0.85
    # no change threshold
    assert "max_accuracy_drop" not in exit_step.pipeline_tasks(spec)["Evaluator"].inputs.parameters
    assert "max_accuracy_drop" not in spec.root.input_definitions.parameters
    with pytest.raises(CnnpipeError, match="drop --no-baseline"):
        kubeflow_runner.build_pipeline(config.with_options(warm_start="latest"), "gs://cnnpipe-test/root")


def test_a_relative_output_directory_gives_the_local_pipeline_an_absolute_root(tmp_path, monkeypatch):
    """The artifact URIs ML Metadata records then name the same files from any directory."""
    monkeypatch.chdir(tmp_path)
    pipeline = local_runner.build_pipeline(PipelineConfig.from_options(output_dir="relative-out"))
    assert pipeline.pipeline_info.pipeline_root == str(tmp_path / "relative-out" / "pipeline")


def test_kubeflow_and_local_runners_build_the_same_dag(tmp_path):
    """Only where the pipeline runs differs: same components, inputs and properties but the schema's path.

    Every setting that has a flag gets a value other than its default, so a setting that one runner passes to
    `dag.create_pipeline` and the other forgets shows here.
    """
    settings = dict(
        data=FASHION_MNIST.path, data_format="idx", class_names=tuple("abcdefghij"), schema="fashion_mnist",
        eval_percent=20, validation_percent=15, model="resnet", input_shape=(32, 32, 1), normalization="standardize",
        epochs=3, patience=2,
        batch_size=16, learning_rate=1e-3, strategy="multi_worker", model_options={"width": 8}, translate=0.1,
        flip=False, warm_start=str(tmp_path / "model"), freeze_features=True, embedding_dim=32, instance_weight=0.5,
        seed=7,
        min_accuracy=0.6, max_accuracy_drop=0.01, compare_with_baseline=False,
        attacks=("fgsm", "apgd-dlr"), epsilons=(0.2, 0.3), pgd_steps=5, apgd_steps=7, tune=4, tune_minutes=3.0,
        robust_epsilon=0.2, min_fgsm_accuracy=0.1, min_pgd_accuracy=0.05, min_robust_accuracy=0.03,
        max_robust_accuracy_drop=0.02,
        adversarial="pgd", adversarial_epsilon=0.2, adversarial_steps=3,
        output_dir=str(tmp_path / "out"), serving_dir=str(tmp_path / "serving"), model_name="shoes",
        keep_versions=3, span_window=2, accept_drift=True, allow_duplicates=True, beam_args=("--direct_num_workers=2",),
        search=True, search_top_k=5, min_retrieval_precision=0.5, max_retrieval_precision_drop=0.02,
        min_instance_recall=0.3, catalog=FASHION_MNIST.path, notify_url="http://127.0.0.1:9/hook",
    )
    assert set(settings) == set(flags()), f"give the new settings {set(flags()) - set(settings)} a value here"
    config = PipelineConfig.from_options(**settings)
    # Search stays on (its default) so that the EmbeddingIndex's wiring is compared too; --no-search is below.
    assert all(config.options()[name] != PipelineConfig().options()[name] for name in settings if name != "search")
    local = local_runner.build_pipeline(config)
    kubeflow = kubeflow_runner.build_pipeline(config, "gs://cnnpipe-test/root")

    def wiring(pipeline) -> dict:
        return {
            component.id: (
                {key: value.default if isinstance(value, RuntimeParameter) else value  # what a run is given by default
                 for key, value in component.exec_properties.items() if key not in ("schema_file", "schema_source")},
                {key: (channel.type_name, getattr(channel, "producer_component_id", None),
                       getattr(channel, "output_key", None))
                 for key, channel in component.inputs.items()},
                sorted(node.id for node in component.upstream_nodes),
            )
            for component in pipeline.components
        }

    on_kubeflow = wiring(kubeflow)
    recorded = on_kubeflow.pop(run_record.ID)  # the Kubeflow run's record for its exit step: every artifact it reads
    assert on_kubeflow == wiring(local)
    assert set(recorded[1]) == set(run_record.RECORDED)
    assert recorded[1]["examples"][1:] == ("ImageExampleGen", "examples")  # the run's data, not the catalog
    assert kubeflow.beam_pipeline_args == local.beam_pipeline_args
    assert kubeflow.metadata_connection_config is None
    assert wiring(local)["EmbeddingIndex"][1]["catalog"][1:] == ("CatalogExampleGen", "examples")
    assert wiring(local)["Trainer"][1]["hyperparameters"][1:] == ("Tuner", "best_hyperparameters")
    without_search = config.with_options(search=False, min_retrieval_precision=0.0, max_retrieval_precision_drop=None,
                                         min_instance_recall=0.0,
                                         catalog=None)
    unindexed = wiring(local_runner.build_pipeline(without_search))
    unindexed_on_kubeflow = wiring(kubeflow_runner.build_pipeline(without_search, "gs://cnnpipe-test/root"))
    assert "indexed_model" not in unindexed_on_kubeflow.pop(run_record.ID)[1]
    assert unindexed_on_kubeflow == unindexed
    assert set(unindexed) == set(wiring(local)) - {"EmbeddingIndex", "CatalogExampleGen"}
    assert unindexed["Evaluator"][1]["model"][1:] == ("Trainer", "model")


def pin(requirement: str) -> tuple[str, str]:
    """("name", "version") of "Name==version", the name normalized as pip does (tf_keras is tf-keras)."""
    name, version = requirement.split("==")
    return re.sub(r"[-_.]+", "-", name).lower(), version


def test_dockerfile_installs_the_pins_of_setup_py_and_constraints():
    dockerfile = DOCKERFILE.read_text()
    constraints = dict(pin(line) for line in (REPO / "constraints.txt").read_text().split())
    setup_pins = [pin(found) for found in re.findall(r'"([A-Za-z0-9_.-]+==[^"]+)"', (REPO / "setup.py").read_text())]
    assert ("kfp", constraints["kfp"]) in setup_pins
    for name, version in setup_pins:
        assert constraints.get(name) == version, (
            f"setup.py pins {name}=={version}, constraints.txt {constraints.get(name)}"
        )
    setup_sh = (REPO / "scripts" / "setup.sh").read_text()
    pip_pin = re.search(r"pip==([\d.]+)", setup_sh).group(1)
    for name, version in map(pin, re.findall(r"\b[A-Za-z0-9_.-]+==[\w.]+", dockerfile)):
        assert version == (pip_pin if name == "pip" else constraints.get(name)), f"Dockerfile pins {name}=={version}"
    assert "pip install --no-cache-dir --ignore-requires-python -r constraints.txt" in dockerfile
    python = re.search(r"sys.version_info\[:2\] != \((\d+), (\d+)\)", setup_sh).groups()
    assert re.search(rf"^FROM python:{python[0]}\.{python[1]}[.-]", dockerfile, re.M)
    beam = re.search(r"^FROM apache/beam_python(\d)\.(\d+)_sdk:([\d.]+)", dockerfile, re.M).groups()
    assert beam == (*python, constraints["apache-beam"])
    assert re.search(rf"^WORKDIR {kubeflow_runner.IMAGE_PROJECT_DIR}$", dockerfile, re.M)
    debian_package = re.search(r"apt-get install (\S+)", FASHION_MNIST.install_hint).group(1)
    assert re.search(rf"apt-get install .*\b{debian_package}\b", dockerfile)


def test_submit_to_an_unreachable_host_fails_in_one_line(capsys):
    host = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens: the connection is refused
    assert cli.main(["submit", "--host", host, "--package", str(COMMITTED_SPEC)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"cnnpipe: cannot reach Kubeflow Pipelines at {host} ([Errno 111] Connection refused)")
    assert error.count("\n") == 1


def test_schedule_checks_the_cron_and_the_host(capsys):
    assert cli.main(["schedule", "--host", "http://127.0.0.1:1", "--package", str(COMMITTED_SPEC),
                     "--cron", "0 3 * * *"]) == 1
    assert "--cron '0 3 * * *': Kubeflow Pipelines wants six fields" in capsys.readouterr().err
    host = f"http://127.0.0.1:{free_ports(1)[0]}"
    assert cli.main(["schedule", "--host", host, "--package", str(COMMITTED_SPEC), "--cron", "0 0 3 * * *"]) == 1
    assert capsys.readouterr().err.startswith(f"cnnpipe: cannot reach Kubeflow Pipelines at {host}")


@pytest.mark.parametrize("given, error", [
    ("epoch=40", "has no parameter 'epoch'; give NAME=VALUE with one of: data (default /usr/share/datasets/"),
    ("epochs=forty", "--param 'epochs=forty': epochs takes an integer, e.g. epochs=30."),
    ("min_accuracy", "has no parameter 'min_accuracy'"),
])
def test_a_parameter_the_spec_lacks_or_mistypes_is_refused_before_anything_is_sent(capsys, given, error):
    """Nothing listens at the host: the error is about the parameter, so nothing was sent."""
    for command in (["submit"], ["schedule", "--cron", "0 0 3 * * *"]):
        assert cli.main([*command, "--host", f"http://127.0.0.1:{free_ports(1)[0]}", "--package", str(COMMITTED_SPEC),
                         "--param", "epochs=40", "--param", given]) == 1
        assert error in capsys.readouterr().err


def test_submit_and_schedule_send_the_parameters_given_to_the_kfp_api(capsys):
    """Through kfp's Client to a stand-in of KFP's API server: the run and the recurring run carry the spec and the
    parameters given, typed as the spec types them."""
    port = free_ports(1)[0]
    host = f"http://127.0.0.1:{port}"
    with kfp_api(port) as requests:
        assert cli.main(["submit", "--host", host, "--package", str(COMMITTED_SPEC), "--param", "epochs=40",
                         "--param", "min_accuracy=0.9", "--param", "data=gs://bucket/images"]) == 0
        assert cli.main(["schedule", "--host", host, "--package", str(COMMITTED_SPEC), "--cron", "0 0 3 * * *",
                         "--param", "keep_versions=5"]) == 0
    assert "run run-1 of" in capsys.readouterr().out
    created = {path: body for method, path, body in requests if method == "POST"}
    run, recurring = created["/apis/v2beta1/runs"], created["/apis/v2beta1/recurringruns"]
    assert run["runtime_config"]["parameters"] == {"epochs": 40, "min_accuracy": 0.9, "data": "gs://bucket/images"}
    assert recurring["runtime_config"]["parameters"] == {"keep_versions": 5}
    assert run["pipeline_spec"]["root"]["inputDefinitions"]["parameters"]["epochs"]["defaultValue"] == 30


def test_the_spec_names_its_parameters_with_their_compiled_defaults(spec):
    parameters = kubeflow_runner.spec_parameters(str(COMMITTED_SPEC))
    assert parameters == {
        "data": (str, FASHION_MNIST.path), "epochs": (int, 30), "learning_rate": (float, 0.002),
        "min_accuracy": (float, 0.85), "max_accuracy_drop": (float, 0.0), "min_fgsm_accuracy": (float, 0.0),
        "min_pgd_accuracy": (float, 0.0), "min_robust_accuracy": (float, 0.0), "min_retrieval_precision": (float, 0.0),
        "min_instance_recall": (float, 0.0),
        "keep_versions": (int, 0)}
    assert exit_step.pipeline_tasks(spec)["Trainer"].inputs.parameters["epochs"].component_input_parameter == "epochs"


def test_submit_without_a_compiled_spec_says_how_to_make_one(tmp_path, capsys):
    missing = tmp_path / "pipeline.yaml"
    assert cli.main(["submit", "--host", "http://127.0.0.1:1", "--package", str(missing)]) == 1
    assert capsys.readouterr().err == (
        f"cnnpipe: {missing}: no such pipeline spec; write it with `cnnpipe compile` (or pass --package).\n"
    )


def test_without_kfp_submit_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kfp", None)  # `import kfp` raises ImportError, as without the package
    assert cli.main(["submit", "--host", "http://127.0.0.1:1", "--package", str(COMMITTED_SPEC)]) == 1
    assert capsys.readouterr().err == (
        "cnnpipe: Kubeflow support needs the Kubeflow Pipelines SDK (kfp); install it with: "
        f"{kubeflow_runner.INSTALL_HINT}\n"
    )
