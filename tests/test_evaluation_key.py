"""The evaluation key: the served model's pushed metrics are reused only when every part of what they measured is the
same now, and the part that differs is named."""

import json
import os

import pytest
import tensorflow as tf

from conftest import encode, fashion_mnist
from cnnpipe.components.blessing import evaluation_key
from cnnpipe.components.blessing.eval_config import eval_config
from cnnpipe.components.blessing.thresholds import Thresholds
from cnnpipe.components.ingestion.formats import make_example
from cnnpipe.core.names import PUSHED_EVALUATION
from cnnpipe.robustness.settings import AttackSettings


def saved_model(directory: str, scale: float) -> str:
    """A real SavedModel (with TensorFlow's fingerprint.pb) of a function that differs with `scale`."""
    module = tf.Module()
    module.scale = tf.Variable(scale)
    module.f = tf.function(lambda x: x * module.scale, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, directory)
    return directory


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """A served version with metrics pushed under the key they have, and the eval records they measured."""
    root = tmp_path_factory.mktemp("key")
    images, labels = fashion_mnist("t10k", 20)
    records = str(root / "eval.gz")
    with tf.io.TFRecordWriter(records, "GZIP") as writer:
        for index, (pixels, label) in enumerate(zip(images, labels)):
            writer.write(make_example(encode(pixels), int(label), str(label), f"t10k:{index}", 28, 28))
    settings = AttackSettings(attacks=("fgsm", "pgd"), epsilons=(0.1,), pgd_steps=3)
    version = saved_model(str(root / "serving" / "1"), 2.0)
    data = evaluation_key.data_digest([records], settings)
    config = eval_config(Thresholds(), settings.attacks)
    metrics = os.path.join(version, PUSHED_EVALUATION)
    os.makedirs(metrics)
    evaluation_key.write(metrics, evaluation_key.key(data, config, version))
    return dict(root=root, records=records, settings=settings, version=version, data=data, config=config,
                metrics=metrics)


def test_the_same_measurement_of_the_same_model_reuses_its_metrics(served):
    assert evaluation_key.changed_parts(served["version"], served["data"], served["config"]) == []
    assert evaluation_key.stored_metrics(served["version"], served["data"], served["config"]) == served["metrics"]
    stored = evaluation_key.read(served["metrics"])
    assert set(stored) == {"data", "eval_config", "model", "attack_code", "tfma"}
    assert stored["model"] == tf.saved_model.experimental.read_fingerprint(served["version"]).singleprint()


def test_other_thresholds_measure_the_same_values(served):
    stricter = eval_config(Thresholds(min_accuracy=0.9, max_accuracy_drop=0.0), served["settings"].attacks)
    assert evaluation_key.stored_metrics(served["version"], served["data"], stricter) == served["metrics"]


@pytest.mark.parametrize("change, part", [
    ("data", "data"), ("eval_config", "eval_config"), ("model", "model"), ("attack_code", "attack_code"),
])
def test_a_changed_part_is_not_reused_and_is_named(served, tmp_path, change, part):
    version, data, config = served["version"], served["data"], served["config"]
    if change == "data":  # one more ε: other copies of the same records
        data = evaluation_key.data_digest([served["records"]], AttackSettings(attacks=("fgsm", "pgd"),
                                                                              epsilons=(0.1, 0.2), pgd_steps=3))
    elif change == "eval_config":  # other slices: another measurement
        config = eval_config(Thresholds(), ())
    elif change == "model":  # another SavedModel under the same version, its metrics left behind
        version = saved_model(str(tmp_path / "1"), 3.0)
        os.makedirs(os.path.join(version, PUSHED_EVALUATION))
        evaluation_key.write(os.path.join(version, PUSHED_EVALUATION), evaluation_key.read(served["metrics"]))
    else:  # the metrics were measured by other attack code
        version = str(tmp_path / "copy")
        tf.io.gfile.makedirs(version)
        for name in ("saved_model.pb", "fingerprint.pb"):
            tf.io.gfile.copy(os.path.join(served["version"], name), os.path.join(version, name))
        os.makedirs(os.path.join(version, PUSHED_EVALUATION))
        stored = {**evaluation_key.read(served["metrics"]), "attack_code": "0" * 64}
        with open(os.path.join(version, PUSHED_EVALUATION, evaluation_key.KEY_FILE), "w") as file:
            json.dump(stored, file)
    assert evaluation_key.changed_parts(version, data, config) == [part]
    assert evaluation_key.stored_metrics(version, data, config) is None


def test_a_version_without_a_key_or_copies_without_a_digest_reuse_nothing(served, tmp_path):
    bare = saved_model(str(tmp_path / "bare"), 2.0)
    assert evaluation_key.stored_metrics(bare, served["data"], served["config"]) is None
    assert evaluation_key.stored_metrics(served["version"], "", served["config"]) is None
