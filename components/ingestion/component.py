"""ImageExampleGen: TFX's file-based ExampleGen for images, driven by a DataSource."""

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from cnnpipe.components.ingestion import executor
from cnnpipe.components.ingestion.source import DataSource
from cnnpipe.core.names import EVAL, TRAIN


class ImageExampleGen(FileBasedExampleGen):
    """Ingests a DataSource into `train` and `eval` splits of tf.Examples.

    The data's own split is kept; otherwise examples are hash-split, `eval_percent` to eval.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, source: DataSource, eval_percent: int = 10):
        if not 0 < eval_percent < 100:
            raise ValueError(f"eval_percent must be between 1 and 99, got {eval_percent}")
        input_config = example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name=name, pattern=p) for name, p in source.split_patterns.items()]
        )
        output_config = None
        if not source.has_own_split:
            output_config = example_gen_pb2.Output(
                split_config=example_gen_pb2.SplitConfig(
                    splits=[
                        example_gen_pb2.SplitConfig.Split(name=TRAIN, hash_buckets=100 - eval_percent),
                        example_gen_pb2.SplitConfig.Split(name=EVAL, hash_buckets=eval_percent),
                    ]
                )
            )
        super().__init__(
            input_base=source.input_base,
            input_config=input_config,
            output_config=output_config,
            custom_config=executor.custom_config(source.format, source.class_names),
        )
