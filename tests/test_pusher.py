"""AtomicPusher's publish: whole versions appear at once, with increasing integer names."""

import os

import pytest
from tfx.dsl.io.filesystem import NotFoundError

from cnnpipe.components.pusher import STAGING_PREFIX, existing_versions, publish


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


def test_a_directory_without_a_saved_model_is_refused(tmp_path):
    base = tmp_path / "serving" / "fashion"
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        publish(str(tmp_path / "missing-model"), str(base))
    assert not base.exists()


def test_a_failed_copy_leaves_no_version_and_no_staging(tmp_path):
    base = tmp_path / "serving" / "fashion"
    model = make_model_dir(tmp_path / "a", "first")
    os.symlink(tmp_path / "gone", os.path.join(model, "variables", "variables.data"))  # the copy fails midway
    with pytest.raises(NotFoundError):
        publish(model, str(base))
    assert os.listdir(base) == []


def test_the_model_already_served_is_not_pushed_again(tmp_path):
    base = str(tmp_path / "serving" / "fashion")
    model = make_model_dir(tmp_path / "a", "first")
    with open(os.path.join(model, "fingerprint.pb"), "wb") as f:
        f.write(b"checksums of model a")
    first = publish(model, base)
    assert publish(model, base) == first
    assert existing_versions(base) == [int(os.path.basename(first))]
