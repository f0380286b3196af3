"""The compiled Kubeflow spec runs, not only compiles: `cnnpipe compile` on a small real Fashion-MNIST slice, every
task then run as a KFP v2 launcher runs it (tests/kfp_launcher.py) under the open-source Kubeflow Pipelines and the
Vertex AI Pipelines contracts, to a pushed model version that answers a real PNG."""

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
import yaml
from kfp.pipeline_spec import pipeline_spec_pb2

import kfp_launcher
from conftest import cnnpipe, encode, fashion_mnist, free_ports, headless_chromium, versions, write_fashion_mnist_slice
from http_sink import Request, http_sink
from cnnpipe.components.blessing.evaluation_results import ACCURACY, clean_slice, metrics_by_slice
from cnnpipe.core.names import BASELINE
from cnnpipe.pipeline.datasets import FASHION_MNIST
from cnnpipe.runners import exit_step, kubeflow_runner
from cnnpipe.schemas import SCHEMA_DIR

TRAIN, TEST = 200, 100
MODEL = "fashion"
SERVED_VERSION = "1"  # the suite's pushed model, served before the "vertex" run
IMPORT_ROOT = str(SCHEMA_DIR.parent.parent)  # where this process imports cnnpipe from: the tasks import the same code
IN_MEMORY = ("--beam-arg=--direct_running_mode=in_memory", "--beam-arg=--direct_num_workers=1")
# Per contract, the spec schema that makes TFX's entrypoint read what the contract alone sets (kfp_launcher's
# docstring): parameterValues given an inputs spec (2.1), the typed `inputs.parameters` without one (2.0). The KFP run
# keeps the Beam args `compile` writes (one DirectRunner worker process per core); the Vertex run's Beam runs in
# memory, a minute faster: the contracts differ in what the launcher supplies, not in Beam. The KFP run tunes first
# (TFX's Tuner, two trials in a few seconds). Each is given its own pipeline parameters (the others at the defaults
# compiled in): the Vertex run two epochs, and to keep one version.
CONTRACTS = {"kfp": ("2.1", ("--tune", "2", "--tune-minutes", "0.1"), ()),
             "vertex": ("2.0", IN_MEMORY, ("epochs=2", "keep_versions=1"))}
OTHER_TRAIN, OTHER_TEST = 120, 60  # the data a second run of the KFP spec is given
HOOK = "/hooks/cnnpipe"  # the webhook's path on a local HTTP sink


@dataclasses.dataclass(frozen=True)
class Launched:
    contract: str
    spec: pipeline_spec_pb2.PipelineSpec
    runs: dict[str, kfp_launcher.TaskRun]
    serving: Path
    package: Path
    parameters: dict[str, Any]
    notify_port: int  # the webhook's, given to `compile` as --notify-url
    posted: list[Request]  # what the webhook received during the run

    def log(self, task: str) -> str:
        """What the task's executor printed."""
        return Path(self.runs[task].executor_input.outputs.output_file).with_name("executor.out").read_text()

    def written(self, output: str) -> Path:
        """The exit step's output artifact `output` (outcome or report), a file."""
        return Path(self.runs[exit_step.ID].outputs[output].uri)

    def outcome(self) -> dict:
        return json.loads(self.written(exit_step.OUTCOME).read_text())

    def run_again(self, parameters: dict[str, Any], contract: str = "") -> "Launched":
        """The same spec run again, under `contract` (default the same), given `parameters`; a failed run's tasks are
        those that ran."""
        contract = contract or self.contract
        with http_sink(self.notify_port) as posted:
            try:
                runs = kfp_launcher.run_pipeline(str(self.package), contract, pythonpath=[IMPORT_ROOT],
                                                 parameters=parameters)
            except kfp_launcher.TaskFailed as failure:
                runs = failure.runs
        return dataclasses.replace(self, contract=contract, runs=runs, parameters=parameters, posted=posted)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A real Fashion-MNIST slice and the curated schema outside schemas/, so that `compile` keeps its local path
    (it writes a curated schema's path in the image, /opt/cnnpipe/schemas/, which this machine lacks)."""
    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist_slice(str(root / "fashion"), TRAIN, TEST)
    shutil.copy(SCHEMA_DIR / "fashion_mnist.pbtxt", root / "schema.pbtxt")
    return root


def compile_spec(directory: Path, data: Path, spec_version: str, extra_args: tuple[str, ...]) -> Path:
    """`cnnpipe compile` with the default steps, the served model as the baseline included: one quick epoch, one
    attack at one ε, and a low bar to bless (also against a better served model)."""
    result = cnnpipe("compile", "--pipeline-root", str(directory / "root"), "--image", "local/cnnpipe:test",
                     "-o", "pipeline.yaml", "--spec-version", spec_version, "--data", str(data / "fashion"),
                     "--schema", str(data / "schema.pbtxt"), "--class-names", ",".join(FASHION_MNIST.class_names),
                     "--model-name", MODEL, "--serving-dir", str(directory / "serving"), "--epochs", "1",
                     "--batch-size", "32", "--min-accuracy", "0.05", "--max-accuracy-drop", "1", "--attacks", "fgsm",
                     "--epsilons", "0.1", *extra_args, cwd=directory)
    assert result.returncode == 0, result.stderr
    return directory / "pipeline.yaml"


def launch(request, data, tmp_path_factory) -> Launched:
    """The pipeline compiled for the contract `request.param` and every task of it run under the contract. Under
    "kfp" nothing is served yet; under "vertex" the suite's pushed model is, and is the baseline."""
    directory = tmp_path_factory.mktemp(request.param)
    serving = directory / "serving" / MODEL
    if request.param == "vertex":
        served = request.getfixturevalue("pushed_run").serving_base
        shutil.copytree(Path(served) / versions(served)[-1], serving / SERVED_VERSION)
    spec_version, compile_args, given = CONTRACTS[request.param]
    (port,) = free_ports(1)
    spec = compile_spec(directory, data, spec_version, (*compile_args, "--notify-url", f"http://127.0.0.1:{port}{HOOK}"))
    parameters = kubeflow_runner.checked_parameters(str(spec), given)  # as `cnnpipe submit --param` checks them
    with http_sink(port) as posted:
        runs = kfp_launcher.run_pipeline(str(spec), request.param, pythonpath=[IMPORT_ROOT], parameters=parameters)
    return Launched(request.param, kfp_launcher.load_spec(str(spec)), runs, serving, spec, parameters, port, posted)


@pytest.fixture(scope="module", params=["kfp"])
def launched(request, data, tmp_path_factory) -> Launched:
    """The run under the "kfp" contract. The "vertex" contract's run of the same tests is test_kubeflow_run_vertex.py's:
    pytest-xdist keeps a module on one worker, so the two runs (minutes each) go on beside each other."""
    return launch(request, data, tmp_path_factory)


def test_every_task_runs_and_the_blessing_names_the_model_it_blessed(launched):
    """Each task exited 0 (the launcher raises otherwise); TFX's entrypoint turned the Evaluator's model id back
    into the name the launcher gave the candidate, EmbeddingIndex's model."""
    assert set(launched.runs) == set(kfp_launcher.tasks_of(launched.spec)) - {exit_step.TFX_DAG}
    assert {"ImageExampleGen", "Transform", "Trainer", "EmbeddingIndex", "AdversarialExamples", "Evaluator",
            "AtomicPusher"} <= set(launched.runs)
    blessing = launched.runs["Evaluator"].outputs["blessing"].metadata.fields
    assert blessing["blessed"].number_value == 1
    assert blessing["current_model_id"].string_value == launched.runs["EmbeddingIndex"].outputs["indexed_model"].name


@pytest.fixture(scope="module")
def relaunched(launched, tmp_path_factory) -> Launched:
    """The KFP run's spec run again under "kfp", given other data, two epochs and a bar no candidate reaches."""
    other = write_fashion_mnist_slice(str(tmp_path_factory.mktemp("other") / "fashion"), OTHER_TRAIN, OTHER_TEST)
    return launched.run_again(kubeflow_runner.checked_parameters(str(launched.package),
                                                                 (f"data={other}", "epochs=2", "min_accuracy=0.99")))


@pytest.fixture(scope="module", params=["kfp", "vertex"])
def failed(request, launched, tmp_path_factory) -> Launched:
    """The KFP run's spec (schema 2.1, which both take) run again under each contract, given data that is not there:
    its first step fails."""
    missing = str(tmp_path_factory.mktemp("empty") / "missing")
    return launched.run_again({**launched.parameters, "data": missing}, request.param)


def eval_examples(run: Launched) -> int:
    files = tf.io.gfile.glob(str(Path(run.runs["ImageExampleGen"].outputs["examples"].uri, "Split-eval", "*")))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def test_the_run_parameters_take_effect(launched):
    """Epochs reach the Trainer (1 compiled, 2 given under "vertex"); under "vertex" keep_versions=1 leaves the new
    version alone, the served one removed (under "kfp" nothing was served)."""
    assert f"for up to {launched.parameters.get('epochs', 1)} epochs" in launched.log("Trainer")
    assert eval_examples(launched) == TEST
    pushed = launched.runs["AtomicPusher"].outputs["pushed_model"].metadata.fields["pushed_version"].string_value
    assert versions(launched.serving) == [pushed]


def test_one_spec_runs_again_with_other_parameters(launched, relaunched):
    """The same spec, given other data, epochs and bar: ImageExampleGen reads the other images, the Trainer trains
    two epochs, and the candidate is not blessed under min_accuracy 0.99, so nothing is pushed."""
    assert relaunched.runs["ImageExampleGen"].executor_input.inputs.parameter_values["input_base"].string_value == \
        relaunched.parameters["data"]
    assert eval_examples(relaunched) == OTHER_TEST
    assert "for up to 2 epochs" in relaunched.log("Trainer")
    assert relaunched.runs["Evaluator"].outputs["blessing"].metadata.fields["blessed"].number_value == 0
    assert relaunched.runs["AtomicPusher"].outputs["pushed_model"].metadata.fields["pushed"].number_value == 0
    assert len(versions(launched.serving)) == 1  # the first run's push only
    ended = relaunched.outcome()
    assert ended["status"] == "not blessed" and ended["version"] is None
    assert any("below the lower bound 0.9900" in failure for failure in ended["failures"]), ended["failures"]
    assert relaunched.posted == [("POST", HOOK, ended)]


def test_the_exit_step_tells_what_the_run_did(launched):
    """After the steps' sub-DAG, the exit step wrote outcome.json as an output artifact in the run's directory under
    the pipeline root, saying what the steps' own outputs say, and posted the same JSON to the webhook."""
    ended = launched.outcome()
    pushed = launched.runs["AtomicPusher"].outputs["pushed_model"].metadata.fields["pushed_version"].string_value
    assert (ended["status"], ended["version"]) == ("pushed", pushed)
    measured = metrics_by_slice(launched.runs["Evaluator"].outputs["evaluation"].uri)
    assert ended["accuracy"] == pytest.approx(measured[("", clean_slice(measured))][ACCURACY], abs=1e-4)
    assert ended["robust_accuracy"]["epsilon"] == pytest.approx(0.1)
    assert ended["precision_at_10"] is not None and ended["failures"] == []
    assert launched.written(exit_step.OUTCOME).is_relative_to(launched.spec.default_pipeline_root)
    assert launched.posted == [("POST", HOOK, ended)]


def test_the_exit_steps_report_opens_in_a_browser(launched, tmp_path):
    """The report artifact, typed system.HTML for KFP's UI, is the run's page: its verdict names the pushed version."""
    component = launched.spec.components[launched.spec.root.dag.tasks[exit_step.ID].component_ref.name]
    assert component.output_definitions.artifacts[exit_step.REPORT].artifact_type.schema_title == "system.HTML"
    page = tmp_path / "report.html"  # as KFP's UI serves the artifact: as HTML (a file's name tells Chromium)
    shutil.copy(launched.written(exit_step.REPORT), page)
    with headless_chromium(tmp_path / "profile") as browser:
        browser.get(page.as_uri())
        verdict = browser.find_element("tag name", "b").text
    assert verdict == f"Blessed and pushed as version {launched.outcome()['version']}."


def test_a_failed_run_has_an_outcome_too(failed):
    """ImageExampleGen stopped, naming the missing files, so no step after it ran, yet the exit step did: outcome.json
    and the webhook say the run failed, and, where the orchestrator names it (Vertex AI), in which step."""
    assert {"ImageExampleGen", "StatisticsGen", "RunRecord"}.isdisjoint(failed.runs) and exit_step.ID in failed.runs
    ended = failed.outcome()
    assert ended["status"] == "failed" and ended["version"] is None
    assert ended["failed_step"] == {"kfp": None, "vertex": "ImageExampleGen"}[failed.contract]
    assert failed.posted == [("POST", HOOK, ended)]
    assert "Stopped by an error" in failed.written(exit_step.REPORT).read_text()


def test_the_tuners_best_hyperparameters_reach_the_trainer(launched):
    """The KFP run's Tuner task searched (its trials scored on validation) and handed its best values to the
    Trainer task, as KFP passes artifacts."""
    best = launched.runs["Tuner"].outputs["best_hyperparameters"]
    values = json.loads(Path(best.uri, "best_hyperparameters.txt").read_text())["values"]
    assert {"learning_rate", "width", "dropout"} == set(values)
    assert launched.runs["Trainer"].executor_input.inputs.artifacts["hyperparameters"].artifacts[0].uri == best.uri


def test_each_contract_takes_its_own_path_into_the_executors(launched):
    """kfp: parameterValues, read as the 2.1 spec's inputs spec tells TFX, and no lifecycle hook; vertex: the typed
    `inputs.parameters` TFX reads from a 2.0 spec, and ExampleGen's pre-cache check (its driver) first."""
    executors = kfp_launcher.deployment(launched.spec)
    for task, run in launched.runs.items():
        args = kfp_launcher.executor_of(launched.spec, executors, task).container.args
        if task != exit_step.ID:  # TFX's entrypoint; the exit step reads its ExecutorInput itself, as it is
            assert ("--json_serialized_inputs_spec_args" in args) == (launched.contract == "kfp"), task
        assert bool(run.executor_input.inputs.parameters) == (
            launched.contract == "vertex" and bool(run.executor_input.inputs.parameter_values)), task
    example_gen = {"kfp": ("executor",), "vertex": ("preCacheCheck", "executor")}[launched.contract]
    assert launched.runs["ImageExampleGen"].steps == example_gen


def test_the_baseline_is_the_model_being_served(launched):
    """ServedModel, an ordinary container step, finds the served version (none under "kfp") and the Evaluator
    measures it beside the candidate."""
    baseline = launched.runs["ServedModel"].outputs["baseline"].metadata.fields
    served = {"kfp": 0, "vertex": int(SERVED_VERSION)}[launched.contract]
    assert int(baseline["served_version"].number_value) == served
    measured = metrics_by_slice(launched.runs["Evaluator"].outputs["evaluation"].uri)
    assert {model for model, _ in measured} == ({"", BASELINE} if served else {""})  # "": the candidate


def test_the_pushed_version_answers_a_real_png(launched):
    version = versions(launched.serving)[-1]
    assert version != SERVED_VERSION
    pushed = launched.runs["AtomicPusher"].outputs["pushed_model"].metadata.fields
    assert pushed["pushed_destination"].string_value == str(launched.serving / version)
    image = fashion_mnist("t10k", TEST + 1)[0][-1]  # a test image the pipeline has not seen
    signature = tf.saved_model.load(str(launched.serving / version)).signatures["predict_image"]
    outputs = signature(images=tf.constant([encode(image)]))
    probabilities = outputs["probabilities"].numpy()
    assert probabilities.shape == (1, len(FASHION_MNIST.class_names))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert outputs["class_names"].numpy()[0].decode() in FASHION_MNIST.class_names


def one_task_spec(path: Path, executor: dict, schema_version: str = "2.1.0") -> str:
    """A spec of one task, `only`, whose executor is `executor`."""
    spec = {"pipelineInfo": {"name": "one-task"}, "schemaVersion": schema_version,
            "components": {"comp-only": {"executorLabel": "exec-only"}},
            "deploymentSpec": {"executors": {"exec-only": executor}},
            "root": {"dag": {"tasks": {"only": {"taskInfo": {"name": "only"}, "componentRef": {"name": "comp-only"}}}}}}
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.mark.parametrize("kind, executor", [
    ("importer", {"importer": {"artifactUri": {"constant": "gs://bucket/model"},
                               "typeSchema": {"schemaTitle": "tfx.Model"}}}),
    ("resolver", {"resolver": {"outputArtifactQueries": {"model": {"filter": 'schema_title="tfx.Model"'}}}}),
])
def test_an_executor_the_launcher_cannot_run_is_refused_by_task_before_anything_runs(tmp_path, kind, executor):
    spec = one_task_spec(tmp_path / "spec.yaml", executor)
    with pytest.raises(kfp_launcher.LaunchError, match=f"task 'only' has a {kind} executor"):
        kfp_launcher.run_pipeline(spec, "vertex", pipeline_root=str(tmp_path / "root"))
    assert not (tmp_path / "root").exists()


def test_the_kfp_contract_refuses_the_schema_its_api_server_refuses(tmp_path):
    spec = one_task_spec(tmp_path / "spec.yaml", {"container": {"image": "python", "command": ["python"]}}, "2.0.0")
    with pytest.raises(kfp_launcher.LaunchError, match="takes pipeline spec schema 2.1.0, not 2.0.0"):
        kfp_launcher.run_pipeline(spec, "kfp", pipeline_root=str(tmp_path / "root"))


def test_a_failing_task_is_named_with_its_exit_code_and_stderr(tmp_path):
    """The image's `python` runs as this interpreter, its placeholders resolved; its failure ends the run."""
    failing = ["python", "-c", "import sys; sys.exit('cannot read {{$.outputs.output_file}}')"]
    spec = one_task_spec(tmp_path / "spec.yaml", {"container": {"image": "python", "command": failing}})
    with pytest.raises(kfp_launcher.LaunchError, match=r"'only' \(executor, kfp contract\) exited with 1") as error:
        kfp_launcher.run_pipeline(spec, "kfp", pipeline_root=str(tmp_path / "root"))
    assert f"cannot read {tmp_path / 'root'}" in str(error.value) and "output_metadata.json" in str(error.value)
