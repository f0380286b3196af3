"""Trainer: TFX's Trainer (its spec, its GenericExecutor calling `run_fn`) with the settings a run may be given when
it starts as parameters of their own.

TFX's Kubeflow compiler turns a RuntimeParameter into a pipeline parameter only when it is a whole execution
property, never inside `custom_config`; so `epochs` and `learning_rate` are properties beside it, and the executor
writes them into the `custom_config` that `run_fn` reads (`TrainingConfig.from_custom_config`).
"""

from typing import Optional, Union

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration.data_types import RuntimeParameter
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

RUN_SETTINGS = {"epochs": int, "learning_rate": float}  # TrainingConfig's fields a run may be given


class TrainerSpec(standard_component_specs.TrainerSpec):
    """TFX's Trainer spec, plus RUN_SETTINGS."""

    PARAMETERS = {**standard_component_specs.TrainerSpec.PARAMETERS,
                  **{name: ExecutionParameter(type=kind, optional=True) for name, kind in RUN_SETTINGS.items()}}


class Executor(trainer_executor.GenericExecutor):
    """TFX's GenericExecutor, with the RUN_SETTINGS given written into `custom_config`."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict) -> None:
        config = json_utils.loads(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY])
        config.update({name: kind(exec_properties[name]) for name, kind in RUN_SETTINGS.items()
                       if exec_properties.get(name) is not None})
        super().Do(input_dict, output_dict,
                   {**exec_properties, standard_component_specs.CUSTOM_CONFIG_KEY: json_utils.dumps(config)})


class Trainer(base_component.BaseComponent):
    """TFX's Trainer with `run_fn` on `examples` (Transform's) and `custom_config` (a TrainingConfig as a dict),
    `epochs` and `learning_rate` over the config's (a RuntimeParameter each on Kubeflow)."""

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, run_fn: str, examples: types.BaseChannel, transform_graph: types.BaseChannel,
                 schema: types.BaseChannel, train_args: trainer_pb2.TrainArgs, eval_args: trainer_pb2.EvalArgs,
                 custom_config: dict, base_model: Optional[types.BaseChannel] = None,
                 hyperparameters: Optional[types.BaseChannel] = None,
                 epochs: Union[int, RuntimeParameter, None] = None,
                 learning_rate: Union[float, RuntimeParameter, None] = None):
        super().__init__(spec=TrainerSpec(
            examples=examples, transform_graph=transform_graph, schema=schema, base_model=base_model,
            hyperparameters=hyperparameters, train_args=train_args, eval_args=eval_args, run_fn=run_fn,
            custom_config=json_utils.dumps(custom_config), epochs=epochs, learning_rate=learning_rate,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun)))
