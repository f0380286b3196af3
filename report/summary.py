"""What a finished run did, read back from ML Metadata and the Evaluator's output."""

import dataclasses
import json
import os
from typing import Optional

import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tensorflow_data_validation.utils import anomalies_util
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from cnnpipe.components.embedding_index import METRICS_FILE as RETRIEVAL_FILE, TIE, retrieval_failures
from cnnpipe.components.ingestion.executor import SKIPPED_FILES
from cnnpipe.components.blessing.evaluation_results import (ACCURACY, LOSS, Metrics, ServedBound, Slice, clean_slice,
                                                   metrics_by_slice, served_bounds, slice_columns)
from cnnpipe.components.validation_gate import ACCEPTED, DRIFT_FILE, DRIFTED, DUPLICATES, MEASURES, class_counts
from cnnpipe.core import features
from cnnpipe.core.names import BASELINE, EVAL, NO_ATTACK, TRAIN, VALIDATION
from cnnpipe.models import best_epoch, collapse_check
from cnnpipe.models.class_names import read_class_names
from cnnpipe.models.training_config import tuned_line
from cnnpipe.pipeline.metadata import run_outputs
from cnnpipe.retrieval.rephotographs import PROTOCOL

TUNER_RESULTS_FILE = "tuner_results.json"  # TFX's Tuner's, in its tuner_results artifact

@dataclasses.dataclass(frozen=True)
class RobustnessPoint:
    """Accuracy under one attack at one ε (attack "none", ε 0: clean) of the candidate and the baseline."""

    attack: str
    epsilon: float
    candidate: float
    baseline: Optional[float] = None


@dataclasses.dataclass
class RunSummary:
    """The newest run of a pipeline: its evaluation, blessing and push."""

    run_id: str
    accuracy: Optional[float] = None  # on the clean eval images
    loss: Optional[float] = None
    per_class_accuracy: dict[str, float] = dataclasses.field(default_factory=dict)
    unevaluated_classes: list[str] = dataclasses.field(default_factory=list)  # no eval images: no accuracy
    baseline_accuracy: Optional[float] = None
    robustness: list[RobustnessPoint] = dataclasses.field(default_factory=list)
    blessed: Optional[bool] = None
    failures: list[str] = dataclasses.field(default_factory=list)
    push_check_failure: Optional[str] = None  # why the push check refused a blessed model
    pushed_to: Optional[str] = None
    retrieval: dict = dataclasses.field(default_factory=dict)  # EmbeddingIndex's figures (retrieval.json)
    collapse_check: dict = dataclasses.field(default_factory=dict)  # adversarial training's (models/collapse_check)
    best_epoch: dict = dataclasses.field(default_factory=dict)  # the epoch the Trainer kept (models/best_epoch)
    trials: list[dict] = dataclasses.field(default_factory=list)  # the Tuner's completed trials, best first
    examples: dict[str, int] = dataclasses.field(default_factory=dict)  # split -> examples ingested
    skipped_files: list[str] = dataclasses.field(default_factory=list)  # hidden and OS files ingestion skipped
    drift: Optional[str] = None  # the drift check against the served model's training data, in words
    duplicates: Optional[str] = None  # images in two splits or under two classes, allowed by --allow-duplicates
    stopped_by: Optional[str] = None  # the error that stopped the run before its end (set by the CLI)

    def format(self) -> str:
        if self.accuracy is None:
            return f"Run {self.run_id}: no evaluation (the run stopped before the Evaluator)."
        lines = [f"Eval accuracy {self.accuracy:.2%} (loss {self.loss:.4f})"]
        if self.baseline_accuracy is not None:
            lines[0] += f"; served model {self.baseline_accuracy:.2%}"
        if self.best_epoch:
            lines.insert(0, best_epoch.kept_line(self.best_epoch))
        if self.trials:
            lines.insert(0, tuner_line(self.trials, self.best_epoch.get("monitor", "")))
        if self.skipped_files:
            lines.insert(0, skipped_line(self.skipped_files))
        if self.examples:
            lines.insert(0, "Examples: " + ", ".join(f"{split} {count:,}" for split, count in self.examples.items()))
        if self.drift:
            lines.insert(0, self.drift)
        if self.duplicates:
            lines.insert(0, f"Duplicates allowed (--allow-duplicates): {self.duplicates}.")
        per_class_search = self.retrieval.get("per_class", {})
        lines += [f"{'Per class:':<16} {'accuracy':>8}" + ("  search P@10" if per_class_search else "")]
        lines += [f"  {name:<14} {value:>8.2%}" + (f"  {per_class_search[name]['precision_at_10']:>11.3f}"
                                                   if name in per_class_search else "")
                  for name, value in self.per_class_accuracy.items()]
        lines += [f"  {name:<14} not evaluated: the eval split has no images of it"
                  for name in self.unevaluated_classes]
        if self.unevaluated_classes:
            lines.append(f"Warning: {len(self.unevaluated_classes)} class(es) were not evaluated; add eval images of "
                         "them (or raise --eval-percent) so that their accuracy counts.")
        if self.collapse_check:
            lines.append(collapse_line(self.collapse_check))
        if self.robustness:
            lines += ["Robustness (accuracy on eval images attacked with each model's own gradients):",
                      *("  " + line for line in robustness_table(self.robustness).splitlines())]
        if self.retrieval:
            lines += retrieval_lines(self.retrieval)
        if self.blessed:
            lines.append("Blessed: yes, it passed every threshold.")
        else:
            lines.append("Blessed: no. " + " ".join(self.failures))
        if self.push_check_failure:
            lines.append(f"Push check: {self.push_check_failure}")
        lines.append(f"Pushed to {self.pushed_to}" if self.pushed_to else "Not pushed.")
        return "\n".join(lines)


def skipped_line(paths: list[str], shown: int = 3) -> str:
    """The files ingestion skipped, counted, the first few named."""
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return (f"Skipped {len(paths)} hidden or OS file(s) beside the images (Thumbs.db, desktop.ini, .DS_Store, ._*, "
            f"__MACOSX/): {', '.join(paths[:shown])}{more}")


def tuner_line(trials: list[dict], monitor: str) -> str:
    """The Tuner's outcome in words: its trials, and the best one's score and values."""
    best = trials[0]
    values = {name: value for name, value in best.items() if name not in ("trial_id", "score")}
    score = best_epoch.SCORE_NAMES.get(monitor, "score")
    return (f"Tuned over {len(trials)} trial(s): the best, {score} on the validation split {best['score']:.4f}, has "
            f"{tuned_line(values)}")


def read_trials(tuner_results: metadata_store_pb2.Artifact) -> list[dict]:
    """The Tuner's completed trials (TFX's tuner_results.json), best first."""
    with open(os.path.join(tuner_results.uri, TUNER_RESULTS_FILE), encoding="utf-8") as f:
        return json.load(f)


def drift_measurements(drift: metadata_store_pb2.Artifact) -> list[tuple[str, str, float, float]]:
    """ValidationGate's drift measurements: (feature, measure, distance, threshold) each; none without a check."""
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.set_mlmd_artifact(drift)
    if TRAIN not in artifact_utils.decode_split_names(artifact.split_names):
        return []
    measured = anomalies_util.load_anomalies_binary(os.path.join(artifact_utils.get_split_uri([artifact], TRAIN),
                                                                 DRIFT_FILE))
    return [(".".join(info.path.step), MEASURES.get(m.type, "distance"), m.value, m.threshold)
            for info in measured.drift_skew_info for m in info.drift_measurements]


def drift_line(drift: metadata_store_pb2.Artifact) -> Optional[str]:
    """ValidationGate's drift check in words: each measurement, and whether a drift was accepted; None without one."""
    measured = drift_measurements(drift)
    if not measured:
        return None
    values = ", ".join(f"{feature} {measure} {value:.4f} (threshold {threshold:g})"
                       for feature, measure, value, threshold in measured)
    drifted = drift.custom_properties[DRIFTED].string_value
    if drifted and drift.custom_properties[ACCEPTED].int_value:
        return f"Drift accepted (--accept-drift) against the served model's training data: {drifted}."
    return f"No drift against the served model's training data: {values}."


SPLITS = (TRAIN, VALIDATION, EVAL)


def split_sizes(statistics: metadata_store_pb2.Artifact) -> dict[str, int]:
    """How many examples each split holds, from StatisticsGen's output: train, validation, eval first."""
    artifact = standard_artifacts.ExampleStatistics()
    artifact.set_mlmd_artifact(statistics)
    names = artifact_utils.decode_split_names(artifact.split_names)
    ordered = [name for name in SPLITS if name in names] + [name for name in names if name not in SPLITS]
    return {name: stats_artifact_utils.load_statistics(artifact, name).proto().datasets[0].num_examples
            for name in ordered}


def collapse_line(check: dict) -> str:
    """What the check for catastrophic overfitting saw during adversarial training."""
    per_epoch = check["accuracy_per_epoch"]
    measured = (f"accuracy under {check['attack']} at ε {check['epsilon']:g} on {check['images']} held-out images, "
                f"checked each epoch")
    if check["collapsed_at_epoch"] is None:
        return (f"Adversarial training: {measured}: {per_epoch[0]:.1%} after epoch 1, {per_epoch[-1]:.1%} after epoch "
                f"{len(per_epoch)}; no catastrophic overfitting.")
    return (f"Adversarial training: catastrophic overfitting at epoch {check['collapsed_at_epoch']}: {measured}, fell "
            f"to {per_epoch[-1]:.1%} from {max(per_epoch):.1%}; training stopped, and the model kept epoch "
            f"{check['kept_epoch']}'s weights.")


def retrieval_lines(figures: dict) -> list[str]:
    """The visual search figures in words: how well it ranks, and the ScaNN index against exact search."""
    weight = figures.get("class_weight")
    scored = f"; scored {1 - weight:g} × look + {weight:g} × class" if weight else ""
    lines = [f"Visual search ({figures['queries']:,.0f} eval images as queries, {figures['catalog_items']:,.0f} "
             f"catalog items{scored}):" if figures["queries"] else f"Visual search ({figures['catalog_items']:,.0f} "
             f"catalog items, {min(figures['catalog_items'], 1000):,.0f} of them the queries of the figures below"
             f"{scored}):"]
    if "precision_at_10" in figures:
        lines.append(f"  precision@10 {figures['precision_at_10']:.3f}, mAP@100 {figures['map_at_100']:.3f}")
        if "served_precision_at_10" in figures:
            lines[-1] += f" (served model: precision@10 {figures['served_precision_at_10']:.3f})"
    elif figures["queries"]:
        lines.append("  precision@10 and mAP@100 unknown: images without a class among the catalog or the queries")
    if "instance_recall_at_10" in figures:
        lines.append(f"  the item itself ({figures['instance_queries']:,.0f} catalog items photographed again: "
                     f"{PROTOCOL}): recall@1 {figures['instance_recall_at_1']:.3f}, recall@10 "
                     f"{figures['instance_recall_at_10']:.3f}, median rank {figures['instance_median_rank']:,.0f}")
        lines.append(f"  items tied with a query's first result (within {TIE}): {figures['ties_with_first']:,.0f} "
                     "(median)")
    speed_up = figures["ann_queries_per_second"] / figures["exact_queries_per_second"]
    lines.append(f"  ScaNN index: recall@10 {figures['ann_recall_at_10']:.3f} against exact search, "
                 f"{figures['ann_queries_per_second']:,.0f} queries/s against "
                 f"{figures['exact_queries_per_second']:,.0f} "
                 f"({speed_up:.1f}x); built in {figures['build_seconds']:.1f} s, "
                 f"{figures['index_bytes_per_item']:,.0f} bytes per item")
    return lines


def index_lines(metadata_file: str, pipeline_name: str) -> list[str]:
    """What the newest `cnnpipe index` run did: the catalog's figures, and where it pushed (or why not)."""
    _, outputs = run_outputs(metadata_file, pipeline_name)
    figures = os.path.join(outputs["indexed_model"].uri, RETRIEVAL_FILE) if "indexed_model" in outputs else None
    if figures is None or not os.path.isfile(figures):
        return ["The catalog was not indexed: the run stopped before EmbeddingIndex finished."]
    with open(figures, encoding="utf-8") as f:
        lines = retrieval_lines(json.load(f))
    pushed, check = outputs.get("pushed_model"), outputs.get("infra_blessing")
    if pushed is not None and pushed.custom_properties["pushed"].int_value:
        return lines + [f"Pushed to {pushed.custom_properties['pushed_destination'].string_value} (the served "
                        "model's weights with this catalog)"]
    reason = check.custom_properties["reason"].string_value if check is not None else "the run stopped before it"
    return lines + [f"Not pushed: {reason}"]


def robustness_table(points: list[RobustnessPoint]) -> str:
    """attack, ε, candidate and (when there is one) served model's accuracy, one row a point."""
    with_baseline = any(point.baseline is not None for point in points)
    width = max([7] + [len(point.attack) for point in points])
    rows = [f"{'attack':<{width}} {'ε':>5} {'candidate':>10}" + (f" {'served':>13}" if with_baseline else "")]
    for point in points:
        row = f"{point.attack:<{width}} {point.epsilon:>5.3g} {point.candidate:>10.2%}"
        if with_baseline:
            row += f" {point.baseline:>13.2%}" if point.baseline is not None else f" {'-':>13}"
        rows.append(row)
    return "\n".join(rows)


def robustness(metrics: Metrics) -> list[RobustnessPoint]:
    """The attack × ε slices' accuracies, clean first, then by attack and ε."""
    points = []
    for (model, slice_), values in metrics.items():
        columns = dict(slice_)
        if model == "" and set(columns) == {features.ATTACK, features.EPSILON}:
            baseline = metrics.get((BASELINE, slice_), {}).get(ACCURACY)
            points.append(RobustnessPoint(columns[features.ATTACK], round(columns[features.EPSILON], 6),
                                          values[ACCURACY], baseline))
    return sorted(points, key=lambda p: (p.attack != NO_ATTACK, p.attack, p.epsilon))


def slice_name(columns: dict) -> str:
    """A slice in words: "" (overall), " on the clean images", " under fgsm at ε 0.1"."""
    attack = columns.get(features.ATTACK)
    if attack is None:
        return ""
    if attack == NO_ATTACK:
        return " on the clean images"
    return f" under {attack} at ε {columns.get(features.EPSILON, 0):.3g}"


def _below_served(name: str, where: str, shortfall: float, drop: float, reused: str = "") -> str:
    """`shortfall`: the served model's value less the candidate's."""
    return (f"{name}{where} is {shortfall:.4f} below the served model's{reused} (allowed: {drop:.4f}; over by "
            f"{shortfall - drop:.4f}).")


def _below(name: str, where: str, value: float, bound: float) -> str:
    return f"{name}{where} {value:.4f} is below the lower bound {bound:.4f} (by {bound - value:.4f})."


def _failure(failure, slice_key, bounds: dict[tuple[Slice, str], ServedBound]) -> str:
    """One failed threshold in words: which metric, on which slice, and by how much. A lower bound that was a change
    threshold (`bounds`: the served model's metrics reused, components/blessing/evaluator.py) is told as the
    comparison."""
    key, threshold = failure.metric_key, failure.metric_threshold
    value = failure.metric_value.double_value.value
    slice_ = slice_columns(slice_key)
    where = slice_name(dict(slice_))
    if key.is_diff:
        allowed = max(-threshold.change_threshold.absolute.value, 0)
        return _below_served(key.name, where, -value, allowed)  # a diff's value: the candidate's less the served
    served = bounds.get((slice_, key.name))
    if served is not None:
        told = ([_below(key.name, where, value, served.lower)] if served.lower is not None and value < served.lower
                else [])
        if value < served.served - served.drop:
            told.append(_below_served(key.name, where, served.served - value, served.drop,
                                      ", as it was measured when it was pushed"))
        return " ".join(told)
    if threshold.value_threshold.HasField("lower_bound"):
        return _below(key.name, where, value, threshold.value_threshold.lower_bound.value)
    return f"{key.name}{where} {value:.4f} failed its threshold. {failure.message}".strip()


def _failures(evaluation_uri: str) -> list[str]:
    result = tfma.load_validation_result(evaluation_uri)
    bounds = served_bounds(evaluation_uri)
    return [_failure(failure, per_slice.slice_key, bounds)
            for per_slice in result.metric_validations_per_slice for failure in per_slice.failures]


def unevaluated_classes(outputs: dict[str, metadata_store_pb2.Artifact]) -> list[str]:
    """The model's classes of which the eval split holds no example (from StatisticsGen's counts)."""
    if "statistics" not in outputs or "model" not in outputs:
        return []
    statistics = standard_artifacts.ExampleStatistics()
    statistics.set_mlmd_artifact(outputs["statistics"])
    counts = class_counts(statistics, EVAL)
    names = read_class_names(path_utils.serving_model_path(outputs["model"].uri))
    return [name for name in names if not counts.get(name)]


def summarize(metadata_file: str, pipeline_name: str, run_id: Optional[str] = None) -> RunSummary:
    """The summary of run `run_id` of `pipeline_name` (default: its newest run)."""
    return summary_of(*run_outputs(metadata_file, pipeline_name, run_id))


def summary_of(run_id: str, outputs: dict[str, metadata_store_pb2.Artifact]) -> RunSummary:
    """The summary of run `run_id`, given its output artifacts by output key."""
    summary = RunSummary(run_id)
    evaluation = outputs.get("evaluation")
    if evaluation is None:
        return summary
    metrics = metrics_by_slice(evaluation.uri)
    clean = clean_slice(metrics)
    summary.accuracy, summary.loss = (metrics.get(("", clean), {}).get(name) for name in (ACCURACY, LOSS))
    summary.baseline_accuracy = metrics.get((BASELINE, clean), {}).get(ACCURACY)
    summary.per_class_accuracy = {
        dict(slice_)[features.CLASS_NAME]: values[ACCURACY] for (model, slice_), values in sorted(metrics.items())
        if model == "" and features.CLASS_NAME in dict(slice_)
    }
    summary.unevaluated_classes = unevaluated_classes(outputs)
    summary.robustness = robustness(metrics)
    blessing = outputs.get("blessing")
    summary.blessed = bool(blessing and blessing.custom_properties["blessed"].int_value)
    summary.failures = _failures(evaluation.uri) + (retrieval_failures(outputs["indexed_model"].uri)
                                                    if "indexed_model" in outputs else [])
    infra_blessing = outputs.get("infra_blessing")
    if summary.blessed and infra_blessing is not None and not infra_blessing.custom_properties["blessed"].int_value:
        summary.push_check_failure = infra_blessing.custom_properties["reason"].string_value
    indexed = outputs.get("indexed_model")
    if indexed is not None and os.path.isfile(os.path.join(indexed.uri, RETRIEVAL_FILE)):
        with open(os.path.join(indexed.uri, RETRIEVAL_FILE), encoding="utf-8") as f:
            summary.retrieval = json.load(f)
    if "drift_found" in outputs:
        summary.drift = drift_line(outputs["drift_found"])
        summary.duplicates = outputs["drift_found"].custom_properties[DUPLICATES].string_value or None
    if "model_run" in outputs:
        summary.collapse_check = collapse_check.read_report(outputs["model_run"].uri)
        summary.best_epoch = best_epoch.read_report(outputs["model_run"].uri)
    if "tuner_results" in outputs:
        summary.trials = read_trials(outputs["tuner_results"])
    if "statistics" in outputs:
        summary.examples = split_sizes(outputs["statistics"])
    if "examples" in outputs:
        skipped = outputs["examples"].custom_properties[SKIPPED_FILES].string_value
        summary.skipped_files = skipped.split("\n") if skipped else []
    pushed = outputs.get("pushed_model")
    if pushed is not None and pushed.custom_properties["pushed"].int_value:
        summary.pushed_to = pushed.custom_properties["pushed_destination"].string_value
    return summary
