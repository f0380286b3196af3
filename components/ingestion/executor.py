"""ImageExampleGen's executor: a Beam PTransform from image files to serialized tf.Examples."""

import hashlib
import os
import re
from typing import Any

import apache_beam as beam
import tensorflow as tf
from apache_beam.io import fileio
from google.protobuf import struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types.artifact import Artifact
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from cnnpipe.core.errors import IngestionError
from cnnpipe.components.ingestion import formats
from cnnpipe.core.names import TRAIN, VALIDATION

SKIPPED_FILES = "skipped_files"  # the examples artifact's custom property: what formats.is_ignored skipped
_UNRESOLVED = re.compile(r"\{(SPAN|VERSION|YYYY|MM|DD)\}")  # TFX's span and version specs, which its driver resolves


def custom_config(data_format: str, class_names: tuple[str, ...], validation_percent: int = 10
                  ) -> example_gen_pb2.CustomConfig:
    """The ExampleGen custom_config that carries the format, the class names and the validation share to the
    executor."""
    options = struct_pb2.Struct()
    options.update({"format": data_format, "class_names": list(class_names), "validation_percent": validation_percent})
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(options)
    return config


def _options(exec_properties: dict[str, Any]) -> struct_pb2.Struct:
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], config)
    options = struct_pb2.Struct()
    config.custom_config.Unpack(options)
    return options


def in_validation(record: bytes, validation_percent: float) -> bool:
    """Whether a serialized example falls in the validation share, by a stable hash of its bytes (as TFX's hash
    split: the same example lands in the same split in every run)."""
    return int(hashlib.sha256(record).hexdigest(), 16) % 100 < validation_percent


def image_folders(exec_properties: dict[str, Any], split_pattern: str) -> list[str]:
    """The folders whose image files a split reads: each class folder (one glob each: Beam does not descend into a
    symlinked folder from a glob above it), or the one folder of images without classes; none for IDX and TFRecord
    files."""
    data_format = _options(exec_properties)["format"]
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    if data_format == "folder":
        root = os.path.dirname(os.path.dirname(pattern))
        return [os.path.join(root, name) for name in formats.class_folders(root)]
    return [os.path.dirname(pattern)] if data_format == "images" else []


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def ReadImages(pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str) -> beam.PCollection:
    """Reads the files that `split_pattern` matches under input_base as tf.Examples.

    Class folders: every file of every class folder (symlinks followed) must be an image, but for hidden files and
    what an operating system leaves there (formats.is_ignored); so must every such file of a folder of images without
    classes.
    """
    unresolved = _UNRESOLVED.search(split_pattern)
    if unresolved:
        raise IngestionError(
            f"the input pattern '{split_pattern}' still holds {unresolved.group()}: ExampleGen's driver, which picks "
            "the newest span, did not run (open-source Kubeflow Pipelines does not run it; Vertex AI Pipelines with "
            "pipeline spec 2.1 and `cnnpipe run` do). There, give the pipeline the newest images at a path without "
            "span-N directories."
        )
    options = _options(exec_properties)
    data_format, class_names = options["format"], list(options["class_names"])
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    folders = image_folders(exec_properties, split_pattern)
    if folders:
        return (
            pipeline
            | "Patterns" >> beam.Create([os.path.join(folder, "*") for folder in folders])
            | "MatchFiles" >> fileio.MatchAll()
            | "NotIgnored" >> beam.Filter(lambda match: not formats.is_ignored(match.path))
            | "ReadMatches" >> fileio.ReadMatches()
            | "ToExample" >> beam.Map(lambda f: formats.read_image_file(f.metadata.path, f.read(), class_names))
        )
    reader = {"idx": formats.read_idx, "tfrecord": formats.read_tfrecord}.get(data_format)
    if reader is None:
        raise IngestionError(f"unknown data format '{data_format}'.")
    if not tf.io.gfile.glob(pattern):  # Beam would read no file at all, and every split would be empty
        raise IngestionError(f"no {data_format} file matches {pattern}: the data is not there, or not laid out as the "
                             "pipeline was compiled or run for (its format and split files).")
    return (
        pipeline
        | "MatchFiles" >> fileio.MatchFiles(pattern)
        | "Paths" >> beam.Map(lambda match: match.path)
        | "ToExamples" >> beam.FlatMap(reader, class_names)
    )


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Generates tf.Examples from images with ReadImages; splitting and writing are TFX's, except that a validation
    split read from the training files is carved from them (`in_validation`). The examples artifact records the
    files ingestion skipped (SKIPPED_FILES, one path a line)."""

    def Do(self, input_dict: dict[str, list[Artifact]], output_dict: dict[str, list[Artifact]],
           exec_properties: dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        folders = {folder for split in input_config.splits for folder in image_folders(exec_properties, split.pattern)}
        if _options(exec_properties)["format"] == "folder":
            folders |= {os.path.dirname(folder) for folder in folders}  # beside the class folders too
        skipped = formats.skipped_files(sorted(folders))
        output_dict[standard_component_specs.EXAMPLES_KEY][0].set_string_custom_property(SKIPPED_FILES,
                                                                                         "\n".join(skipped))

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return ReadImages

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
                               ) -> dict[str, beam.PCollection]:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        patterns = {split.name: split.pattern for split in input_config.splits}
        if VALIDATION not in patterns or patterns[VALIDATION] != patterns.get(TRAIN):
            return super().GenerateExamplesByBeam(pipeline, exec_properties)
        percent = _options(exec_properties)["validation_percent"]
        read = {name: pipeline | f"InputToRecord[{name}]" >> ReadImages(exec_properties, pattern)
                for name, pattern in patterns.items() if name != VALIDATION}
        validation, train = read[TRAIN] | "CarveValidation" >> beam.Partition(
            lambda record, _: 0 if in_validation(record, percent) else 1, 2)
        return {**read, TRAIN: train, VALIDATION: validation}
