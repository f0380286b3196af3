"""RunRecord: the last step of a compiled Kubeflow pipeline, which writes down the run's artifacts for its exit step.

On Kubeflow the run's artifacts are known to the cluster's metadata store, which the exit step (runners/exit_step.py)
does not read: a cached step's outputs live under an earlier run, and the flags the report reads (`blessed`,
`pushed_destination`, the push check's `reason`, the drift found) are metadata, not files. RunRecord takes every
artifact the run's summary and report read as an input, so the orchestrator resolves them, and writes each one's URI,
properties and custom properties to `record.json` in its output; the exit step reads them back as ML Metadata
artifacts, as a local run's report reads them from its store.
"""

import json
import os

from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.base import base_node
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.types.experimental import simple_artifacts
from tfx.utils import io_utils

RECORD_FILE = "record.json"
ID = "RunRecord"


@component
def RunRecord(
    record: OutputArtifact[simple_artifacts.File],
    examples: InputArtifact[standard_artifacts.Examples] = None,
    statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
    drift_found: InputArtifact[standard_artifacts.ExampleAnomalies] = None,
    model: InputArtifact[standard_artifacts.Model] = None,
    model_run: InputArtifact[standard_artifacts.ModelRun] = None,
    tuner_results: InputArtifact[standard_artifacts.TunerResults] = None,
    indexed_model: InputArtifact[standard_artifacts.Model] = None,
    adversarial_examples: InputArtifact[standard_artifacts.Examples] = None,
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation] = None,
    blessing: InputArtifact[standard_artifacts.ModelBlessing] = None,
    infra_blessing: InputArtifact[standard_artifacts.InfraBlessing] = None,
    pushed_model: InputArtifact[standard_artifacts.PushedModel] = None,
) -> None:
    """Writes the given artifacts, by output key, to `record`/record.json."""
    given = {key: value for key, value in locals().items() if key != "record" and value is not None}
    io_utils.write_string_file(os.path.join(record.uri, RECORD_FILE),
                               json.dumps({key: _recorded(artifact) for key, artifact in given.items()}, indent=1))


RECORDED = tuple(RunRecord.SPEC_CLASS.INPUTS)  # the output keys it records


def record_of(nodes: list[base_node.BaseNode]) -> base_node.BaseNode:
    """RunRecord of what `nodes` output (a key two of them output, the first one's: ImageExampleGen's "examples", not
    CatalogExampleGen's)."""
    produced = {}
    for node in nodes:
        for key in RECORDED:
            if key in node.outputs:
                produced.setdefault(key, node.outputs[key])
    return RunRecord(**produced).with_id(ID)


def _recorded(artifact: types.Artifact) -> dict:
    """An artifact's URI, properties and custom properties as plain values."""
    return {"uri": artifact.uri,
            "properties": json_format.MessageToDict(artifact.mlmd_artifact)["properties"]
            if artifact.mlmd_artifact.properties else {},
            "custom_properties": {name: artifact.get_custom_property(name)
                                  for name in artifact.mlmd_artifact.custom_properties}}


def _value(value: object) -> metadata_store_pb2.Value:
    """A custom property's value. Kubeflow keeps every number as a double: a whole one is read back as an integer, as
    the flags the report reads (`blessed`, `pushed`) are."""
    if isinstance(value, bool) or isinstance(value, (int, float)) and float(value).is_integer():
        return metadata_store_pb2.Value(int_value=int(value))
    if isinstance(value, float):
        return metadata_store_pb2.Value(double_value=value)
    return metadata_store_pb2.Value(string_value=value if isinstance(value, str) else json.dumps(value))


def read(record_dir: str) -> dict[str, metadata_store_pb2.Artifact]:
    """The artifacts RunRecord wrote to `record_dir`, by output key, as ML Metadata artifacts."""
    recorded = json.loads(io_utils.read_string_file(os.path.join(record_dir, RECORD_FILE)))
    artifacts = {}
    for key, fields in recorded.items():
        artifact = json_format.ParseDict({"uri": fields["uri"], "properties": fields["properties"]},
                                         metadata_store_pb2.Artifact())
        for name, value in fields["custom_properties"].items():
            artifact.custom_properties[name].CopyFrom(_value(value))
        artifacts[key] = artifact
    return artifacts
