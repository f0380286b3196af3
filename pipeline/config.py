"""PipelineConfig: everything one run needs, filled from the CLI's flags (or by tests).

The CLI generates its flags from these fields, so this module imports no TensorFlow at load time;
the methods that inspect data or build models import what they need.
"""

import dataclasses
import os
import re
from typing import TYPE_CHECKING, Any, Optional

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import DEFAULT_OUTPUT_DIR, resolve_serving_dir
from cnnpipe.core.options import names, option, options_of
from cnnpipe.models.training_config import TrainingConfig
from cnnpipe.pipeline import datasets
from cnnpipe.components.blessing.thresholds import Thresholds
from cnnpipe.robustness.settings import AttackSettings
from cnnpipe.schemas import schema_path

if TYPE_CHECKING:
    from cnnpipe.components.ingestion.source import DataSource

DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
# Kubeflow (runners/kubeflow_runner.py): every core of the step's pod, one Beam worker process each.
KUBEFLOW_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")
KUBEFLOW_PACKAGE = "kubeflow/pipeline.yaml"
# KFP pipeline spec schemas: open-source Kubeflow Pipelines 2.x accepts only 2.1 (`runtimeValue.constant`
# parameters); Vertex AI Pipelines accepts both.
KUBEFLOW_SPEC_VERSIONS = ("2.1", "2.0")
KUBEFLOW_EXPERIMENT = "cnnpipe"


@dataclasses.dataclass
class PipelineConfig:
    """A run's settings: where the data is and where the run writes, and a section for each stage's settings.
    `cnnpipe`'s flags are generated from these fields (core/options.py); `from_options` reads them back."""

    data: str = option(datasets.FASHION_MNIST.name, "a known data set's name or a path to images", "data")
    data_format: Optional[str] = option(None, "the data's format", "data", flag="--format",
                                        choices=("idx", "folder", "tfrecord"), default_help="detected")
    class_names: Optional[tuple[str, ...]] = option(None, "comma-separated, in label order", "data", parse=names,
                                                    default_help="from the data")
    schema: Optional[str] = option(None, "curated schema name in schemas/ or a path", "data",
                                   default_help="the data set's; inferred by SchemaGen for other data")
    eval_percent: int = option(10, "eval share when the data has no split of its own", "data")
    validation_percent: int = option(10, "share of the training images held out for validation (the best epoch, "
                                     "early stopping) when the data has no validation split of its own", "data")
    span_window: int = option(1, "data in DATA/span-N/ directories: ingest the newest span, train on the newest K",
                              "data", metavar="K")
    allow_duplicates: bool = option(False, "go on when an image appears in two splits or under two classes (the "
                                    "summary names them)", "data")
    accept_drift: bool = option(False, "go on when the data drifted from what the served model was trained on "
                                "(the schema's drift comparators); the summary records it", "data")
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    tune: int = option(0, "first search the learning rate and the model's search space with TFX's Tuner (KerasTuner's "
                       "Bayesian optimization, each trial scored on the validation split) over up to this many "
                       "trials; the Trainer trains with the best", "model and training", metavar="TRIALS",
                       default_help="off")
    tune_minutes: float = option(20.0, "the Tuner's time budget: each trial stops at its share, and none starts "
                                 "after it", "model and training", metavar="MINUTES")
    thresholds: Thresholds = dataclasses.field(default_factory=Thresholds)
    robustness: AttackSettings = dataclasses.field(default_factory=AttackSettings)  # the Evaluator's attacked slices
    search: bool = option(True, "no visual search: no catalog index, no search signature", "visual search",
                          flag="--no-search")
    search_top_k: int = option(10, "catalog items the search signature returns per image", "visual search",
                               metavar="K")
    catalog: Optional[str] = option(None, "the images search answers with: any format --data takes, with "
                                    "their own classes, or one folder of images without classes", "visual search",
                                    metavar="PATH", default_help="the training split")
    output_dir: str = option(DEFAULT_OUTPUT_DIR, "pipeline root, metadata and logs", "outputs", flag="--output")
    serving_dir: Optional[str] = option(None, "TF Serving base directory", "outputs",
                                        default_help="OUTPUT/serving; on Kubeflow PIPELINE_ROOT/serving")
    model_name: Optional[str] = option(None, "served model name", "outputs", default_help="the data set's name")
    keep_versions: Optional[int] = option(None, "keep only the newest K pushed versions", "outputs", metavar="K",
                                          default_help="keep all")
    notify_url: Optional[str] = option(None, "POST each run's outcome (its outcome.json: pushed, not blessed and why, "
                                       "or failed and where) to this URL, e.g. a chat channel's incoming webhook; "
                                       "tried again on failure, never failing the run", "outputs", metavar="URL",
                                       default_help="none")
    beam_args: tuple[str, ...] = option(DEFAULT_BEAM_ARGS, "Beam pipeline option, repeatable, e.g. "
                                        "--beam-arg=--runner=DataflowRunner (kubeflow/README.md has Dataflow's, "
                                        "Flink's and Spark's)", "outputs",
                                        flag="--beam-arg", repeat=tuple, metavar="OPTION",
                                        default_help=f"{' '.join(DEFAULT_BEAM_ARGS)}; on Kubeflow "
                                        f"{' '.join(KUBEFLOW_BEAM_ARGS)}")

    @classmethod
    def from_options(cls, **options: Any) -> "PipelineConfig":
        """The config with these settings, named as their flags are (`epochs=1`, `min_accuracy=0.5`, whatever
        their section), and the defaults for the rest; unknown names raise TypeError."""
        return cls().with_options(**options)

    def with_options(self, **options: Any) -> "PipelineConfig":
        """A copy with these settings changed, named as their flags are."""
        changes: dict[str, Any] = {name: {} for name in SECTIONS}
        for key, value in options.items():
            section = next((name for name, settings in SECTIONS.items() if key in _flag_names(settings)), None)
            if section:
                changes[section][key] = value
            else:
                changes[key] = value
        for name in SECTIONS:
            changes[name] = dataclasses.replace(getattr(self, name), **changes[name])
        return dataclasses.replace(self, **changes)

    def options(self) -> dict[str, Any]:
        """Every setting that has a flag, by name, whatever its section."""
        return {field.name: getattr(settings, field.name)
                for settings in (self, *(getattr(self, name) for name in SECTIONS)) for field in options_of(settings)}

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
        data = source.detect(self.data_path, self.data_format, class_names)
        if not data.class_names:
            raise CnnpipeError(f"{self.data_path}: a folder of images without classes; training needs them. Put each "
                               "class's images in a folder named after it (a --catalog may be a folder without "
                               "classes).")
        return data

    def catalog_source(self) -> Optional["DataSource"]:
        """The --catalog images, inspected as --data is; None to index the training split."""
        from cnnpipe.components.ingestion import source  # noqa: PLC0415 - TensorFlow
        if self.catalog and not self.search:
            raise CnnpipeError("--catalog is what visual search answers with: drop --no-search, or drop --catalog.")
        return source.detect(self.catalog) if self.catalog else None

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
        return os.path.join(resolve_serving_dir(self.output_dir, self.serving_dir), self.name)

    def checked_thresholds(self) -> Thresholds:
        """The blessing's bounds, once each gated ε is one the run attacks."""
        t = self.thresholds
        if not self.search and (t.min_retrieval_precision > 0 or t.min_instance_recall > 0
                                or t.max_retrieval_precision_drop is not None):
            raise CnnpipeError("--min-retrieval-precision, --min-instance-recall and --max-retrieval-precision-drop "
                               "gate visual search: drop --no-search, or drop them.")
        if t.min_robust_accuracy > 0 and len(self.robustness.attacks) < 2:
            raise CnnpipeError("--min-robust-accuracy gates the worst case of two or more --attacks (e.g. "
                               "fgsm,pgd,apgd-ce,apgd-dlr); with one, bound that attack's accuracy instead.")
        gated = (t.min_fgsm_accuracy > 0 or t.min_pgd_accuracy > 0 or t.min_robust_accuracy > 0
                 or t.max_robust_accuracy_drop is not None)
        if gated and t.robust_epsilon not in self.robustness.epsilons:
            raise CnnpipeError(f"--robust-epsilon {t.robust_epsilon} is not one of --epsilons "
                               f"{','.join(map(str, self.robustness.epsilons))}: the bounds gate an ε that is "
                               "attacked.")
        return t

    def attack_settings(self) -> Optional[AttackSettings]:
        """The AdversarialExamples settings (the attacks' random starts from the run's seed, the worst case at the
        gated ε), or None: no attack."""
        if not self.robustness.attacks:
            return None
        return dataclasses.replace(self.robustness, seed=self.training.seed,
                                   worst_case_epsilon=self.thresholds.robust_epsilon)

    def tuning(self) -> Optional[tuple[int, float]]:
        """The Tuner's most trials and its minutes, or None: no Tuner."""
        if self.tune < 0 or self.tune_minutes <= 0:
            raise CnnpipeError(f"--tune {self.tune} --tune-minutes {self.tune_minutes:g}: give a number of trials (0: "
                               "no tuning) and a positive time budget in minutes.")
        return (self.tune, self.tune_minutes) if self.tune else None

    def training_config(self, class_names: tuple[str, ...]) -> TrainingConfig:
        """The Trainer's config for data with `class_names`, its input shape the model's unless given."""
        from cnnpipe.models import registry  # noqa: PLC0415 - TensorFlow

        shape = self.training.input_shape or registry.get(self.training.model).input_shape
        return dataclasses.replace(self.training, input_shape=tuple(shape), class_names=tuple(class_names))


SECTIONS = {"training": TrainingConfig, "thresholds": Thresholds, "robustness": AttackSettings}  # PipelineConfig's


def _flag_names(settings: type) -> set[str]:
    return {field.name for field in options_of(settings)}


def flags() -> dict[str, dataclasses.Field]:
    """The fields of PipelineConfig and its sections that are `cnnpipe` flags, by name."""
    return {field.name: field for settings in (PipelineConfig, *SECTIONS.values()) for field in options_of(settings)}
