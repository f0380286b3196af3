"""ImageExampleGen's executor: a Beam PTransform from image files to serialized tf.Examples."""

import os
import re
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from google.protobuf import struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from cnnpipe.core.errors import IngestionError
from cnnpipe.components.ingestion import formats

_UNRESOLVED = re.compile(r"\{(SPAN|VERSION|YYYY|MM|DD)\}")  # TFX's span and version specs, which its driver resolves


def custom_config(data_format: str, class_names: tuple[str, ...]) -> example_gen_pb2.CustomConfig:
    """The ExampleGen custom_config that carries the format and class names to the executor."""
    options = struct_pb2.Struct()
    options.update({"format": data_format, "class_names": list(class_names)})
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(options)
    return config


def _options(exec_properties: dict[str, Any]) -> tuple[str, list[str]]:
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], config)
    options = struct_pb2.Struct()
    config.custom_config.Unpack(options)
    return options["format"], list(options["class_names"])


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def ReadImages(pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str) -> beam.PCollection:
    """Reads the files that `split_pattern` matches under input_base as tf.Examples.

    Class folders: every non-hidden file of every class folder (symlinks followed) must be an image; so must
    every non-hidden file of a folder of images without classes.
    """
    unresolved = _UNRESOLVED.search(split_pattern)
    if unresolved:
        raise IngestionError(
            f"the input pattern '{split_pattern}' still holds {unresolved.group()}: ExampleGen's driver, which picks "
            "the newest span, did not run (open-source Kubeflow Pipelines does not run it; Vertex AI Pipelines with "
            "pipeline spec 2.1 and `cnnpipe run` do). There, give the pipeline the newest images at a path without "
            "span-N directories."
        )
    data_format, class_names = _options(exec_properties)
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    if data_format in ("folder", "images"):
        patterns = formats.class_file_patterns(os.path.dirname(os.path.dirname(pattern))) \
            if data_format == "folder" else [pattern]
        return (
            pipeline
            | "Patterns" >> beam.Create(patterns)
            | "MatchFiles" >> fileio.MatchAll()
            | "NotHidden" >> beam.Filter(lambda match: not formats.is_hidden(match.path))
            | "ReadMatches" >> fileio.ReadMatches()
            | "ToExample" >> beam.Map(lambda f: formats.read_image_file(f.metadata.path, f.read(), class_names))
        )
    reader = {"idx": formats.read_idx, "tfrecord": formats.read_tfrecord}.get(data_format)
    if reader is None:
        raise IngestionError(f"unknown data format '{data_format}'.")
    return (
        pipeline
        | "MatchFiles" >> fileio.MatchFiles(pattern)
        | "Paths" >> beam.Map(lambda match: match.path)
        | "ToExamples" >> beam.FlatMap(reader, class_names)
    )


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Generates tf.Examples from images with ReadImages; splitting and writing are TFX's."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return ReadImages
