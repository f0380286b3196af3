"""tuner_fn: the TFX Tuner's entry point (`cnnpipe run --tune TRIALS`).

KerasTuner's Bayesian optimization searches the learning rate and the registry model's search space
(`registry.ModelEntry.search_space`; options set with --model-option stay fixed), starting from the configuration as
given. Each trial trains as the Trainer does: on the train split, scored every epoch on the validation split by
`trainer.monitor`, the learning rate halved on a stall, stopped after --patience; its best epoch is its score. The
search keeps to a time budget: each trial stops at its share of it, and no trial starts after it. The best values
reach the Trainer as TFX's best_hyperparameters artifact (`TrainingConfig.tuned`).

KerasTuner 1.3 works on `tf.keras`, which is tf_keras only with TF_USE_LEGACY_KERAS=1 (cnnpipe/__init__.py).
"""

import functools
import time
from typing import Any, Callable

import keras_tuner as kt
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from cnnpipe.models import registry, trainer
from cnnpipe.models.training_config import TUNED_LEARNING_RATE, TrainingConfig

LEARNING_RATES = (3e-4, 1e-2)  # the log-uniform range searched
PROJECT = "trials"  # KerasTuner's directory of trials, in the Tuner's working directory


def trial_values(hp: kt.HyperParameters, config: TrainingConfig) -> dict[str, Any]:
    """A trial's values: the learning rate and each option of the model's search space not set in `config`; their
    defaults are `config`'s learning rate and the builder's."""
    learning_rate = min(max(config.learning_rate, LEARNING_RATES[0]), LEARNING_RATES[1])
    values = {TUNED_LEARNING_RATE: hp.Float(TUNED_LEARNING_RATE, *LEARNING_RATES, sampling="log",
                                            default=learning_rate)}
    entry = registry.get(config.model)
    defaults = entry.defaults()
    values.update({name: choose(hp, defaults[name]) for name, choose in entry.search_space.items()
                   if name not in config.model_options})
    return values


class TrialDeadline(keras.callbacks.Callback):
    """Stops training after the epoch that ends past `deadline` (a time.monotonic() value)."""

    def __init__(self, deadline: float):
        super().__init__()
        self._deadline = deadline

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.monotonic() >= self._deadline:
            print(f"Trial stopped after epoch {epoch + 1}: its share of --tune-minutes is spent", flush=True)
            self.model.stop_training = True


class BudgetedBayesianOracle(kt.oracles.BayesianOptimizationOracle):
    """Bayesian optimization whose first trial is the search space's defaults (the configuration as given: the best
    trial scores at least what it scores) and that starts no trial after `deadline` (a time.monotonic() value), but
    the first."""

    def __init__(self, deadline: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.deadline = deadline

    def populate_space(self, trial_id: str) -> dict:
        if not self.trials:
            return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": dict(self.hyperparameters.values)}
        if time.monotonic() >= self.deadline:
            print("Tuning stopped: --tune-minutes is spent", flush=True)
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)


class Trials(kt.HyperModel):
    """Builds each trial's model from `config` with the trial's values and fits it as the Trainer fits, for at most
    `trial_seconds` or until `deadline`."""

    def __init__(self, config: TrainingConfig, tft_output: tft.TFTransformOutput,
                 validation: Callable[[int], tuple[tf.Tensor, tf.Tensor]], trial_seconds: float, deadline: float):
        super().__init__()
        self._config, self._tft_output, self._validation = config, tft_output, validation
        self._trial_seconds, self._deadline = trial_seconds, deadline
        self._trial: tuple[TrainingConfig, keras.Model] | None = None  # the config and model to export of the trial

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        config = self._config.tuned(trial_values(hp, self._config))
        model, fitted = trainer.trainable(config, self._tft_output)
        self._trial = config, model
        return fitted

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, callbacks: tuple = (), **kwargs: Any):
        config, exported = self._trial
        deadline = min(time.monotonic() + self._trial_seconds, self._deadline)
        scoring = trainer.selection(exported, model, config, self._validation, report_dir=None)
        return model.fit(*args, callbacks=[*scoring, *callbacks, TrialDeadline(deadline)], **kwargs)


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """The tuner and its fit arguments, from the Tuner's custom_config: {"training": TrainingConfig's fields,
    "trials": the most trials, "minutes": the time budget}."""
    config = TrainingConfig.from_custom_config(fn_args.custom_config["training"])
    trials, seconds = fn_args.custom_config["trials"], fn_args.custom_config["minutes"] * 60
    keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    strategy = trainer.make_strategy(config.strategy)
    train, validation = trainer.datasets(fn_args, tft_output, config, strategy.num_replicas_in_sync)
    deadline = time.monotonic() + seconds
    objective = kt.Objective(trainer.monitor(config), direction="max")
    oracle = BudgetedBayesianOracle(deadline, objective=objective, max_trials=trials,
                                    num_initial_points=max(1, trials // 2), seed=config.seed)
    hypermodel = Trials(config, tft_output, functools.partial(trainer.validation_images, fn_args, tft_output),
                        seconds / trials, deadline)
    tuner = kt.Tuner(oracle=oracle, hypermodel=hypermodel, distribution_strategy=strategy,
                     directory=fn_args.working_dir, project_name=PROJECT, overwrite=True)
    print(f"Tuning {config.model}: up to {trials} trials in {seconds / 60:g} minutes, each scored by "
          f"{objective.name} on the validation split", flush=True)
    return TunerFnResult(tuner=tuner, fit_kwargs={"x": train, "validation_data": validation, "epochs": config.epochs,
                                                  "verbose": 2})
