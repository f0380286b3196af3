"""TrainingConfig: what the Trainer trains, checked before any work starts.

No TensorFlow here: the CLI builds its options from these defaults and stays fast to start.
"""

import dataclasses
from typing import Any, Optional

from cnnpipe.core.errors import TrainingError
from cnnpipe.core.names import FGSM_RS, PGD

ADVERSARIAL_METHODS = (FGSM_RS, PGD)  # adversarial training (models/adversarial_training.py)
STRATEGIES = ("mirrored", "multi_worker", "one_device")
WARM_START_LATEST = "latest"  # warm start from the last blessed model of this pipeline


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """What the Trainer trains; travels as the Trainer component's custom_config."""

    model: str
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 2e-3
    strategy: str = "mirrored"
    seed: int = 0
    translate: float = 0.0  # random shifts of up to this fraction of height and width (augmentation)
    flip: bool = False  # random horizontal flips (augmentation)
    warm_start: Optional[str] = None  # a pushed model's path, or "latest" for the last blessed model
    freeze_features: bool = False  # with warm_start: train only the classification head
    shuffle_buffer: int = 60_000  # examples; the whole Fashion-MNIST training split
    adversarial: Optional[str] = None  # "fgsm-rs" or "pgd": train on attacked batches (models/adversarial_training.py)
    adversarial_epsilon: float = 0.1  # their L-inf budget on the [0, 1] pixel scale
    adversarial_steps: int = 7  # PGD's steps
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuses settings that cannot train a working model (the lecture's pitfalls)."""
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise TrainingError(
                f"epochs ({self.epochs}), batch size ({self.batch_size}) and learning rate ({self.learning_rate}) "
                "must be positive."
            )
        if self.shuffle_buffer < self.batch_size * 8:
            raise TrainingError(
                f"shuffle buffer {self.shuffle_buffer} is too small for batches of {self.batch_size}: data stored "
                "by class would reach the model one class at a time. Use a buffer of at least 8 batches, "
                "ideally the whole training split."
            )
        if self.strategy not in STRATEGIES:
            raise TrainingError(f"unknown strategy '{self.strategy}'; choose one of {', '.join(STRATEGIES)}.")
        if self.adversarial not in (None, *ADVERSARIAL_METHODS):
            raise TrainingError(f"unknown adversarial training '{self.adversarial}'; choose one of "
                                f"{', '.join(ADVERSARIAL_METHODS)}.")
        if not 0 < self.adversarial_epsilon <= 1 or self.adversarial_steps < 1:
            raise TrainingError(f"adversarial training needs ε in (0, 1] on the [0, 1] pixel scale (got "
                                f"{self.adversarial_epsilon}) and at least one step (got {self.adversarial_steps}).")

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any]) -> "TrainingConfig":
        config = dict(custom_config)
        config["input_shape"] = tuple(config["input_shape"])
        config["class_names"] = tuple(config["class_names"])
        return cls(**config)
