"""Catastrophic overfitting caught while adversarial training runs.

FGSM-based training can collapse within an epoch (Wong, Rice and Kolter, "Fast is better than free", 2020): the
model learns to defeat the one-step attack it trains on, its accuracy under FGSM stays high, while under a
multi-step attack it falls to about zero. Training loss and FGSM accuracy do not show it. `CollapseCheck` measures
the model under PGD on held-out validation images at the end of every epoch (logged as `pgd_accuracy` beside the
epoch's metrics, so TensorBoard plots it and the Trainer keeps the epoch with the most, best_epoch.py) and, when that
accuracy falls more than `MAX_DROP` below the best epoch's, stops training with the best epoch's weights back in
place. What it saw is written for the run's summary.
"""

from typing import Optional

import tensorflow as tf
import tf_keras as keras

from cnnpipe.models import trainer_reports
from cnnpipe.models.adversarial_training import AdversarialTraining

PGD_STEPS = 10
HELD_OUT_IMAGES = 512
MAX_DROP = 0.2  # of accuracy under PGD below the best epoch's: a collapse, not an epoch's noise
REPORT_FILE = "collapse_check.json"  # in the Trainer's ModelRun directory
LOG_KEY = "pgd_accuracy"


class CollapseCheck(keras.callbacks.Callback):
    """Stops `trained` when its accuracy under PGD-`PGD_STEPS` on (`images`, `labels`), transformed held-out
    images, collapses; keeps the best epoch's weights then; writes what it measured to `report_dir`."""

    def __init__(self, trained: AdversarialTraining, images: tf.Tensor, labels: tf.Tensor, epsilon: float,
                 report_dir: Optional[str]):
        super().__init__()
        self._trained, self._images, self._labels = trained, images, labels
        self._report = {"attack": f"pgd-{PGD_STEPS}", "epsilon": epsilon, "images": int(labels.shape[0]),
                        "max_drop": MAX_DROP, "accuracy_per_epoch": [], "collapsed_at_epoch": None, "kept_epoch": None}
        self._report_dir = report_dir
        self._best_weights: Optional[list] = None
        self._best_epoch = 0

    def pgd_accuracy(self) -> float:
        """The share of the held-out images the model still classifies after PGD."""
        attacked = self._trained.attack(self._images, self._labels, pgd_steps=PGD_STEPS)
        predicted = tf.argmax(self._trained.probabilities(attacked), axis=-1, output_type=self._labels.dtype)
        return float(tf.reduce_mean(tf.cast(predicted == self._labels, tf.float32)))

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        accuracy = self.pgd_accuracy()
        if logs is not None:
            logs[LOG_KEY] = accuracy
        history = self._report["accuracy_per_epoch"]
        accuracy = round(accuracy, 4)
        best = max(history, default=-1.0)
        history.append(accuracy)
        if accuracy > best:  # the first of equal epochs, as the best epoch's choice (best_epoch.py)
            self._best_weights, self._best_epoch = self._trained.model.get_weights(), epoch + 1
        elif best - accuracy > MAX_DROP:
            self._trained.model.set_weights(self._best_weights)
            self.model.stop_training = True
            self._report["collapsed_at_epoch"], self._report["kept_epoch"] = epoch + 1, self._best_epoch
            print(f"Catastrophic overfitting at epoch {epoch + 1}: accuracy under {self._report['attack']} on "
                  f"{self._report['images']} held-out images fell to {accuracy:.1%} from {best:.1%}; training "
                  f"stops with epoch {self._report['kept_epoch']}'s weights.", flush=True)

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        if self._report["collapsed_at_epoch"] is None:
            self._report["kept_epoch"] = self._best_epoch  # the Trainer keeps the most robust epoch (best_epoch.py)
        trainer_reports.write(self._report_dir, REPORT_FILE, self._report)

    @property
    def report(self) -> dict:
        return self._report


def read_report(model_run_dir: str) -> dict:
    """What the check of a run's Trainer wrote, or {} (a run without adversarial training)."""
    return trainer_reports.read(model_run_dir, REPORT_FILE)
