"""Safe rollout with version labels: pushes keep what models.config says and become the canary under labels, pruning
keeps labelled versions, and `cnnpipe promote` / `rollback` move `stable` while clients call it, none failing."""

import os
import shutil
import threading

import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2

from conftest import (cnnpipe, clients_calling, encode, fashion_mnist, running_server, version_runs, versions,
                      wait_until)
from cnnpipe.components.pusher import prune
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.serving import model_config, rollout

MODEL = "fashion"


@pytest.fixture
def serving_dir(pushed_run, tmp_path) -> str:
    """The shared run's pushed version copied as versions 1, 2 and 3 of MODEL, with models.config written."""
    pushed = os.path.join(pushed_run.serving_base, versions(pushed_run.serving_base)[-1])
    for version in (1, 2, 3):
        shutil.copytree(pushed, tmp_path / "serving" / MODEL / str(version))
    model_config.write(str(tmp_path / "serving"))
    return str(tmp_path / "serving")


def entry(serving_dir: str):
    return model_config.entry(serving_dir, MODEL)


def test_without_labels_a_push_is_served_as_the_newest_version(serving_dir):
    rollout.push(serving_dir, MODEL, 3)
    assert not entry(serving_dir).version_labels and not entry(serving_dir).HasField("model_version_policy")


def test_after_a_promote_each_push_is_the_canary_beside_stable_and_hand_written_fields_stay(serving_dir):
    assert rollout.promote(serving_dir, MODEL, 1) == (1, None)
    path = os.path.join(serving_dir, model_config.MODELS_CONFIG)
    config = model_config.read(path)
    model_config.entry_of(config, MODEL).logging_config.sampling_config.sampling_rate = 0.25  # set by hand
    tf.io.gfile.GFile(path, "w").write(text_format.MessageToString(config))
    rollout.push(serving_dir, MODEL, 2)
    served = entry(serving_dir)
    assert dict(served.version_labels) == {"stable": 1, "canary": 2}
    assert list(served.model_version_policy.specific.versions) == [1, 2]
    assert served.logging_config.sampling_config.sampling_rate == 0.25
    record = rollout.push_record(os.path.join(serving_dir, MODEL, "1"))
    assert record["previous_stable"] is None and record["promoted_by"] and record["promoted_at"]

    assert rollout.promote(serving_dir, MODEL, "canary") == (2, 1)
    promoted = entry(serving_dir)
    assert dict(promoted.version_labels) == {"stable": 2}
    assert list(promoted.model_version_policy.specific.versions) == [1, 2]  # the replaced one stays loaded
    rollout.push(serving_dir, MODEL, 3)
    assert dict(entry(serving_dir).version_labels) == {"stable": 2, "canary": 3}
    assert list(entry(serving_dir).model_version_policy.specific.versions) == [1, 2, 3]
    assert rollout.rollback(serving_dir, MODEL) == (1, 2)
    assert dict(entry(serving_dir).version_labels) == {"stable": 1, "canary": 3}


def test_pruning_keeps_the_labelled_versions(serving_dir):
    rollout.promote(serving_dir, MODEL, 1)
    rollout.push(serving_dir, MODEL, 3)
    removed = prune(os.path.join(serving_dir, MODEL), 1, rollout.protected_versions(entry(serving_dir)))
    assert removed == [os.path.join(serving_dir, MODEL, "2")]
    assert model_config.versions(os.path.join(serving_dir, MODEL)) == [1, 3]


def test_wrong_promotes_and_an_unmergeable_config_are_refused_naming_what(serving_dir):
    with pytest.raises(CnnpipeError, match=r"no version 7 .* \(versions: 1, 2, 3\)"):
        rollout.promote(serving_dir, MODEL, 7)
    with pytest.raises(CnnpipeError, match="has no canary"):
        rollout.promote(serving_dir, MODEL, "canary")
    with pytest.raises(CnnpipeError, match="nothing to roll back to"):
        rollout.rollback(serving_dir, MODEL)
    with pytest.raises(CnnpipeError, match="serves no model 'shoes' .models: fashion."):
        rollout.promote(serving_dir, "shoes", 1)
    path = os.path.join(serving_dir, model_config.MODELS_CONFIG)
    with open(path, "a") as file:
        file.write("model_config_list { config { name: ")  # cut while someone edited it
    before = open(path).read()
    with pytest.raises(model_config.ModelConfigError, match=f"{path}: .*cannot be merged"):
        rollout.push(serving_dir, MODEL, 3)
    assert open(path).read() == before  # left as it was


def test_promote_and_rollback_move_stable_under_load_with_no_failed_request(serving_dir, tmp_path):
    """Clients call `stable` by label over gRPC while the CLI promotes the canary and rolls back; the server reads
    models.config again every poll."""
    assert cnnpipe("promote", "1", "--serving-dir", serving_dir, "--model-name", MODEL, cwd=tmp_path).returncode == 0
    rollout.push(serving_dir, MODEL, 2)
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.version_label = MODEL, "stable"
    request.model_spec.signature_name = "predict_image"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([encode(fashion_mnist("t10k", 1)[0][0])]))
    answered: list[tuple[int, int]] = []  # (client thread, version)
    lock = threading.Lock()

    def record(response) -> None:
        with lock:
            answered.append((threading.get_ident(), response.model_spec.version.value))

    def each_client_answered_by(version: int) -> bool:
        runs = version_runs(list(answered))
        return len(runs) == 2 and all(run[-1] == version for run in runs)

    failures: list[str] = []
    config = os.path.join(serving_dir, model_config.MODELS_CONFIG)
    with running_server(None, "--model-config", config) as server:
        wait_until(lambda: {s["version"] for s in server.status(MODEL) if s["state"] == "AVAILABLE"} == {"1", "2"})
        with clients_calling(server, request, record, failures):
            wait_until(lambda: len(answered) > 20)
            promoted = cnnpipe("promote", "canary", "--serving-dir", serving_dir, "--model-name", MODEL, cwd=tmp_path)
            wait_until(lambda: each_client_answered_by(2))
            rolled_back = cnnpipe("rollback", "--serving-dir", serving_dir, "--model-name", MODEL, cwd=tmp_path)
            wait_until(lambda: each_client_answered_by(1))
            count = len(answered)
            wait_until(lambda: len(answered) > count + 20)
    assert promoted.stdout.strip() == (f"cnnpipe: {MODEL} stable is version 2 (was 1, still loaded: cnnpipe rollback "
                                       "goes back to it)")
    assert rolled_back.stdout.strip() == f"cnnpipe: {MODEL} stable is version 1 again (was 2, still loaded)"
    assert failures == []
    assert version_runs(answered) == [[1, 2, 1], [1, 2, 1]]  # each client: stable 1, then 2, then 1 again
