"""The best epoch kept: every epoch is scored on the validation split, the learning rate is halved when the score
stalls, training stops after `patience` epochs without a better score, and the best epoch's weights are the model's.

The score (the Trainer chooses it, `trainer.selection`) is validation accuracy; accuracy under PGD with adversarial
training (collapse_check.py measures it); for a model with a search embedding, validation precision@10: each of up to
PRECISION_IMAGES validation images queries the others by the embedding the exported `embed` signature computes
(leave one out; same class = relevant). What was kept is written for the run's summary (REPORT_FILE, in the
Trainer's ModelRun directory).
"""

from typing import Optional

import tensorflow as tf
import tf_keras as keras

from cnnpipe.models import trainer_reports

PRECISION_AT = 10
PRECISION_IMAGES = 2000
PRECISION_KEY = "val_precision_at_10"
REPORT_FILE = "best_epoch.json"
LR_FACTOR, LR_PATIENCE = 0.5, 2  # the learning rate is halved after LR_PATIENCE epochs without a better score
MIN_LR_SHARE = 1 / 64  # of the initial learning rate
# A better score beats the best by more than this: smaller gains are within the noise of a validation split of a few
# thousand images (accuracy's standard error on 6,000 images at 92% is 0.0035), and counting them kept the learning
# rate high for epochs that bought nothing.
MIN_DELTA = 0.002
SCORE_NAMES = {PRECISION_KEY: "precision@10", "val_accuracy": "accuracy", "pgd_accuracy": "accuracy under PGD"}


class ValidationPrecision(keras.callbacks.Callback):
    """Logs PRECISION_KEY every epoch: leave-one-out precision@10 of `embedder`'s output over (`images`, `labels`)
    (precision over all the other images when there are no more than ten)."""

    def __init__(self, embedder: keras.Model, images: tf.Tensor, labels: tf.Tensor):
        super().__init__()
        self._embedder, self._images, self._labels = embedder, images, tf.reshape(labels, [-1])

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        embeddings = tf.math.l2_normalize(self._embedder.predict(self._images, batch_size=512, verbose=0), axis=-1)
        similarity = tf.linalg.set_diag(tf.matmul(embeddings, embeddings, transpose_b=True),
                                        tf.fill([tf.shape(embeddings)[0]], -2.0))  # an image is not its neighbour
        # a validation split of fewer than PRECISION_AT + 1 images has fewer neighbours to rank
        neighbours = tf.math.top_k(similarity, k=max(1, min(PRECISION_AT, int(tf.shape(similarity)[0]) - 1))).indices
        relevant = tf.gather(self._labels, neighbours) == self._labels[:, None]
        if logs is not None:
            logs[PRECISION_KEY] = float(tf.reduce_mean(tf.cast(relevant, tf.float32)))


class BestEpoch(keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping on `monitor` (higher is better) that always ends with the best epoch's weights and
    writes what it kept to `report_dir` (none: not written)."""

    def __init__(self, monitor: str, patience: int, report_dir: Optional[str]):
        super().__init__(monitor=monitor, mode="max", patience=patience, min_delta=MIN_DELTA, restore_best_weights=True)
        self._report_dir = report_dir
        self._scores: list[float] = []

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._scores.append(round(float((logs or {}).get(self.monitor, float("nan"))), 4))
        super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        super().on_train_end(logs)
        report = {"monitor": self.monitor, "patience": self.patience, "scores": self._scores,
                  "kept_epoch": self.best_epoch + 1, "epochs_run": len(self._scores),
                  "stopped_early": self.stopped_epoch > 0}
        print(kept_line(report), flush=True)
        trainer_reports.write(self._report_dir, REPORT_FILE, report)


def callbacks(monitor: str, patience: int, learning_rate: float, report_dir: Optional[str]
              ) -> list[keras.callbacks.Callback]:
    """The learning-rate halving and the best epoch on `monitor`, a validation score logged before they run."""
    return [keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=LR_FACTOR, patience=LR_PATIENCE,
                                              min_delta=MIN_DELTA, min_lr=learning_rate * MIN_LR_SHARE, verbose=0),
            BestEpoch(monitor, patience, report_dir)]


def kept_line(report: dict) -> str:
    """The kept epoch in words, for the Trainer's log and the run's summary."""
    scores, kept = report["scores"], report["kept_epoch"]
    score = SCORE_NAMES.get(report["monitor"], report["monitor"])
    line = f"Kept epoch {kept} of {report['epochs_run']}: {score} on the validation split {scores[kept - 1]:.4f}"
    if report["stopped_early"]:
        line += f"; stopped after {report['patience']} epochs without a better one"
    return line


def read_report(model_run_dir: str) -> dict:
    """What a run's Trainer kept, or {} (a Trainer that did not write it)."""
    return trainer_reports.read(model_run_dir, REPORT_FILE)
