"""ValidationGate: stops the run before Transform when ExampleValidator found anomalies.

ExampleValidator records anomalies but lets the pipeline go on; this component reads them,
finds sample records that show each one (TFDV's per-example validation) and fails with a
message that names the records and says how to fix the data or the schema.
"""

import os

import tensorflow_data_validation as tfdv
from tensorflow_data_validation.utils import anomalies_util
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from cnnpipe.components.errors import DataValidationError
from cnnpipe.models import features

SAMPLED_RECORDS = 3


def split_anomalies(anomalies: standard_artifacts.ExampleAnomalies) -> dict[str, anomalies_pb2.Anomalies]:
    """Each split's anomalies, for the splits that have any."""
    found = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), "SchemaDiff.pb")
        result = anomalies_util.load_anomalies_binary(path)
        if result.anomaly_info or result.HasField("dataset_anomaly_info"):
            found[split] = result
    return found


def bad_records(examples_dir: str, schema: schema_pb2.Schema) -> dict[str, list[str]]:
    """Anomaly reason -> the `source` of up to SAMPLED_RECORDS records that show it."""
    _, samples = tfdv.validate_examples_in_tfrecord(
        data_location=os.path.join(examples_dir, "*"),
        stats_options=tfdv.StatsOptions(schema=schema),
        num_sampled_examples=SAMPLED_RECORDS,
    )
    return {
        reason: [example.features.feature[features.SOURCE].bytes_list.value[0].decode() for example in examples]
        for reason, examples in samples.items()
    }


def describe(split: str, anomalies: anomalies_pb2.Anomalies, records: dict[str, list[str]], schema_source: str) -> str:
    """One readable paragraph per split: each anomaly, the records that show it, the fix."""
    lines = [f"Data validation failed on the '{split}' split; the run stopped before Transform."]
    for feature, info in sorted(anomalies.anomaly_info.items()):
        sources = sorted({s for reason, found in records.items() if reason.startswith(f"{feature}_") for s in found})
        where = f" Records: {', '.join(sources)}." if sources else ""
        lines.append(f"  - feature '{feature}': {info.description.strip()}{where}")
    if anomalies.HasField("dataset_anomaly_info"):
        lines.append(f"  - the data set: {anomalies.dataset_anomaly_info.description}")
    lines.append(
        "Fix the data (correct or remove those records), or, if the new values are valid, update the "
        f"schema {schema_source} (for example widen the domain) and run again."
    )
    return "\n".join(lines)


@tfx.dsl.components.component
def ValidationGate(
    examples: tfx.dsl.components.InputArtifact[standard_artifacts.Examples],
    schema: tfx.dsl.components.InputArtifact[standard_artifacts.Schema],
    anomalies: tfx.dsl.components.InputArtifact[standard_artifacts.ExampleAnomalies],
    schema_source: tfx.dsl.components.Parameter[str],
) -> None:
    """Raises DataValidationError, naming the bad records, when any split has anomalies."""
    found = split_anomalies(anomalies)
    if not found:
        return
    schema_proto = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
    reports = [
        describe(split, result, bad_records(artifact_utils.get_split_uri([examples], split), schema_proto), schema_source)
        for split, result in found.items()
    ]
    raise DataValidationError("\n\n".join(reports))
