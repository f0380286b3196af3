"""ImageExampleGen: TFX's file-based ExampleGen for images, driven by a DataSource."""

from typing import Union

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.orchestration.data_types import RuntimeParameter
from tfx.proto import example_gen_pb2

from cnnpipe.components.ingestion import executor
from cnnpipe.components.ingestion.source import DataSource
from cnnpipe.core.names import EVAL, TRAIN, VALIDATION


def hash_buckets(eval_percent: int, validation_percent: int) -> dict[str, int]:
    """Each split's share of 100 hash buckets for data without splits of its own: `eval_percent` to eval, and
    `validation_percent` of the rest (rounded, at least one bucket) to validation."""
    validation = max(1, round((100 - eval_percent) * validation_percent / 100))
    return {TRAIN: 100 - eval_percent - validation, VALIDATION: validation, EVAL: eval_percent}


class ImageExampleGen(FileBasedExampleGen):
    """Ingests a DataSource into `train`, `validation` and `eval` splits of tf.Examples.

    The data's own splits are kept. Data without splits of its own is hash-split (`hash_buckets`); data with its own
    train and eval splits but no validation split has `validation_percent` of its training examples carved into
    `validation` by the executor, by a stable hash of each example.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, source: DataSource, eval_percent: int = 10, validation_percent: int = 10,
                 input_base: Union[str, RuntimeParameter, None] = None):
        """`input_base`, where the files are, is the source's unless given (a RuntimeParameter on Kubeflow: data
        laid out as the source's)."""
        if not 0 < eval_percent < 100:
            raise ValueError(f"eval_percent must be between 1 and 99, got {eval_percent}")
        if not 0 < validation_percent < 100:
            raise ValueError(f"validation_percent must be between 1 and 99, got {validation_percent}")
        patterns = dict(source.split_patterns)
        output_config = None
        if not source.has_own_split:
            output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
                example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
                for name, buckets in hash_buckets(eval_percent, validation_percent).items()]))
        elif VALIDATION not in patterns:  # read from the training files: the executor carves it
            patterns = {TRAIN: patterns[TRAIN], VALIDATION: patterns[TRAIN], EVAL: patterns[EVAL]}
        super().__init__(
            input_base=input_base or source.input_base,
            input_config=example_gen_pb2.Input(
                splits=[example_gen_pb2.Input.Split(name=name, pattern=p) for name, p in patterns.items()]),
            output_config=output_config,
            custom_config=executor.custom_config(source.format, source.class_names, validation_percent),
        )
