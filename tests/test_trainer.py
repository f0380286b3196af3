"""The Trainer's pieces: augmentation on real images, strategy selection."""

import dataclasses
import time

import numpy as np
import pytest
import tensorflow as tf
import keras_tuner as kt
import tf_keras as keras

from conftest import fashion_mnist
from cnnpipe.attacks import eight_bit
from cnnpipe.core.errors import TrainingError
from cnnpipe.core import features
from cnnpipe.models import (adversarial_training, best_epoch, collapse_check, signatures, trainer, training_config,
                            tuning)


def real_batch(count: int = 64) -> tf.Tensor:
    images, _ = fashion_mnist("train", count)
    return tf.constant(images[..., None].astype("float32") / 127.5 - 1)


def test_no_augmentation_by_default():
    assert trainer.augmentation(0.0, False) is None


def test_flips_mirror_some_images_and_leave_the_others():
    batch = real_batch()
    tf.keras.utils.set_random_seed(1)
    flipped = trainer.augmentation(0.0, True)(batch, training=True).numpy()
    mirrored = [np.array_equal(out, np.flip(image, axis=1)) for out, image in zip(flipped, batch.numpy())]
    unchanged = [np.array_equal(out, image) for out, image in zip(flipped, batch.numpy())]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 0 < sum(mirrored) < len(mirrored)


def test_translation_moves_images_within_their_pixel_range():
    batch = real_batch()
    shifted = trainer.augmentation(0.1, False)(batch, training=True).numpy()
    assert shifted.shape == batch.shape
    assert shifted.min() >= -1.0 - 1e-6 and shifted.max() <= 1.0 + 1e-6
    moved = [not np.allclose(out, image) for out, image in zip(shifted, batch.numpy())]
    assert sum(moved) > len(moved) // 2


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ValueError, match="mirrored, multi_worker, one_device"):
        trainer.make_strategy("tpu")


def test_raw_pixels_stop_training_and_normalized_ones_pass():
    images, _ = fashion_mnist("train", 32)
    raw = tf.constant(images[..., None].astype("float32"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not normalized"):
        trainer.require_normalized(raw)
    np.testing.assert_array_equal(trainer.require_normalized(raw / 127.5 - 1), raw / 127.5 - 1)


@pytest.mark.parametrize("settings, message", [
    ({"batch_size": 0}, "must be positive"),
    ({"strategy": "tpu"}, "unknown strategy 'tpu'"),
    ({"adversarial": "fgsm"}, "unknown adversarial training 'fgsm'; choose one of fgsm-rs, pgd, apgd-ce"),
    ({"adversarial": "pgd", "adversarial_epsilon": 25.0}, r"ε in \(0, 1\] on the \[0, 1\] pixel scale \(got 25.0\)"),
])
def test_training_settings_that_break_a_cnn_are_refused(settings, message):
    with pytest.raises(TrainingError, match=message):
        training_config.TrainingConfig(model="lenet5", input_shape=(28, 28, 1), class_names=("a", "b"), **settings)


@pytest.mark.parametrize("method", ["fgsm-rs", "pgd", "apgd-ce"])
def test_adversarial_batches_stay_within_epsilon_and_the_pixel_range_and_raise_the_loss(method):
    images, labels = fashion_mnist("train", 1024)
    x = tf.constant(images[..., None].astype("float32") / 127.5 - 1)  # --normalization scale
    y = tf.constant(labels, tf.int64)
    tf.keras.utils.set_random_seed(0)
    config = training_config.TrainingConfig(model="lenet5", input_shape=(28, 28, 1), class_names=tuple("abcdefghij"))
    model = trainer.compile_model(trainer.build_model(config), 2e-3)
    model.fit({features.IMAGE_XF: x}, y, epochs=3, verbose=0)  # a model whose loss an attack can raise
    wrapped = adversarial_training.AdversarialTraining(model, method, 0.1, 5, tf.constant(1 / 127.5), tf.constant(-1.0))
    attacked = wrapped.attack(x, y)
    assert float(tf.reduce_max(tf.abs(attacked - x))) <= 0.1 * 255 / 127.5 + 1e-6  # ε 0.1 of the [0, 1] scale
    assert float(tf.reduce_min(attacked)) >= -1.0 and float(tf.reduce_max(attacked)) <= 1.0

    def loss(batch: tf.Tensor) -> float:
        return float(tf.reduce_mean(
            tf.keras.losses.sparse_categorical_crossentropy(y, model({features.IMAGE_XF: batch}))))

    noise = tf.clip_by_value(x + tf.sign(tf.random.normal(tf.shape(x))) * 0.1 * 255 / 127.5, -1.0, 1.0)
    assert loss(attacked) > 2 * loss(noise) > loss(x)  # the gradient's direction, not just any change of ε


@pytest.mark.parametrize("method", ["fgsm-rs", "pgd", "apgd-ce"])
def test_adversarial_batches_move_pixels_at_the_edge_of_the_pixel_range(method):
    """A model whose loss grows with every pixel's brightness: each black pixel is attacked to the full ε,
    including those whose random start pointed below black."""
    inputs = keras.Input((28, 28, 1), name=features.IMAGE_XF)
    weights = keras.initializers.Constant(np.stack([np.zeros(784), np.full(784, 0.01)], axis=1))
    model = keras.Model(inputs,
                        keras.layers.Dense(2, "softmax", kernel_initializer=weights)(keras.layers.Flatten()(inputs)))
    black = -tf.ones((8, 28, 28, 1))  # --normalization scale
    wrapped = adversarial_training.AdversarialTraining(model, method, 0.1, 7, tf.constant(1 / 127.5), tf.constant(-1.0))
    attacked = wrapped.attack(black, tf.zeros(8, tf.int64)).numpy()  # label 0: brighter is worse
    np.testing.assert_allclose(attacked, -1 + 0.1 * 255 / 127.5, atol=1e-5)


@pytest.mark.parametrize("method, pgd_steps, step_fraction", [("fgsm-rs", 1, 1.25), ("pgd", 5, 0.5)])
def test_the_training_attack_in_8bit_units_makes_the_evaluators_pgd_images(method, pgd_steps, step_fraction,
                                                                            monkeypatch):
    """Both attacks step through attacks/linf_ball.py: in 8-bit units (scale 1, offset 0), rounding to whole
    levels and from the Evaluator's seeded random start, the training attack makes the Evaluator's PGD images.

    The loss rises or falls (by pixel) with the pixel's squared distance from a random level: pixels swing
    about it, where the start, the rounding and black and white matter, or run to the edge of the ball.
    Cross-entropy and `attack_loss` step every pixel the same way here, and the large margin breaks no image
    (so PGD never stops early).
    """
    images, _ = fashion_mnist("train", 16)
    pixels, labels = tf.constant(images[..., None], tf.float32), tf.ones(16, tf.int64)
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 255, (28, 28, 1)) + 0.5
    weights = np.stack([np.zeros(784), rng.choice([-1e-7, 1e-7], 784)], axis=1)
    classify = keras.layers.Dense(2, "softmax", kernel_initializer=keras.initializers.Constant(weights),
                                  bias_initializer=keras.initializers.Constant([0.0, 8.0]))
    inputs = keras.Input((28, 28, 1), name=features.IMAGE_XF)
    distances = keras.layers.Lambda(lambda x: tf.square(x - levels))(inputs)
    model = keras.Model(inputs, classify(keras.layers.Flatten()(distances)))
    seed = (0, 3)
    monkeypatch.setattr(adversarial_training, "_uniform", lambda shape, budget: tf.random.stateless_uniform(
        shape, tf.constant(seed, tf.int64), -budget, budget))
    wrapped = adversarial_training.AdversarialTraining(model, method, 0.2, 5, tf.constant(1.0), tf.constant(0.0))
    wrapped.ball = dataclasses.replace(wrapped.ball, whole_levels=True)
    trained_on = wrapped.attack(pixels, labels).numpy()
    (evaluated,) = eight_bit.pgd(model, pixels, labels, [0.2], pgd_steps, step_fraction, seed)
    np.testing.assert_array_equal(trained_on, evaluated.numpy())
    assert np.all(np.argmax(model(evaluated), axis=1) == 1)
    moved = np.abs(evaluated.numpy() - pixels.numpy())
    assert moved.max() == 51 and np.mean((0 < moved) & (moved < 51)) > 0.05  # not only the corners of the ball


def test_a_collapse_of_robustness_stops_training_and_restores_the_most_robust_epoch(tmp_path):
    """Robustness lost in training is caught as catastrophic overfitting is: three epochs of FGSM-RS training make
    a model that keeps about half of held-out images under PGD-10 at ε 0.1; training the same model on clean images
    then takes that robustness away (accuracy under PGD falls toward zero, as it does in a collapse) while its
    training loss looks fine. The check stops training there and puts the most robust epoch's weights back."""
    images, labels = fashion_mnist("train", 4512)
    x, y = images[..., None].astype("float32") / 127.5 - 1, labels.astype("int64")
    tf.keras.utils.set_random_seed(0)
    config = training_config.TrainingConfig(model="lenet5", input_shape=(28, 28, 1), class_names=tuple("abcdefghij"))
    model = trainer.build_model(config)
    wrapped = adversarial_training.AdversarialTraining(model, "fgsm-rs", 0.1, 1, tf.constant(1 / 127.5),
                                                       tf.constant(-1.0))
    trainer.compile_model(wrapped, 5e-3)
    check = collapse_check.CollapseCheck(wrapped, tf.constant(x[4000:]), tf.constant(y[4000:]), 0.1, str(tmp_path))
    history = wrapped.fit({features.IMAGE_XF: x[:4000]}, y[:4000], epochs=3, callbacks=[check], verbose=0)
    assert history.history[collapse_check.LOG_KEY] == pytest.approx(check.report["accuracy_per_epoch"], abs=1e-4)
    robust = max(check.report["accuracy_per_epoch"])
    assert robust > 0.35 and check.report["collapsed_at_epoch"] is None
    after_epoch_3 = [w.copy() for w in model.get_weights()]

    trainer.compile_model(model, 5e-3)  # the same weights, now fitted on clean images only
    clean = model.fit({features.IMAGE_XF: x[:4000]}, y[:4000], initial_epoch=3, epochs=10, callbacks=[check], verbose=0)
    report = collapse_check.read_report(str(tmp_path))
    assert report == check.report and report["collapsed_at_epoch"] is not None
    assert len(clean.epoch) == report["collapsed_at_epoch"] - 3 < 7  # stopped at the collapse
    best = max(report["accuracy_per_epoch"])
    assert report["accuracy_per_epoch"][-1] < best - collapse_check.MAX_DROP
    assert report["accuracy_per_epoch"][report["kept_epoch"] - 1] == best  # the most robust epoch's weights are back
    if report["kept_epoch"] == 3:
        for kept, saved in zip(model.get_weights(), after_epoch_3):
            np.testing.assert_array_equal(kept, saved)
    assert check.pgd_accuracy() > best - 0.1  # the restored model is the robust one again (a new random start)


def scaled(split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = fashion_mnist(split, count)
    return images[..., None].astype("float32") / 127.5 - 1, labels.astype("int64")


def test_the_best_validation_epoch_is_kept_and_training_stops_after_the_patience(tmp_path):
    """Real LeNet-5 on real images: from epoch 3 on the learning rate is large enough to wreck the model, so the
    validation accuracy falls; training stops `patience` epochs after the best one, with its weights back."""
    (x, y), validation = scaled("train", 600), scaled("t10k", 300)
    keras.utils.set_random_seed(0)
    config = training_config.TrainingConfig(model="lenet5", input_shape=(28, 28, 1), embedding_dim=0,
                                            class_names=tuple("abcdefghij"), epochs=10, patience=2)
    model = trainer.compile_model(trainer.build_model(config), config.learning_rate)
    kept = trainer.selection(model, model, config, lambda count: validation, str(tmp_path))
    wreck = keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate if epoch < 2 else 5.0)
    history = model.fit(x, y, batch_size=32, epochs=config.epochs, validation_data=validation, verbose=0,
                        callbacks=[wreck, *kept])
    report = best_epoch.read_report(str(tmp_path))
    scores = history.history["val_accuracy"]
    assert report["scores"] == [round(score, 4) for score in scores] and report["monitor"] == "val_accuracy"
    assert report["stopped_early"] and report["epochs_run"] == len(scores) < config.epochs
    kept = report["kept_epoch"]  # the best, but for gains within best_epoch.MIN_DELTA
    assert max(scores) - scores[kept - 1] <= best_epoch.MIN_DELTA and report["epochs_run"] == kept + 2
    assert model.evaluate(*validation, verbose=0)[1] == pytest.approx(scores[kept - 1], abs=1e-6)  # its weights


@pytest.mark.parametrize("count, ranked", [(400, 10), (7, 6)])  # a split of 7 images: each has 6 neighbours
def test_validation_precision_is_leave_one_out_precision_at_10_of_the_embedding(count, ranked):
    images, labels = scaled("t10k", count)
    keras.utils.set_random_seed(0)
    config = training_config.TrainingConfig(model="lenet5", input_shape=(28, 28, 1), embedding_dim=16,
                                            class_names=tuple("abcdefghij"))
    model = trainer.build_model(config)
    embedder = signatures.embedding_model(model)
    logs: dict = {}
    best_epoch.ValidationPrecision(embedder, tf.constant(images), tf.constant(labels)).on_epoch_end(0, logs)
    embeddings = embedder.predict(images, verbose=0)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    neighbours = np.argsort(-similarity, axis=1, kind="stable")[:, :ranked]
    assert logs[best_epoch.PRECISION_KEY] == pytest.approx((labels[neighbours] == labels[:, None]).mean(), abs=1e-3)


def test_the_tuner_searches_the_models_space_on_validation_within_its_time_budget(tmp_path, capsys):
    """KerasTuner's search with the Tuner's oracle and trials on real images: the configuration as given is tried
    first; each trial is scored by its best validation epoch; an option set in the config is not searched; a spent
    budget lets one one-epoch trial run."""
    (x, y), validation = scaled("train", 600), scaled("t10k", 300)
    config = training_config.TrainingConfig(model="lenet5", input_shape=(28, 28, 1), embedding_dim=0, epochs=3,
                                            class_names=tuple("abcdefghij"), model_options={"width": 0.5})

    def search(seconds: float) -> tuple[list[kt.engine.trial.Trial], list[str]]:
        """The trials in the order they ran, and the epoch each kept, in words."""
        deadline = time.monotonic() + seconds
        oracle = tuning.BudgetedBayesianOracle(deadline, objective=kt.Objective("val_accuracy", "max"), max_trials=3,
                                               num_initial_points=2, seed=0)
        tuner = kt.Tuner(oracle=oracle, hypermodel=tuning.Trials(config, None, lambda count: validation, seconds / 3,
                                                                deadline),
                         directory=str(tmp_path), project_name=f"budget-{seconds}", overwrite=True)
        capsys.readouterr()
        tuner.search(x, y, validation_data=validation, epochs=config.epochs, batch_size=64, verbose=0)
        kept = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Kept epoch")]
        return sorted(tuner.oracle.trials.values(), key=lambda trial: trial.trial_id), kept

    trials, kept = search(600)
    assert len(trials) == len(kept) == 3 and all(" of 3:" in line for line in kept)
    for trial, line in zip(trials, kept):  # its best epoch's score; the Trainer keeps the first within MIN_DELTA of it
        assert -5e-5 <= trial.score - float(line.split()[-1]) <= best_epoch.MIN_DELTA + 5e-5
    for trial in trials:
        values = trial.hyperparameters.values
        assert set(values) == {"learning_rate", "dropout"}  # width is set: not searched
        assert tuning.LEARNING_RATES[0] <= values["learning_rate"] <= tuning.LEARNING_RATES[1]
    values = max(trials, key=lambda trial: trial.score).hyperparameters.values
    best = config.tuned(values)
    assert best.learning_rate == values["learning_rate"]
    assert best.model_options == {"width": 0.5, "dropout": values["dropout"]}
    assert trainer.build_model(best).get_layer("conv1").filters == 3  # the set width, 0.5 of 6
    given = {"learning_rate": config.learning_rate, "dropout": 0.0}  # the config's and the builder's
    assert trials[0].hyperparameters.values == given  # tried first
    spent, kept = search(0)
    assert len(spent) == 1 and kept[0].startswith("Kept epoch 1 of 1:")
    assert spent[0].hyperparameters.values == given
