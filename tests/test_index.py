"""`cnnpipe index`: the served model indexed anew over a shop's new items and pushed as a new version, which a
running `cnnpipe serve` switches to with its index, never answering with one version's model and another's index."""

import base64
import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from conftest import SHARED_TEST, clients_calling, cnnpipe, encode, fashion_mnist, running_server, versions, wait_until

NEW_ITEMS = 24


@dataclasses.dataclass
class Indexing:
    """What `cnnpipe index` did to a copy of the shared run's serving directory, and what a server answered."""
    serving_base: str
    served: str  # the version served before
    empty: subprocess.CompletedProcess = None  # a catalog folder without images
    broken: subprocess.CompletedProcess = None  # a catalog with an image that will not decode
    left_after_refusals: list[str] = dataclasses.field(default_factory=list)
    indexed: subprocess.CompletedProcess = None
    again: subprocess.CompletedProcess = None  # the same catalog once more
    answers: list[tuple[int, list[str]]] = dataclasses.field(default_factory=list)  # (version, neighbour sources)
    failures: list[str] = dataclasses.field(default_factory=list)
    thumbnail: bytes = b""  # what the server shows for the new version's first neighbour


@pytest.fixture(scope="module")
def new_items(tmp_path_factory) -> list[Path]:
    """Test images the shared run never saw, as one folder of PNGs without classes: the items a shop added today."""
    folder = tmp_path_factory.mktemp("new_items") / "catalog"
    folder.mkdir()
    paths = [folder / f"item-{number}.png" for number in range(SHARED_TEST, SHARED_TEST + NEW_ITEMS)]
    for path, image in zip(paths, fashion_mnist("t10k", SHARED_TEST + NEW_ITEMS)[0][SHARED_TEST:]):
        path.write_bytes(encode(image))
    return paths


def index_command(catalog, root: Path, serving_dir: str, name: str) -> list[str]:
    return ["index", "--catalog", str(catalog), "--output", str(root / "out"), "--serving-dir", serving_dir,
            "--model-name", name]


@pytest.fixture(scope="module")
def indexing(pushed_run, new_items, tmp_path_factory) -> Indexing:
    """Refused catalogs first (none of them pushes), then the new items indexed while two gRPC clients search."""
    root = tmp_path_factory.mktemp("index")
    serving_dir = str(root / "serving")
    served = versions(pushed_run.serving_base)[-1]
    shutil.copytree(os.path.join(pushed_run.serving_base, served), os.path.join(serving_dir, pushed_run.name, served))
    seen = Indexing(os.path.join(serving_dir, pushed_run.name), served)
    catalog = new_items[0].parent
    (root / "empty" / "Bag").mkdir(parents=True)
    seen.empty = cnnpipe(*index_command(root / "empty", root, serving_dir, pushed_run.name), cwd=root)
    broken = shutil.copytree(catalog, root / "broken")
    (broken / "cut-off.png").write_bytes(new_items[0].read_bytes()[:40])
    seen.broken = cnnpipe(*index_command(broken, root, serving_dir, pushed_run.name), cwd=root)
    seen.left_after_refusals = versions(seen.serving_base)

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = pushed_run.name, "search"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([path.read_bytes() for path in new_items[:2]]))
    def record(answer) -> None:
        sources = tf.make_ndarray(answer.outputs["neighbor_sources"])[:, 0]
        seen.answers.append((answer.model_spec.version.value, [source.decode() for source in sources]))

    with running_server(serving_dir) as server:
        with clients_calling(server, request, record, seen.failures):
            seen.indexed = cnnpipe(*index_command(catalog, root, serving_dir, pushed_run.name), cwd=root)
            newest = int(versions(seen.serving_base)[-1])
            wait_until(lambda: bool(seen.answers) and seen.answers[-1][0] == newest)
        body = {"signature_name": "search",
                "instances": [{"b64": base64.b64encode(new_items[0].read_bytes()).decode()}]}
        neighbour = requests.post(f"{server.rest}/v1/models/{pushed_run.name}:predict", json=body,
                                  timeout=60).json()["predictions"][0]["neighbor_ids"][0]
        seen.thumbnail = requests.get(f"{server.rest}/v1/models/{pushed_run.name}/versions/{newest}/items/{neighbour}",
                                      timeout=30).content
    seen.again = cnnpipe(*index_command(catalog, root, serving_dir, pushed_run.name), cwd=root)
    return seen


def search(version_dir: str, images: list[bytes]) -> dict[str, np.ndarray]:
    outputs = tf.saved_model.load(version_dir).signatures["search"](images=tf.constant(images))
    return {key: value.numpy() for key, value in outputs.items()}


def test_an_empty_catalog_and_an_image_that_will_not_decode_are_refused_by_name_and_nothing_is_pushed(indexing):
    assert indexing.empty.returncode != 0 and "empty" in indexing.empty.stderr
    assert indexing.broken.returncode != 0
    assert "cut-off.png" in indexing.broken.stderr and "Traceback" not in indexing.broken.stderr
    assert indexing.left_after_refusals == [indexing.served]


def test_the_new_version_has_the_served_weights_and_finds_the_new_items_first(indexing, new_items):
    assert indexing.indexed.returncode == 0, indexing.indexed.stderr[-3000:]
    old, new = versions(indexing.serving_base)
    assert old == indexing.served and f"Pushed to {indexing.serving_base}/{new}" in indexing.indexed.stdout
    new_dir, old_dir = os.path.join(indexing.serving_base, new), os.path.join(indexing.serving_base, old)
    found = search(new_dir, [path.read_bytes() for path in new_items])
    assert [s.decode() for s in found["neighbor_sources"][:, 0]] == [str(path) for path in new_items]
    np.testing.assert_allclose(found["scores"][:, 0], 1.0, atol=1e-5)
    assert {s.decode() for s in found["neighbor_sources"].ravel()} <= {str(path) for path in new_items}
    assert not found["neighbor_class_names"].astype(bool).any()  # the new items have no classes
    images = tf.constant([encode(pixels) for pixels in fashion_mnist("t10k", 8)[0]])
    outputs = [tf.saved_model.load(d).signatures["predict_image"](images=images)["probabilities"].numpy()
               for d in (old_dir, new_dir)]
    np.testing.assert_array_equal(*outputs)  # the same weights


def test_a_server_switches_model_and_index_together(indexing, new_items):
    """Every answer during the swap is one version's: its model's neighbours from its own catalog and index."""
    assert not indexing.failures
    old, new = (int(version) for version in versions(indexing.serving_base))
    assert {version for version, _ in indexing.answers} == {old, new}
    for version, sources in indexing.answers:
        if version == old:
            assert all(source.startswith("train-images-idx3-ubyte.gz:") for source in sources), sources
        else:
            assert sources == [str(path) for path in new_items[:2]]
    assert indexing.answers[-1][0] == new
    assert indexing.thumbnail == new_items[0].read_bytes()


def test_the_same_catalog_indexed_again_pushes_no_new_version(indexing):
    assert indexing.again.returncode == 0, indexing.again.stderr[-3000:]
    assert len(versions(indexing.serving_base)) == 2
