"""TrainingConfig: what the Trainer trains, checked before any work starts.

Each field's default and `cnnpipe` flag are declared here once (core/options.py). No TensorFlow here: the CLI
builds its options from these fields and stays fast to start.
"""

import dataclasses
from typing import Any, Optional

from cnnpipe.core.errors import TrainingError
from cnnpipe.core.names import APGD_CE, FGSM_RS, PGD
from cnnpipe.core.options import key_value, option, shape

ADVERSARIAL_METHODS = (FGSM_RS, PGD, APGD_CE)  # adversarial training (models/adversarial_training.py)
STRATEGIES = ("mirrored", "multi_worker", "one_device")
NORMALIZATIONS = ("scale", "standardize")  # of the pixels, in preprocessing_fn (models/preprocessing.py)
WARM_START_LATEST = "latest"  # warm start from the model this pipeline's serving base path serves
GROUP = "model and training"
TUNED_LEARNING_RATE = "learning_rate"  # the hyperparameter every search space has; the others are model options


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """What the Trainer trains; travels as the Trainer component's custom_config. The pipeline fills in
    `class_names` from the data and `input_shape`, when not given, from the model registry."""

    model: str = option("lenet5_wide", "model from the registry", GROUP)
    model_options: dict[str, Any] = option({}, "a keyword of the model's builder, repeatable (e.g. width=32)", GROUP,
                                           flag="--model-option", parse=key_value, metavar="KEY=VALUE", repeat=dict)
    input_shape: Optional[tuple[int, int, int]] = option(None, "H,W,C images are resized to", GROUP, parse=shape,
                                                         default_help="the model's")
    normalization: str = option("scale", "scale pixels to [-1, 1], or standardize by the training split's mean/std",
                                GROUP, choices=NORMALIZATIONS)
    epochs: int = option(30, "the most epochs to train; the best epoch on the validation split is kept", GROUP)
    patience: int = option(5, "stop after this many epochs without a better validation score (the learning rate "
                           "halves after 2); 0: train every epoch", GROUP, metavar="EPOCHS")
    batch_size: int = option(128, "per replica", GROUP)
    learning_rate: float = option(2e-3, "", GROUP)
    strategy: str = option("mirrored", "tf.distribute strategy", GROUP, choices=STRATEGIES)
    translate: float = option(0.0, "augment: random shifts up to this fraction of the image size", GROUP,
                              metavar="FRACTION", default_help="off")
    flip: bool = option(True, "do not augment with random horizontal flips, for images whose mirror image is "
                        "something else (e.g. digits); with flips, the embedding averages an image's and its mirror "
                        "image's", GROUP, flag="--no-flip")
    warm_start: Optional[str] = option(
        None, "initialize from a pushed model (its directory or model base path) or from the served one "
        "('latest'); the head is replaced when the class count differs", GROUP, metavar="PATH|latest")
    freeze_features: bool = option(False, "with --warm-start: train only the classification head", GROUP)
    embedding_dim: int = option(
        64, "end the model in an L2-normalized embedding of this size and a cosine classifier, so that the embed "
        "signature ranks similar images (visual search); 0: the model's features, as built", GROUP, metavar="D")
    instance_weight: float = option(
        1.0, "with an embedding: the weight of the instance term, which trains two views of each image (shifted, "
        "brighter or darker, mirrored) to find each other among the batch's, so that search finds the item itself, "
        "not only its class; 0: off", GROUP, metavar="W")
    seed: int = option(0, "random seed for initialization, shuffling and the attacks' random starts", GROUP)
    adversarial: Optional[str] = option(
        None, "adversarial training: fit on FGSM-from-a-random-start, PGD or APGD-CE copies of each batch", GROUP,
        choices=ADVERSARIAL_METHODS)
    adversarial_epsilon: float = option(0.1, "their L-inf bound on the [0, 1] pixel scale", GROUP, metavar="E")
    adversarial_steps: int = option(7, "PGD's and APGD-CE's steps in training", GROUP)
    class_names: tuple[str, ...] = ()  # in label order; from the data

    def __post_init__(self) -> None:
        """Refuses settings that cannot train a working model (the pitfalls docs/pitfalls.md measures)."""
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0 or self.patience < 0:
            raise TrainingError(
                f"epochs ({self.epochs}), batch size ({self.batch_size}) and learning rate ({self.learning_rate}) "
                f"must be positive, and patience ({self.patience}) not negative."
            )
        if self.embedding_dim < 0 or self.instance_weight < 0:
            raise TrainingError(f"--embedding-dim must be positive (or 0 for the model's features), not "
                                f"{self.embedding_dim}, and --instance-weight not negative, not "
                                f"{self.instance_weight}.")
        if self.strategy not in STRATEGIES:
            raise TrainingError(f"unknown strategy '{self.strategy}'; choose one of {', '.join(STRATEGIES)}.")
        if self.adversarial not in (None, *ADVERSARIAL_METHODS):
            raise TrainingError(f"unknown adversarial training '{self.adversarial}'; choose one of "
                                f"{', '.join(ADVERSARIAL_METHODS)}.")
        if not 0 < self.adversarial_epsilon <= 1 or self.adversarial_steps < 1:
            raise TrainingError(f"adversarial training needs ε in (0, 1] on the [0, 1] pixel scale (got "
                                f"{self.adversarial_epsilon}) and at least one step (got {self.adversarial_steps}).")

    @property
    def two_views(self) -> bool:
        """Whether training batches hold two views of each image, for the instance term (not with adversarial
        training, which fits its own copies of each batch)."""
        return bool(self.embedding_dim and self.instance_weight and not self.adversarial)

    def tuned(self, values: dict[str, Any]) -> "TrainingConfig":
        """This config with the Tuner's values: `learning_rate`, the rest model options (models/tuning.py)."""
        options = {name: value for name, value in values.items() if name != TUNED_LEARNING_RATE}
        return dataclasses.replace(self, learning_rate=values.get(TUNED_LEARNING_RATE, self.learning_rate),
                                   model_options={**self.model_options, **options})

    @classmethod
    def from_custom_config(cls, custom_config: dict[str, Any]) -> "TrainingConfig":
        config = dict(custom_config)
        config["input_shape"] = tuple(config["input_shape"])
        config["class_names"] = tuple(config["class_names"])
        return cls(**config)


def tuned_line(values: dict[str, Any]) -> str:
    """The Tuner's values in words: "learning_rate 0.0021, width 2, dropout 0.1"."""
    return ", ".join(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in values.items())
