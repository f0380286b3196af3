"""AtomicPusher's publish: whole versions appear at once, with increasing integer names."""

import os
import time

import pytest
import tensorflow as tf
from tensorflow.core.protobuf import fingerprint_pb2
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from cnnpipe.components.pusher import (
    DELETING_PREFIX,
    KEEP_VERSIONS_KEY,
    STAGING_PREFIX,
    Executor,
    PushError,
    existing_versions,
    prune,
    publish,
)
from cnnpipe.components.served_model import newest_served
from cnnpipe.serving.rollout import push_record
from cnnpipe.core.names import PUSH_RECORD
from cnnpipe.serving import model_config


def write_fingerprint(model_dir, weights: int, object_graph: int = 1) -> None:
    """A fingerprint.pb as TensorFlow writes it: hashes of the graph, signatures, weights and object graph."""
    fingerprint = fingerprint_pb2.FingerprintDef(graph_def_program_hash=1, signature_def_hash=2,
                                                 checkpoint_hash=weights, saved_object_graph_hash=object_graph)
    with open(os.path.join(model_dir, "fingerprint.pb"), "wb") as f:
        f.write(fingerprint.SerializeToString())


def make_model_dir(path, content: str) -> str:
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "saved_model.pb"), "w") as f:
        f.write(content)
    with open(os.path.join(path, "variables", "variables.index"), "w") as f:
        f.write(content)
    return str(path)


def test_versions_increase_and_hold_the_whole_model(tmp_path):
    base = str(tmp_path / "serving" / "fashion")
    first = publish(make_model_dir(tmp_path / "a", "first"), base)
    second = publish(make_model_dir(tmp_path / "b", "second"), base)
    assert existing_versions(base) == [int(os.path.basename(first)), int(os.path.basename(second))]
    assert int(os.path.basename(second)) > int(os.path.basename(first))
    with open(os.path.join(second, "variables", "variables.index")) as f:
        assert f.read() == "second"
    assert not [name for name in os.listdir(base) if name.startswith(STAGING_PREFIX)]


def test_only_names_of_ascii_digits_are_versions(tmp_path):
    """The one rule (core/versions.py) the server, the Pusher and warm start share: what else is in a base path
    is not a version, and a digit that int() cannot read ("²") stops nothing."""
    base = tmp_path / "fashion"
    for name in ["10", "9", f"{STAGING_PREFIX}1@host-0", f"{DELETING_PREFIX}3", "3a", "-4", "²", "models.config"]:
        (base / name).mkdir(parents=True)
    assert existing_versions(str(base)) == [9, 10]
    assert existing_versions(str(tmp_path / "missing")) == []


def test_a_directory_without_a_saved_model_is_refused(tmp_path):
    base = tmp_path / "serving" / "fashion"
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        publish(str(tmp_path / "missing-model"), str(base))
    assert not base.exists()


def test_a_failed_copy_leaves_no_version_and_no_staging(tmp_path):
    base = tmp_path / "serving" / "fashion"
    model = make_model_dir(tmp_path / "a", "first")
    os.symlink(tmp_path / "gone", os.path.join(model, "variables", "variables.data"))  # the copy fails midway
    with pytest.raises(PushError, match=f"cannot be written under {base} .*Nothing was published"):
        publish(model, str(base))
    assert os.listdir(base) == []


def test_the_model_already_served_is_not_pushed_again(tmp_path):
    base = str(tmp_path / "serving" / "fashion")
    model = make_model_dir(tmp_path / "a", "first")
    write_fingerprint(model, weights=3)
    first = publish(model, base)
    assert publish(model, base) == first
    # Exported again (EmbeddingIndex does on every run): same graph, signatures and weights, a new object graph.
    write_fingerprint(model, weights=3, object_graph=2)
    assert publish(model, base) == first
    assert existing_versions(base) == [int(os.path.basename(first))]
    write_fingerprint(model, weights=4)
    assert publish(model, base) != first


def test_prune_keeps_the_newest_versions(tmp_path):
    base = str(tmp_path / "serving" / "fashion")
    paths = [publish(make_model_dir(tmp_path / str(i), f"model {i}"), base) for i in range(4)]
    assert prune(base, 2) == paths[:2]
    assert existing_versions(base) == [int(os.path.basename(path)) for path in paths[2:]]
    with pytest.raises(ValueError, match="at least 1"):
        prune(base, 0)


def test_models_config_lists_every_served_model_in_tf_serving_format(tmp_path):
    serving = tmp_path / "serving"
    publish(make_model_dir(tmp_path / "a", "a"), str(serving / "fashion"))
    publish(make_model_dir(tmp_path / "b", "b"), str(serving / "digits"))
    (serving / "empty").mkdir()  # no versions: not a model yet
    path = model_config.write(str(serving))
    text = open(path).read()
    assert text.startswith("model_config_list {")
    config = model_config.read(path)
    assert [(c.name, c.base_path, c.model_platform) for c in config.model_config_list.config] == [
        ("digits", str(serving / "digits"), "tensorflow"),
        ("fashion", str(serving / "fashion"), "tensorflow"),
    ]
    assert sorted(os.listdir(serving)) == ["digits", "empty", "fashion", "models.config"]  # no temporary file left


def test_a_damaged_models_config_is_named(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { nam: 'x' } }")
    with pytest.raises(ValueError, match="models.config: not a TF Serving model config"):
        model_config.read(str(path))


def test_the_executor_pushes_blessed_models_only_and_keeps_the_newest_versions(tmp_path):
    """AtomicPusher's executor as the pipeline runs it, with keep_versions 2 and no push check."""
    serving = tmp_path / "serving"
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
        base_directory=str(serving / "fashion")))
    exec_properties = {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination),
                       KEEP_VERSIONS_KEY: 2}

    def push(name: str, blessed: bool) -> standard_artifacts.PushedModel:
        model = standard_artifacts.Model()
        model.uri = str(tmp_path / "trainer" / name)
        make_model_dir(tmp_path / "trainer" / name / "Format-Serving", name)
        blessing = standard_artifacts.ModelBlessing()
        blessing.uri = str(tmp_path / "evaluator" / name)
        blessing.set_int_custom_property("blessed", int(blessed))
        pushed = standard_artifacts.PushedModel()
        pushed.uri = str(tmp_path / "pusher" / name)
        Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]}, exec_properties)
        return pushed

    pushes = [push(f"model-{i}", blessed=True) for i in range(3)]
    assert [p.get_int_custom_property("pushed") for p in pushes] == [1, 1, 1]
    versions = [p.get_string_custom_property("pushed_version") for p in pushes]
    assert sorted(os.listdir(serving / "fashion")) == sorted(versions[1:])  # the oldest was pruned
    assert (serving / "fashion" / versions[2] / "saved_model.pb").read_text() == "model-2"
    rejected = push("model-3", blessed=False)
    assert rejected.get_int_custom_property("pushed") == 0
    assert sorted(os.listdir(serving / "fashion")) == sorted(versions[1:])
    [config] = model_config.read(str(serving / "models.config")).model_config_list.config
    assert (config.name, config.base_path) == ("fashion", str(serving / "fashion"))


def test_on_an_object_store_the_graph_is_written_last(tmp_path, monkeypatch):
    """TensorFlow's ram:// filesystem renames a directory file by file, as GCS and S3 do. There a version is
    written in place, and whenever a server polling the base path could find its saved_model.pb, every other file
    of the model, and the push record, is there already."""
    model = make_model_dir(tmp_path / "model", "first")
    write_fingerprint(model, weights=3)
    base = f"ram://{tmp_path.name}/serving/fashion"
    expected = sorted(["saved_model.pb", "fingerprint.pb", "variables/variables.index", PUSH_RECORD])
    seen_with_graph = []
    copy = tf.io.gfile.copy

    def copy_then_look(source: str, destination: str, overwrite: bool = False) -> None:
        copy(source, destination, overwrite)
        for version in existing_versions(base):
            version_dir = f"{base}/{version}"
            if tf.io.gfile.exists(f"{version_dir}/saved_model.pb"):
                seen_with_graph.append(sorted(os.path.relpath(os.path.join(d, f), version_dir)
                                              for d, _, files in tf.io.gfile.walk(version_dir) for f in files))

    monkeypatch.setattr(tf.io.gfile, "copy", copy_then_look)
    version = publish(model, base, {"model_uri": "a Trainer's Model"})
    assert seen_with_graph == [expected]
    assert newest_served(base) == version and push_record(version) == {"model_uri": "a Trainer's Model"}


def test_on_an_object_store_a_version_a_killed_push_left_is_not_the_model_pushed(tmp_path):
    """A push killed mid-way leaves a version without its saved_model.pb (fingerprint.pb copied already): pushing
    the same model again writes a complete version rather than taking that one for it."""
    model = make_model_dir(tmp_path / "model", "first")
    write_fingerprint(model, weights=3)
    base = f"ram://{tmp_path.name}/serving/fashion"
    half = f"{base}/{int(time.time()) - 60}"
    tf.io.gfile.makedirs(half)
    tf.io.gfile.copy(os.path.join(model, "fingerprint.pb"), f"{half}/fingerprint.pb")
    version = publish(model, base)
    assert version != half and newest_served(base) == version
    assert tf.io.gfile.exists(f"{version}/saved_model.pb")
