"""ValidationGate: stops the run before Transform when the data is not what the run can train on.

ExampleValidator records anomalies against the schema but lets the pipeline go on; this component
reads them, adds what the run's class names imply whatever the schema (curated or inferred): labels
are class ids in [0, classes), and every class has training images. It finds sample records that
show each anomaly (TFDV's per-example validation) and fails with a message that names the records
and says how to fix the data or the schema.

Duplicates: the same image in two splits or under two classes (duplicates.py) stops the run too, unless
`allow_duplicates`; what was found is a custom property of `drift_found`, for the summary.

Drift: given the statistics of the data the served model was trained on (ServedModel's, pushed with the
model), it compares the training split's statistics with them by the schema's drift comparators (TFDV:
L-infinity distance of the class balance, Jensen-Shannon divergence of brightness, height and width; an
inferred schema gets DEFAULT_DRIFT) and stops the run when one is past its threshold, naming each drifted
feature with its distance, unless `accept_drift`. What it measured is its `drift_found` output, for the summary.
"""

import os
import tempfile
from typing import Optional

import tensorflow_data_validation as tfdv
from tensorflow_data_validation.utils import anomalies_util
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from cnnpipe.components import duplicates
from cnnpipe.components.parameters import json_parameter
from cnnpipe.core.errors import DataValidationError
from cnnpipe.core import features
from cnnpipe.core.names import TRAIN

SAMPLED_RECORDS = 3
DRIFTED, ACCEPTED, DUPLICATES = "drifted", "accepted", "duplicates"  # the drift artifact's custom properties
DRIFT_FILE = "SchemaDiff.pb"  # in its train split: the Anomalies with every drift measurement
# The drift comparators an inferred schema gets (a curated one states its own): feature -> (comparator, threshold)
DEFAULT_DRIFT = {features.CLASS_NAME: ("infinity_norm", 0.05), features.BRIGHTNESS: ("jensen_shannon_divergence", 0.1),
                 features.HEIGHT: ("jensen_shannon_divergence", 0.1),
                 features.WIDTH: ("jensen_shannon_divergence", 0.1)}
MEASURES = {anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "L-infinity distance",
            anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon divergence"}


def with_label_domain(schema: schema_pb2.Schema, num_classes: int) -> schema_pb2.Schema:
    """A copy of `schema` whose label takes the class ids 0 .. num_classes - 1 only, with DEFAULT_DRIFT's
    comparators on the features that have none."""
    constrained = schema_pb2.Schema()
    constrained.CopyFrom(schema)
    label = tfdv.get_feature(constrained, features.LABEL)
    label.int_domain.min, label.int_domain.max = 0, num_classes - 1
    for feature in constrained.feature:
        if feature.name in DEFAULT_DRIFT and not feature.HasField("drift_comparator"):
            comparator, threshold = DEFAULT_DRIFT[feature.name]
            getattr(feature.drift_comparator, comparator).threshold = threshold
    return constrained


def drift(statistics: standard_artifacts.ExampleStatistics, served: standard_artifacts.ExampleStatistics,
          schema: schema_pb2.Schema) -> anomalies_pb2.Anomalies:
    """The training split's statistics against the served model's training data's, by the schema's comparators."""
    current, previous = (stats_artifact_utils.load_statistics(s, TRAIN).proto() for s in (statistics, served))
    return tfdv.validate_statistics(current, schema, previous_statistics=previous)


def drifted(anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """Each measurement past its threshold, in words: "brightness: Jensen-Shannon divergence 0.2715 > 0.1"."""
    return [f"{'.'.join(info.path.step)}: {MEASURES.get(m.type, 'distance')} {m.value:.4f} > {m.threshold:g}"
            for info in anomalies.drift_skew_info for m in info.drift_measurements if m.value > m.threshold]


def describe_drift(found: list[str], schema_source: str) -> str:
    """The error that stops a drifted run: each drifted measurement and the two ways on."""
    return "\n".join([
        "The data drifted from the data the served model was trained on; the run stopped before Transform.",
        *(f"  - {line}" for line in found),
        "If the change is real and the model should learn it, run again with --accept-drift; otherwise fix the "
        f"data (or, if the thresholds are too tight, the drift_comparator thresholds in the schema {schema_source}).",
    ])


def split_anomalies(anomalies: standard_artifacts.ExampleAnomalies, statistics: standard_artifacts.ExampleStatistics,
                    schema: schema_pb2.Schema) -> dict[str, anomalies_pb2.Anomalies]:
    """Each split's anomalies, for the splits that have any: ExampleValidator's, and those of the
    statistics against `schema` (the label domain) where ExampleValidator found none for a feature."""
    found = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), "SchemaDiff.pb")
        result = anomalies_util.load_anomalies_binary(path)
        stats = stats_artifact_utils.load_statistics(statistics, split).proto()
        for feature, info in tfdv.validate_statistics(stats, schema).anomaly_info.items():
            if feature not in result.anomaly_info:
                result.anomaly_info[feature].CopyFrom(info)
        if result.anomaly_info or result.HasField("dataset_anomaly_info"):
            found[split] = result
    return found


def class_counts(statistics: standard_artifacts.ExampleStatistics, split: str) -> dict[str, int]:
    """How many examples of each class a split holds, from the statistics of its `class_name` feature."""
    view = stats_artifact_utils.load_statistics(statistics, split).get_default_slice()
    feature = view.get_feature(tfdv.FeaturePath([features.CLASS_NAME])) if view else None
    if feature is None:
        return {}
    buckets = feature.proto().string_stats.rank_histogram.buckets
    return {bucket.label: int(bucket.sample_count) for bucket in buckets}


def empty_splits(statistics: standard_artifacts.ExampleStatistics) -> Optional[str]:
    """An error message naming the splits that got no examples, or None when every split has some."""
    views = {split: stats_artifact_utils.load_statistics(statistics, split).get_default_slice()
             for split in artifact_utils.decode_split_names(statistics.split_names)}
    counts = {split: view.proto().num_examples if view else 0 for split, view in views.items()}
    empty = [split for split, count in counts.items() if not count]
    if not empty:
        return None
    return (f"No images in the {' and '.join(repr(split) for split in empty)} split{'s' if len(empty) > 1 else ''} "
            f"({', '.join(f'{split} {count:,}' for split, count in counts.items())}): each image goes to a split by "
            "a hash of its bytes, and too few images leave a split empty. The run stopped before Transform. Add images "
            "(a few dozen of each class at least), or raise --eval-percent or --validation-percent.")


def classes_without_training_images(statistics: standard_artifacts.ExampleStatistics,
                                    class_names: list[str]) -> Optional[str]:
    """An error message naming the classes that have no training examples, or None when all have some."""
    counts = class_counts(statistics, TRAIN)
    missing = [name for name in class_names if not counts.get(name)]
    if not missing:
        return None
    return (f"Classes without training images: {', '.join(repr(name) for name in missing)}. A model trained so would "
            "have an output that was never trained, so the run stopped before Transform. Add images of each (a class "
            "folder that is empty, or whose images were not read), or drop the class from the data and its "
            "class names.")


def bad_records(examples_dir: str, schema: schema_pb2.Schema) -> dict[str, list[str]]:
    """Anomaly reason -> the `source` of up to SAMPLED_RECORDS records that show it."""
    with tempfile.TemporaryDirectory() as scratch:  # TFDV writes the anomalies' statistics there
        _, samples = tfdv.validate_examples_in_tfrecord(
            data_location=os.path.join(examples_dir, "*"),
            stats_options=tfdv.StatsOptions(schema=schema),
            output_path=os.path.join(scratch, "anomaly_stats.tfrecord"),
            num_sampled_examples=SAMPLED_RECORDS,
        )
    return {
        reason: [example.features.feature[features.SOURCE].bytes_list.value[0].decode() for example in examples]
        for reason, examples in samples.items()
    }


def describe(split: str, anomalies: anomalies_pb2.Anomalies, records: dict[str, list[str]], schema_source: str,
             num_classes: int) -> str:
    """One readable paragraph per split: each anomaly, the records that show it, the fix."""
    lines = [f"Data validation failed on the '{split}' split; the run stopped before Transform."]
    for feature, info in sorted(anomalies.anomaly_info.items()):
        sources = sorted({s for reason, found in records.items() if reason.startswith(f"{feature}_") for s in found})
        where = f" Records: {', '.join(sources)}." if sources else ""
        domain = (f" Labels are class ids 0 to {num_classes - 1}, one per class name." if feature == features.LABEL
                  else "")
        lines.append(f"  - feature '{feature}': {info.description.strip()}{where}{domain}")
    if anomalies.HasField("dataset_anomaly_info"):
        lines.append(f"  - the data set: {anomalies.dataset_anomaly_info.description}")
    lines.append(
        "Fix the data (correct or remove those records), or, if the new values are valid, update the "
        f"schema {schema_source} (for example widen the domain) and run again."
    )
    return "\n".join(lines)


@component
def ValidationGate(
    examples: InputArtifact[standard_artifacts.Examples],
    schema: InputArtifact[standard_artifacts.Schema],
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    drift_found: OutputArtifact[standard_artifacts.ExampleAnomalies],
    schema_source: Parameter[str],
    class_names: Parameter[list[str]],
    served_statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
    accept_drift: Parameter[bool] = False,
    allow_duplicates: Parameter[bool] = False,
) -> None:
    """Raises DataValidationError, naming the bad records, when any split has anomalies, a label is no
    class id, a split has no examples or a class no training examples; when an image appears in two splits or under
    two classes, unless `allow_duplicates`; and, with `served_statistics` (ServedModel's), when the training split
    drifted from them, unless `accept_drift`. `drift_found` holds the drift measured and the duplicates found."""
    class_names = json_parameter(class_names)
    schema_proto = with_label_domain(io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri)),
                                     len(class_names))
    reports = [
        describe(split, result, bad_records(artifact_utils.get_split_uri([examples], split), schema_proto),
                 schema_source, len(class_names))
        for split, result in split_anomalies(anomalies, statistics, schema_proto).items()
    ]
    too_few = empty_splits(statistics) or classes_without_training_images(statistics, class_names)
    copies = duplicates.duplicates(examples)
    copied = duplicates.describe(copies) if copies else ""
    drift_found.set_string_custom_property(DUPLICATES, copied)
    drift_found.split_names = artifact_utils.encode_split_names([])
    found = []
    if served_statistics is not None and TRAIN in artifact_utils.decode_split_names(served_statistics.split_names):
        measured = drift(statistics, served_statistics, schema_proto)
        found = drifted(measured)
        drift_found.split_names = artifact_utils.encode_split_names([TRAIN])
        io_utils.write_bytes_file(os.path.join(artifact_utils.get_split_uri([drift_found], TRAIN), DRIFT_FILE),
                                  measured.SerializeToString())
    drift_found.set_string_custom_property(DRIFTED, "; ".join(found))
    drift_found.set_int_custom_property(ACCEPTED, int(bool(found and accept_drift)))
    stops = reports + ([too_few] if too_few else []) + ([describe_drift(found, schema_source)]
                                                            if found and not accept_drift else [])
    if copied and not allow_duplicates:
        stops.append(f"{copied}. The run stopped before Transform: remove the copies (a folder "
                     "linked or copied under two names, an image in both the training and the test files), or run "
                     "again with --allow-duplicates.")
    if stops:
        raise DataValidationError("\n\n".join(stops))
