"""What a finished run did, read back from ML Metadata and the Evaluator's output."""

import dataclasses
from typing import Optional

import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

_OUTPUT = metadata_store_pb2.Event.OUTPUT
ACCURACY = "sparse_categorical_accuracy"
LOSS = "sparse_categorical_crossentropy"


@dataclasses.dataclass
class RunSummary:
    """The newest run of a pipeline: its evaluation, blessing and push."""

    run_id: str
    accuracy: Optional[float] = None
    loss: Optional[float] = None
    per_class_accuracy: dict[str, float] = dataclasses.field(default_factory=dict)
    baseline_accuracy: Optional[float] = None
    blessed: Optional[bool] = None
    failures: list[str] = dataclasses.field(default_factory=list)
    pushed_to: Optional[str] = None

    def format(self) -> str:
        if self.accuracy is None:
            return f"Run {self.run_id}: no evaluation (the run stopped before the Evaluator)."
        lines = [f"Eval accuracy {self.accuracy:.2%} (loss {self.loss:.4f})"]
        if self.baseline_accuracy is not None:
            lines[0] += f"; last blessed model {self.baseline_accuracy:.2%}"
        lines += ["Per class:"] + [f"  {name:<14} {value:.2%}" for name, value in self.per_class_accuracy.items()]
        if self.blessed:
            lines.append("Blessed: yes, it passed every threshold.")
        else:
            lines.append("Blessed: no. " + " ".join(self.failures))
        lines.append(f"Pushed to {self.pushed_to}" if self.pushed_to else "Not pushed.")
        return "\n".join(lines)


def store(metadata_file: str) -> metadata_store.MetadataStore:
    """The ML Metadata store of a local run (sqlite)."""
    return metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_file))


def _newest_run(mlmd: metadata_store.MetadataStore, pipeline_name: str) -> metadata_store_pb2.Context:
    pipeline = mlmd.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        raise ValueError(f"no run of pipeline '{pipeline_name}' in this metadata store")
    newest = max(mlmd.get_executions_by_context(pipeline.id), key=lambda execution: execution.id)
    return next(c for c in mlmd.get_contexts_by_execution(newest.id) if c.type == "pipeline_run")


def run_outputs(metadata_file: str, pipeline_name: str) -> tuple[str, dict[str, metadata_store_pb2.Artifact]]:
    """The newest run's id and its output artifacts by output key ("examples", "model", ...)."""
    mlmd = store(metadata_file)
    run = _newest_run(mlmd, pipeline_name)
    executions = [e.id for e in mlmd.get_executions_by_context(run.id)]
    keys = {e.artifact_id: e.path.steps[0].key for e in mlmd.get_events_by_execution_ids(executions) if e.type == _OUTPUT}
    return run.name, {keys[a.id]: a for a in mlmd.get_artifacts_by_id(list(keys))}


def _accuracy_by_slice(evaluation_uri: str) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Candidate metrics by slice ('' is overall) and the baseline's overall metrics."""
    candidate: dict[str, dict[str, float]] = {}
    baseline: dict[str, float] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        keys = metrics.slice_key.single_slice_keys
        slice_name = keys[0].bytes_value.decode() if keys else ""
        for entry in metrics.metric_keys_and_values:
            if entry.key.is_diff:
                continue
            target = baseline if entry.key.model_name == "baseline" else candidate.setdefault(slice_name, {})
            if entry.key.model_name != "baseline" or not slice_name:
                target[entry.key.name] = entry.value.double_value.value
    return candidate, baseline


def candidate_accuracy(evaluation_uri: str) -> Optional[float]:
    """The evaluated model's overall accuracy, as the Evaluator measured it."""
    return _accuracy_by_slice(evaluation_uri)[0].get("", {}).get(ACCURACY)


def _failure(failure) -> str:
    """One failed threshold in words."""
    key, threshold = failure.metric_key, failure.metric_threshold
    value = failure.metric_value.double_value.value
    if key.is_diff:
        allowed = -threshold.change_threshold.absolute.value
        return f"{key.name} is {-value:.4f} below the last blessed model's (allowed: {max(allowed, 0):.4f})."
    if threshold.value_threshold.HasField("lower_bound"):
        return f"{key.name} {value:.4f} is below the lower bound {threshold.value_threshold.lower_bound.value:.4f}."
    return f"{key.name} {value:.4f} failed its threshold. {failure.message}".strip()


def _failures(evaluation_uri: str) -> list[str]:
    result = tfma.load_validation_result(evaluation_uri)
    return [_failure(failure) for per_slice in result.metric_validations_per_slice for failure in per_slice.failures]


def summarize(metadata_file: str, pipeline_name: str) -> RunSummary:
    """The summary of the newest run of `pipeline_name`."""
    run_id, outputs = run_outputs(metadata_file, pipeline_name)
    summary = RunSummary(run_id)
    evaluation = outputs.get("evaluation")
    if evaluation is None:
        return summary
    candidate, baseline = _accuracy_by_slice(evaluation.uri)
    overall = candidate.pop("", {})
    summary.accuracy, summary.loss = overall.get(ACCURACY), overall.get(LOSS)
    summary.per_class_accuracy = {name: values[ACCURACY] for name, values in sorted(candidate.items())}
    summary.baseline_accuracy = baseline.get(ACCURACY)
    blessing = outputs.get("blessing")
    summary.blessed = bool(blessing and blessing.custom_properties["blessed"].int_value)
    summary.failures = _failures(evaluation.uri)
    pushed = outputs.get("pushed_model")
    if pushed is not None and pushed.custom_properties["pushed"].int_value:
        summary.pushed_to = pushed.custom_properties["pushed_destination"].string_value
    return summary

