"""PipelineConfig: everything one run needs, filled from the CLI's flags (or by tests).

The CLI builds its options from these defaults, so this module imports no TensorFlow at load time;
the methods that inspect data or build models import what they need.
"""

import dataclasses
import os
import re
from typing import TYPE_CHECKING, Optional

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import DEFAULT_OUTPUT_DIR, SERVING_SUBDIR
from cnnpipe.models.training_config import TrainingConfig
from cnnpipe.pipeline import datasets
from cnnpipe.pipeline.thresholds import Thresholds
from cnnpipe.robustness.settings import AttackSettings
from cnnpipe.schemas import schema_path

if TYPE_CHECKING:
    from cnnpipe.components.ingestion.source import DataSource

DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
# Kubeflow (pipeline/kubeflow_runner.py): every core of the step's pod, one Beam worker process each.
KUBEFLOW_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")
KUBEFLOW_PACKAGE = "kubeflow/pipeline.yaml"
KUBEFLOW_EXPERIMENT = "cnnpipe"


@dataclasses.dataclass
class PipelineConfig:
    """A run's settings. `data` is a known data set's name or a path to images."""

    data: str = datasets.FASHION_MNIST.name
    data_format: Optional[str] = None  # detected when None
    class_names: Optional[tuple[str, ...]] = None  # from the data when None
    schema: Optional[str] = None  # curated schema name or path; None: the data set's, else inferred
    eval_percent: int = 10  # hash split, for data without a train/eval split of its own
    model: str = "lenet5"
    input_shape: Optional[tuple[int, int, int]] = None  # the model's default when None
    normalization: str = "scale"
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 2e-3
    strategy: str = "mirrored"
    model_options: dict = dataclasses.field(default_factory=dict)  # the model builder's keyword arguments
    translate: float = 0.0  # augmentation: random shifts, a fraction of the image size
    flip: bool = False  # augmentation: random horizontal flips
    warm_start: Optional[str] = None  # a pushed model's path, or "latest": the last blessed model
    freeze_features: bool = False  # with warm_start: train only the classification head
    seed: int = 0  # weights' initialization and shuffling; the same seed and data train the same model
    adversarial: Optional[str] = None  # "fgsm-rs" or "pgd": train on attacked batches
    adversarial_epsilon: float = 0.1  # on the [0, 1] pixel scale
    adversarial_steps: int = 7  # PGD's steps when training
    min_accuracy: float = 0.85  # lower bound on clean eval accuracy for the blessing
    max_accuracy_drop: float = 0.0  # how much worse than the last blessed model may be blessed
    compare_with_baseline: bool = True  # False: no latest-blessed-model resolver (open-source KFP lacks one)
    attacks: tuple[str, ...] = AttackSettings.attacks  # evaluated on attacked eval images too; () for none
    epsilons: tuple[float, ...] = AttackSettings.epsilons  # on the [0, 1] pixel scale
    pgd_steps: int = AttackSettings.pgd_steps
    robust_epsilon: float = Thresholds.robust_epsilon  # the ε whose attacked slices the bounds below gate
    min_fgsm_accuracy: float = Thresholds.min_fgsm_accuracy
    min_pgd_accuracy: float = Thresholds.min_pgd_accuracy
    max_robust_accuracy_drop: Optional[float] = Thresholds.max_robust_accuracy_drop
    output_dir: str = DEFAULT_OUTPUT_DIR
    serving_dir: Optional[str] = None  # <output_dir>/serving when None
    model_name: Optional[str] = None  # the served model's name; the data set's name when None
    keep_versions: Optional[int] = None  # the Pusher keeps only the newest K versions; None keeps all
    span_window: int = 1  # with data in span-N/ directories: train on the newest K spans
    beam_args: tuple[str, ...] = DEFAULT_BEAM_ARGS

    @property
    def known_dataset(self) -> Optional[datasets.Dataset]:
        return datasets.DATASETS.get(self.data)

    @property
    def data_path(self) -> str:
        return self.known_dataset.path if self.known_dataset else self.data

    def data_source(self) -> "DataSource":
        """Inspects the data; errors name what is missing and how to get it."""
        from cnnpipe.components.ingestion import source  # noqa: PLC0415 - TensorFlow
        known = self.known_dataset
        if known and not os.path.isdir(known.path):
            raise CnnpipeError(f"{known.name} is not installed at {known.path}; install it with: {known.install_hint}")
        class_names = self.class_names or (known.class_names if known else None)
        return source.detect(self.data_path, self.data_format, class_names)

    def schema_file(self) -> Optional[str]:
        """The curated schema to validate against, or None to infer one with SchemaGen."""
        schema = self.schema or (self.known_dataset.schema if self.known_dataset else None)
        if schema is None or os.path.isfile(schema):
            return schema
        try:
            return schema_path(schema)
        except FileNotFoundError as error:
            raise CnnpipeError(f"--schema {schema}: {error}") from None

    @property
    def name(self) -> str:
        """The served model's name, also the TFX pipeline's name."""
        if self.model_name:
            return self.model_name
        base = self.known_dataset.name if self.known_dataset else os.path.basename(os.path.normpath(self.data))
        return re.sub(r"[^A-Za-z0-9_]+", "_", base).strip("_") or "images"

    @property
    def serving_base(self) -> str:
        """TF Serving's model base path: versions go to <serving_dir>/<name>/<version>/."""
        return os.path.join(self.serving_dir or os.path.join(self.output_dir, SERVING_SUBDIR), self.name)

    def thresholds(self) -> Thresholds:
        gated = self.min_fgsm_accuracy > 0 or self.min_pgd_accuracy > 0 or self.max_robust_accuracy_drop is not None
        if gated and self.robust_epsilon not in self.epsilons:
            raise CnnpipeError(f"--robust-epsilon {self.robust_epsilon} is not one of --epsilons "
                               f"{','.join(map(str, self.epsilons))}: the bounds gate an ε that is attacked.")
        return Thresholds(self.min_accuracy, self.max_accuracy_drop, self.robust_epsilon, self.min_fgsm_accuracy,
                          self.min_pgd_accuracy, self.max_robust_accuracy_drop)

    def attack_settings(self) -> Optional[AttackSettings]:
        """The AdversarialExamples settings, or None when no attack is evaluated."""
        if not self.attacks:
            return None
        return AttackSettings(attacks=tuple(self.attacks), epsilons=tuple(self.epsilons), pgd_steps=self.pgd_steps,
                              seed=self.seed)

    def training_config(self, class_names: tuple[str, ...]) -> TrainingConfig:
        from cnnpipe.models import registry  # noqa: PLC0415 - TensorFlow

        return TrainingConfig(
            model=self.model,
            input_shape=tuple(self.input_shape or registry.get(self.model).input_shape),
            class_names=class_names,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            strategy=self.strategy,
            seed=self.seed,
            translate=self.translate,
            flip=self.flip,
            model_options=dict(self.model_options),
            warm_start=self.warm_start,
            freeze_features=self.freeze_features,
            adversarial=self.adversarial,
            adversarial_epsilon=self.adversarial_epsilon,
            adversarial_steps=self.adversarial_steps,
        )
