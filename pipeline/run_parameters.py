"""Run parameters: the settings a team changes between runs of one compiled Kubeflow spec (`cnnpipe submit --param
epochs=30`), each a TFX RuntimeParameter named as its flag, its default the value compiled in.

TFX's Kubeflow compiler makes a pipeline parameter of a RuntimeParameter that is a whole execution property, so each
of these reaches its component as a property of its own: the data's root (ImageExampleGen's `input_base`), `epochs`
and `learning_rate` (the Trainer's), the blessing's bounds (the Evaluator's and EmbeddingIndex's) and `keep_versions`
(the Pusher's).
"""

import dataclasses
from typing import Any

from tfx.orchestration.data_types import RuntimeParameter

from cnnpipe.pipeline.config import flags

TYPES = (int, float, str)  # what a RuntimeParameter may be
# what a parameter means where it differs from its flag's help
DESCRIPTIONS = {
    "data": "the images' root as the pods read it (a gs:// URI), laid out as the compiled data: format, classes, "
            "splits",
    "learning_rate": "the optimizer's learning rate",
    "keep_versions": "keep only the newest K pushed versions (0 keeps all)",
}


@dataclasses.dataclass(frozen=True)
class RunParameters:
    """Gives a setting as the pipeline's components take it: its value (`runtime` off: a local run), or a
    RuntimeParameter with that value as its default (a compiled spec). None, and a value of another type, stay."""

    runtime: bool = False

    def __call__(self, name: str, value: Any) -> Any:
        if not self.runtime or type(value) not in TYPES:
            return value
        return RuntimeParameter(name=name, ptype=type(value), default=value,
                                description=DESCRIPTIONS.get(name) or flags()[name].metadata["help"])
