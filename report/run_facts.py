"""What a run's report shows, read back from the run's artifacts: the data, the model, its robustness, the blessing
and the push. Figures come from report/figures.py; the page from report/run_page.py."""

import dataclasses
import glob
import os
from typing import Callable, Iterator, Optional

import numpy as np
import tensorflow as tf
import tensorflow_data_validation as tfdv
from ml_metadata.proto import metadata_store_pb2
from sklearn import metrics as sk_metrics
from tensorboard.backend.event_processing import event_accumulator
from tensorflow_model_analysis.writers import eval_config_writer
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from cnnpipe.components.blessing.evaluation_results import (Metrics, metric_key, metrics_by_slice, served_bounds,
                                                            spec_slice)
from cnnpipe.components.validation_gate import class_counts
from cnnpipe.core import features
from cnnpipe.core.names import BASELINE, CANDIDATE, CLASS_NAMES, EVAL, NO_ATTACK, SERVING_DEFAULT, WORST_CASE
from cnnpipe.models.class_names import read_class_names
from cnnpipe.pipeline.metadata import run_outputs
from cnnpipe.report import history, summary as run_summary

BATCH = 512
GALLERY_SIZE = 12  # attack-flipped images shown
GALLERY_SCANNED = 512  # attacked images looked at to find them
SIZE_FEATURES = (features.HEIGHT, features.WIDTH, features.BRIGHTNESS)


@dataclasses.dataclass(frozen=True)
class Quality:
    """The candidate's predictions on the clean eval split: the confusion matrix (rows: true class) and each class's
    precision and recall."""

    class_names: list[str]
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


@dataclasses.dataclass(frozen=True)
class Gate:
    """One blessing threshold: the measured value, the bound it had to reach, and by how much it passed or failed."""

    what: str
    value: float
    bound: float
    bound_text: str

    @property
    def margin(self) -> float:
        return self.value - self.bound


@dataclasses.dataclass(frozen=True)
class Flip:
    """An eval image the candidate classified right whose attacked copy it classified wrong."""

    source: str
    attack: str
    epsilon: float
    true_class: str
    attacked_class: str
    clean_png: bytes
    attacked_png: bytes


@dataclasses.dataclass
class RunFacts:
    """Everything the report shows of one run; a part the run did not reach is empty."""

    pipeline_name: str
    summary: run_summary.RunSummary
    class_balance: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # split -> class -> count
    image_stats: dict[str, dict[str, tuple[float, float, float]]] = dataclasses.field(default_factory=dict)
    drift: list[tuple[str, str, float, float]] = dataclasses.field(default_factory=list)
    quality: Optional[Quality] = None
    curves: dict[str, dict[str, list[tuple[int, float]]]] = dataclasses.field(default_factory=dict)
    gates: list[Gate] = dataclasses.field(default_factory=list)
    flips: list[Flip] = dataclasses.field(default_factory=list)
    trend: list[history.RunRow] = dataclasses.field(default_factory=list)  # the runs up to this one, oldest first


def _statistics(artifact: metadata_store_pb2.Artifact) -> standard_artifacts.ExampleStatistics:
    statistics = standard_artifacts.ExampleStatistics()
    statistics.set_mlmd_artifact(artifact)
    return statistics


def splits(artifact) -> list[str]:
    return artifact_utils.decode_split_names(artifact.split_names)


def image_stats(statistics: standard_artifacts.ExampleStatistics) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Per split, (min, mean, max) of each image's height, width and brightness, from StatisticsGen's statistics."""
    found = {}
    for split in splits(statistics):
        view = stats_artifact_utils.load_statistics(statistics, split).get_default_slice()
        for name in SIZE_FEATURES:
            feature = view.get_feature(tfdv.FeaturePath([name])) if view else None
            if feature is not None:
                numbers = feature.proto().num_stats
                found.setdefault(split, {})[name] = (numbers.min, numbers.mean, numbers.max)
    return found


def _split_files(artifact: metadata_store_pb2.Artifact, split: str) -> list[str]:
    return sorted(glob.glob(os.path.join(artifact_utils.get_split_uri([_examples(artifact)], split), "*")))


def _examples(artifact: metadata_store_pb2.Artifact) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.set_mlmd_artifact(artifact)
    return examples


def _records(files: list[str]) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(files, compression_type="GZIP").batch(BATCH)


def _predicted(predict, serialized: tf.Tensor) -> np.ndarray:
    return predict(examples=serialized)[CLASS_NAMES].numpy().astype(str)


def quality(predict: Callable[..., dict], names: list[str], eval_files: list[str]) -> Quality:
    """The confusion matrix, precision and recall of `predict` (a model's serving_default, whose classes are `names`)
    on the serialized eval examples in `eval_files`."""
    true, predicted = [], []
    label_spec = {features.LABEL: tf.io.FixedLenFeature([], tf.int64)}
    for serialized in _records(eval_files):
        true.append(tf.io.parse_example(serialized, label_spec)[features.LABEL].numpy())
        predicted.append(_predicted(predict, serialized))
    index = {name: i for i, name in enumerate(names)}
    true_ids = np.concatenate(true)
    predicted_ids = np.array([index[name] for name in np.concatenate(predicted)])
    ids = list(range(len(names)))
    precision, recall, _, _ = sk_metrics.precision_recall_fscore_support(true_ids, predicted_ids, labels=ids,
                                                                         zero_division=0)
    return Quality(names, sk_metrics.confusion_matrix(true_ids, predicted_ids, labels=ids), precision, recall)


def training_curves(model_run_uri: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """The Trainer's TensorBoard logs: per metric logged each epoch (the learning rate aside), its (epoch, value)
    points in the train and validation logs."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for log in ("train", "validation"):
        directory = os.path.join(model_run_uri, "logs", log)
        if not os.path.isdir(directory):
            continue
        events = event_accumulator.EventAccumulator(directory, size_guidance={event_accumulator.TENSORS: 0})
        events.Reload()
        for tag in [tag for tag in events.Tags()["tensors"] if tag.startswith("epoch_") and tag != "epoch_lr"]:
            curves.setdefault(tag.removeprefix("epoch_"), {})[log] = [
                (event.step + 1, float(tf.make_ndarray(event.tensor_proto))) for event in events.Tensors(tag)]
    return curves


def gates(evaluation_uri: str, metrics: Metrics, retrieval: dict) -> list[Gate]:
    """Every threshold the Evaluator and EmbeddingIndex applied, with the value measured against it."""
    config = eval_config_writer.load_eval_run(evaluation_uri)[0]
    bounds = served_bounds(evaluation_uri)
    found = []
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            name = metric_key(metric.class_name)
            for per_slice in metric.per_slice_thresholds:
                threshold = per_slice.threshold
                for slicing_spec in per_slice.slicing_specs:
                    slice_ = spec_slice(slicing_spec)
                    where = run_summary.slice_name(dict(slice_)) or " overall"
                    value = metrics.get(("", slice_), {}).get(name)
                    served = metrics.get((BASELINE, slice_), {}).get(name)
                    if value is None:
                        continue
                    reused = bounds.get((slice_, name))  # a change threshold that became this lower bound
                    if reused is not None:
                        if reused.lower is not None:
                            found.append(Gate(f"{name}{where}", value, reused.lower, f"≥ {reused.lower:.4f}"))
                        found.append(Gate(f"{name}{where} against the served model's (as measured when pushed)",
                                          value, reused.served - reused.drop,
                                          f"≥ served {reused.served:.4f} − {reused.drop:.4f}"))
                    elif threshold.value_threshold.HasField("lower_bound"):
                        bound = threshold.value_threshold.lower_bound.value
                        found.append(Gate(f"{name}{where}", value, bound, f"≥ {bound:.4f}"))
                    if threshold.HasField("change_threshold") and served is not None:
                        drop = max(-threshold.change_threshold.absolute.value, 0)
                        found.append(Gate(f"{name}{where} against the served model's", value, served - drop,
                                          f"≥ served {served:.4f} − {drop:.4f}"))
    search = retrieval.get("thresholds", {})
    if "precision_at_10" in retrieval and search:
        precision = retrieval["precision_at_10"]
        found.append(Gate("search precision@10", precision, search["min_precision"],
                          f"≥ {search['min_precision']:.4f}"))
        drop, served = search.get("max_precision_drop"), retrieval.get("served_precision_at_10")
        if drop is not None and served is not None:
            found.append(Gate("search precision@10 against the served model's", precision, served - drop,
                              f"≥ served {served:.4f} − {drop:.4f}"))
    if search.get("min_instance_recall") and "instance_recall_at_10" in retrieval:
        found.append(Gate("search instance recall@10", retrieval["instance_recall_at_10"],
                          search["min_instance_recall"], f"≥ {search['min_instance_recall']:.4f}"))
    return found


_COPY_SPEC = {key: tf.io.FixedLenFeature([], dtype) for key, dtype in (
    (features.IMAGE, tf.string), (features.SOURCE, tf.string), (features.CLASS_NAME, tf.string),
    (features.ATTACK, tf.string), (features.ATTACKED_MODEL, tf.string), (features.EPSILON, tf.float32))}


def _copies(files: list[str]) -> Iterator[tuple[tf.Tensor, dict[str, np.ndarray]]]:
    for serialized in _records(files):
        parsed = tf.io.parse_example(serialized, _COPY_SPEC)
        yield serialized, {key: value.numpy() for key, value in parsed.items()}


def flips(predict: Callable[..., dict], files: list[str], epsilon: float) -> list[Flip]:
    """Up to GALLERY_SIZE eval images the model (`predict`, its serving_default) classified right and, attacked with
    its own gradients at `epsilon` (AdversarialExamples' copies in `files`), wrong, each with the first attack that
    flipped it; the first GALLERY_SCANNED attacked copies looked at."""
    clean: dict[bytes, tuple[bytes, bytes]] = {}  # source -> (serialized, image)
    attacked: list[tuple[bytes, dict]] = []
    target = np.float32(epsilon)
    for serialized, batch in _copies(files):
        for i, source in enumerate(batch[features.SOURCE]):
            attack = batch[features.ATTACK][i].decode()
            if attack == NO_ATTACK:
                clean[source] = (serialized[i].numpy(), batch[features.IMAGE][i])
            elif (len(attacked) < GALLERY_SCANNED and attack != WORST_CASE and batch[features.EPSILON][i] == target
                  and batch[features.ATTACKED_MODEL][i].decode() == CANDIDATE):
                attacked.append((serialized[i].numpy(), {key: value[i] for key, value in batch.items()}))
    attacked = [(record, copy) for record, copy in attacked if copy[features.SOURCE] in clean]
    if not attacked:
        return []
    on_clean = _predicted(predict, tf.constant([clean[copy[features.SOURCE]][0] for _, copy in attacked]))
    on_attacked = _predicted(predict, tf.constant([record for record, _ in attacked]))
    found, shown = [], set()
    for (_, copy), before, after in zip(attacked, on_clean, on_attacked):
        true_class = copy[features.CLASS_NAME].decode()
        if before == true_class != after and len(found) < GALLERY_SIZE and copy[features.SOURCE] not in shown:
            shown.add(copy[features.SOURCE])
            found.append(Flip(copy[features.SOURCE].decode(), copy[features.ATTACK].decode(), epsilon, true_class,
                              after, clean[copy[features.SOURCE]][1], copy[features.IMAGE]))
    return found


def gallery_epsilon(summary: run_summary.RunSummary) -> Optional[float]:
    """The ε the gallery shows: the gated one (where the worst case was measured), else the largest."""
    epsilons = [point.epsilon for point in summary.robustness if point.attack != NO_ATTACK]
    gated = [point.epsilon for point in summary.robustness if point.attack == WORST_CASE]
    return (gated or [max(epsilons)])[0] if epsilons else None


TREND_RUNS = 10  # the runs the report's trend shows, this one the last


def read(metadata_file: str, pipeline_name: str, result: run_summary.RunSummary) -> RunFacts:
    """The facts of the run of `pipeline_name` that `result` summarizes."""
    _, outputs = run_outputs(metadata_file, pipeline_name, result.run_id)
    return facts_of(pipeline_name, result, outputs,
                    trend=history.history(metadata_file, pipeline_name, TREND_RUNS, until=result.run_id, known=result))


def facts_of(pipeline_name: str, result: run_summary.RunSummary, outputs: dict[str, metadata_store_pb2.Artifact],
             trend: Optional[list[history.RunRow]] = None) -> RunFacts:
    """The facts of the run `result` summarizes, given its output artifacts by output key and the runs up to it."""
    facts = RunFacts(pipeline_name, result, trend=trend or [])
    if "statistics" in outputs:
        statistics = _statistics(outputs["statistics"])
        facts.class_balance = {split: class_counts(statistics, split) for split in splits(statistics)}
        facts.image_stats = image_stats(statistics)
    if "drift_found" in outputs:
        facts.drift = run_summary.drift_measurements(outputs["drift_found"])
    if "model_run" in outputs:
        facts.curves = training_curves(outputs["model_run"].uri)
    model = outputs.get("indexed_model") or outputs.get("model")
    evaluation = outputs.get("evaluation")
    if model is None or evaluation is None:
        return facts
    model_dir = path_utils.serving_model_path(model.uri)
    predict = tf.saved_model.load(model_dir).signatures[SERVING_DEFAULT]
    facts.quality = quality(predict, read_class_names(model_dir), _split_files(outputs["examples"], EVAL))
    facts.gates = gates(evaluation.uri, metrics_by_slice(evaluation.uri), result.retrieval)
    epsilon = gallery_epsilon(result)
    if epsilon is not None and "adversarial_examples" in outputs:
        facts.flips = flips(predict, _split_files(outputs["adversarial_examples"], EVAL), epsilon)
    return facts
