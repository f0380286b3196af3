"""Shared fixtures: real Fashion-MNIST slices written in each input format, the `cnnpipe` command, a
pipeline run shared by the tests that only read its outputs, and `cnnpipe serve` in its own process."""

import contextlib
import dataclasses
import fcntl
import functools
import io
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator, Optional


import numpy as np
import pytest
import requests
from PIL import Image

from cnnpipe.pipeline.config import PipelineConfig
from fault_matrix import (observed, pytest_configure, pytest_runtest_logreport,  # noqa: F401
                          pytest_runtest_makereport, pytest_terminal_summary)
from cnnpipe.components.ingestion import formats
from cnnpipe.components.ingestion.formats import read_idx_array
from cnnpipe.pipeline.datasets import FASHION_MNIST


# The slowest modules, slowest first. pytest-xdist (--no-loadscope-reorder) hands modules to its two workers in
# collection order, two each to start with (the first and third to one, the second and fourth to the other), so these
# start at once and the quick ones fill in around them: both workers end together. The two Kubeflow-contract runs are
# modules of their own so that they start side by side; the "vertex" one also makes the shared pipeline run first.
SLOWEST_FIRST = ("test_kubeflow_run.py", "test_kubeflow_run_vertex.py", "faults/test_retraining_day.py",
                 "test_robustness_gate.py", "test_pipeline.py", "test_index.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Puts the tests of SLOWEST_FIRST's modules first, in its order; the others keep theirs."""
    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::")[0]
        return next((i for i, slow in enumerate(SLOWEST_FIRST) if module.endswith(slow)), len(SLOWEST_FIRST))

    items.sort(key=rank)


@functools.lru_cache(maxsize=None)
def _fashion_mnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    path = os.path.join(FASHION_MNIST.path, f"{split}-{{}}-idx{{}}-ubyte.gz")
    return read_idx_array(path.format("images", 3), 3), read_idx_array(path.format("labels", 1), 1)


def fashion_mnist(split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` real images and labels of a Fashion-MNIST split ("train" or "t10k"), read once."""
    if not os.path.isdir(FASHION_MNIST.path):
        pytest.skip(f"Fashion-MNIST is not installed: {FASHION_MNIST.install_hint}")
    images, labels = _fashion_mnist_split(split)
    return images[:count], labels[:count]


def write_idx(directory: str, split: str, images: np.ndarray, labels: np.ndarray) -> str:
    """Writes an IDX pair `<split>-images-idx3-ubyte.gz` / `<split>-labels-idx1-ubyte.gz`."""
    os.makedirs(directory, exist_ok=True)
    return formats.write_idx(os.path.join(directory, split), images, labels)


def write_fashion_mnist_slice(directory: str, train: int, test: int) -> str:
    """A real Fashion-MNIST slice as IDX files with the data set's own train/t10k split."""
    write_idx(directory, "train", *fashion_mnist("train", train))
    write_idx(directory, "t10k", *fashion_mnist("t10k", test))
    return directory


def encode(pixels: np.ndarray, mode: str = "L", size=None, image_format: str = "PNG") -> bytes:
    """Real pixels as an encoded image in a colour `mode`, resized to `size` (width, height)."""
    image = Image.fromarray(pixels).convert(mode)
    if size:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def train_and_export(directory: str, images: np.ndarray, labels: np.ndarray, normalization: str = "scale",
                     epochs: int = 1, seed: int = 0, adversarial: Optional[str] = None) -> str:
    """A LeNet-5 trained briefly on real images as the pipeline trains it (preprocessing_fn analyzed and
    applied by TFT; `adversarial`: by that method at ε 0.1), exported with the Transform graph by
    `signatures.export`; returns the model's path, `directory`/Format-Serving as in a Trainer's Model
    artifact (so `directory` can be imported as one)."""
    import apache_beam as beam  # noqa: PLC0415 - heavy; only the tests that train import them
    import tensorflow as tf  # noqa: PLC0415
    import tensorflow_transform as tft  # noqa: PLC0415
    import tensorflow_transform.beam as tft_beam  # noqa: PLC0415
    import tf_keras as keras  # noqa: PLC0415
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils  # noqa: PLC0415
    from tfx.utils import path_utils  # noqa: PLC0415

    from cnnpipe.core import features  # noqa: PLC0415
    from cnnpipe.models import adversarial_training, signatures, trainer, training_config  # noqa: PLC0415
    from cnnpipe.models.preprocessing import preprocessing_fn  # noqa: PLC0415

    raw_spec = {features.IMAGE: tf.io.FixedLenFeature([1], tf.string),
                features.LABEL: tf.io.FixedLenFeature([1], tf.int64)}
    records = [{features.IMAGE: [encode(p)], features.LABEL: [int(label)]} for p, label in zip(images, labels)]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
    config = {"input_shape": [*images.shape[1:3], 1], "normalization": normalization}
    transform_dir = os.path.join(directory, "transform")
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=os.path.join(directory, "tmp"),
                                                       force_tf_compat_v1=False):
        transform_fn = (pipeline | beam.Create(records), metadata) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing_fn(inputs, config)
        )
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    metadata_io.write_metadata(metadata, os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    tft_output = tft.TFTransformOutput(transform_dir)
    training = training_config.TrainingConfig(model="lenet5", input_shape=tuple(config["input_shape"]), embedding_dim=0,
                                              flip=False, class_names=FASHION_MNIST.class_names, batch_size=32)
    keras.utils.set_random_seed(seed)
    model = trainer.build_model(training)
    fitted = model if adversarial is None else adversarial_training.wrap(
        model, adversarial, training.adversarial_epsilon, training.adversarial_steps, tft_output, training.input_shape)
    trainer.compile_model(fitted, training.learning_rate)
    encoded = tf.constant([[record[features.IMAGE][0]] for record in records])
    x = tft_output.transform_raw_features({features.IMAGE: encoded})[features.IMAGE_XF]
    fitted.fit({features.IMAGE_XF: x}, labels.astype("int64"), batch_size=32, epochs=epochs, verbose=0)
    export_dir = path_utils.serving_model_dir(directory)
    signatures.export(model, tft_output, FASHION_MNIST.class_names, export_dir)
    return export_dir


def small_run_config(data: str, output_dir: str, **settings) -> PipelineConfig:
    """The pipeline's settings for a real Fashion-MNIST slice at `data`: one quick epoch, a low bar to bless,
    both attacks at one ε with a short PGD."""
    defaults = dict(schema="fashion_mnist", class_names=FASHION_MNIST.class_names, epochs=1, batch_size=32,
                    min_accuracy=0.5, epsilons=(0.1,), pgd_steps=3)
    return PipelineConfig.from_options(data=data, output_dir=output_dir, **{**defaults, **settings})


def cnnpipe(*args: str, cwd, timeout: float = 1200) -> subprocess.CompletedProcess:
    """The `cnnpipe` command in a process of its own, its output captured."""
    return subprocess.run([sys.executable, "-m", "cnnpipe.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def versions(serving_base) -> list[str]:
    """What a model's serving directory holds (versions and anything else), sorted; none if it is missing."""
    return sorted(os.listdir(serving_base)) if os.path.isdir(serving_base) else []


SHARED_TRAIN, SHARED_TEST = 2000, 300


@contextlib.contextmanager
def once_per_run(tmp_path_factory, worker_id: str, name: str) -> Iterator[tuple[pathlib.Path, bool]]:
    """A directory `name` shared by every pytest-xdist worker of this test run, held under a lock: yields the
    directory and whether it is still to be made (by the first worker to get here; the others then wait)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if worker_id != "master" else base) / name  # the workers' temp dirs share a parent
    root.mkdir(exist_ok=True)
    with open(root.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / ".done"
        yield root, not done.exists()
        done.touch()


@pytest.fixture(scope="session")
def pushed_run(tmp_path_factory, worker_id) -> PipelineConfig:
    """The real pipeline, run once for the whole test run on a small real slice: one checked version pushed.

    Tests only read it; a test that changes data, outputs or served versions works on a copy."""
    with once_per_run(tmp_path_factory, worker_id, "pushed_run") as (root, to_make):
        config = small_run_config(str(root / "fashion"), str(root / "out"))
        if to_make:
            from cnnpipe.runners import local_runner  # noqa: PLC0415 - TFX

            write_fashion_mnist_slice(config.data, SHARED_TRAIN, SHARED_TEST)
            local_runner.run(config, out=io.StringIO())
    return config


@pytest.fixture(scope="session")
def pushed_outputs(pushed_run) -> dict:
    """The shared run's output artifacts by output key ("examples", "model", "evaluation", ...), from MLMD."""
    from cnnpipe.pipeline import metadata  # noqa: PLC0415 - TFX
    from cnnpipe.pipeline.output_dir import metadata_path  # noqa: PLC0415

    return metadata.run_outputs(metadata_path(pushed_run.output_dir), pushed_run.name)[1]


@dataclasses.dataclass
class Server:
    rest: str  # base URL
    grpc: str  # host:port
    process: subprocess.Popen

    def predict_stub(self):
        import grpc  # noqa: PLC0415
        from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: PLC0415

        return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(self.grpc))

    def status(self, name: str) -> list[dict]:
        return requests.get(f"{self.rest}/v1/models/{name}", timeout=30).json()["model_version_status"]


def cannot_set_up(what: str, result: subprocess.CompletedProcess) -> None:
    """A fault test whose disk cannot be made: skipped on a developer's machine without root, failed under CI or as
    root, where it must run (a green CI with the fault unchecked would claim what was not tested)."""
    reason = f"{what}: {' '.join(map(str, result.args))} exited {result.returncode}: {result.stderr.strip()[-300:]}"
    if os.environ.get("CI") == "true" or os.geteuid() == 0:
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def small_disk(directory, size: str) -> Iterator:
    """A tmpfs of `size` (e.g. "4m") mounted at `directory`/disk while the block runs (root needed: see
    `cannot_set_up`)."""
    disk = directory / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode:
        cannot_set_up("mounting a tmpfs needs root", mounted)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@contextlib.contextmanager
def freezable_disk(directory, size: str = "16M") -> Iterator:
    """An ext4 file system in a loop device mounted at `directory`/disk while the block runs, which `fsfreeze -f`
    can hang (writes block until `fsfreeze -u`, as on a stuck disk); thawed and unmounted at the end (root and loop
    devices needed: see `cannot_set_up`)."""
    image, disk = directory / "disk.ext4", directory / "disk"
    disk.mkdir()
    for command in (["truncate", "-s", size, str(image)], ["mkfs.ext4", "-q", "-F", str(image)],
                    ["mount", "-o", "loop", str(image), str(disk)]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            cannot_set_up("an ext4 loop mount needs root and loop devices", result)
    try:
        yield disk
    finally:
        subprocess.run(["fsfreeze", "-u", str(disk)], capture_output=True)  # in case the test left it frozen
        subprocess.run(["umount", str(disk)], check=True)


@contextlib.contextmanager
def headless_chromium(profile_dir, width: int = 1100, height: int = 800) -> Iterator:
    """Debian's Chromium driven by selenium through its chromedriver, headless and offline, its console logged."""
    from selenium import webdriver  # noqa: PLC0415 - only the page tests drive a browser
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},{height}", f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def serve_command(rest_port: int, grpc_port: int, *options: str) -> list[str]:
    """`cnnpipe serve` on loopback ports, polling every 0.2 s, with `options` (the models: `--serving-dir` or
    `--model-config`)."""
    return [sys.executable, "-m", "cnnpipe.cli.main", "serve", "--host", "127.0.0.1", "--rest-port", str(rest_port),
            "--grpc-port", str(grpc_port), "--poll-seconds", "0.2", *options]


@contextlib.contextmanager
def running_server(serving_dir: Optional[str], *options: str, log_file: Optional[pathlib.Path] = None
                   ) -> Iterator[Server]:
    """`cnnpipe serve` of `serving_dir` (None: the models `options` name) in its own process on free loopback ports,
    its output piped or written to `log_file` (for a long-lived server); ready once the REST API answers (its
    models are loaded before its ports open)."""
    rest_port, grpc_port = free_ports(2)
    models = ["--serving-dir", serving_dir] if serving_dir else []
    with open(log_file, "w") if log_file else contextlib.nullcontext() as log:
        process = subprocess.Popen(serve_command(rest_port, grpc_port, *models, *options),
                                   stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = Server(f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}", process)
    try:
        for _ in range(1500):
            if process.poll() is not None:
                output = log_file.read_text() if log_file else process.stdout.read()
                pytest.fail(f"cnnpipe serve exited with {process.returncode}:\n{output[-3000:]}")
            with contextlib.suppress(requests.ConnectionError):
                requests.get(f"{server.rest}/v1/models/none", timeout=5)
                break
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=60)


CLIENT_PAUSE = 0.02  # seconds between a client's requests: about 80 a second from two clients


@contextlib.contextmanager
def clients_calling(server: Server, request, record: Callable, failures: list[str], clients: int = 2,
                    pause: float = CLIENT_PAUSE) -> Iterator[None]:
    """`clients` threads sending `request` to `server`'s gRPC Predict until the block ends, each `pause` seconds
    after its previous answer: each answer goes to `record`, each error to `failures`.

    The pause keeps the clients from taking a core from the pipeline run they watch (unpaused, the server answered
    some 330 requests a second through a whole retrain); test_serving.py's hot swap calls without pause."""
    import grpc  # noqa: PLC0415

    stop = threading.Event()

    def client() -> None:
        stub = server.predict_stub()
        while not stop.is_set():
            try:
                record(stub.Predict(request, timeout=60))
            except grpc.RpcError as error:
                failures.append(f"{error.code()}: {error.details()}")
            stop.wait(pause)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def version_runs(answers: list[tuple[int, int]]) -> list[list[int]]:
    """Each client's answers (recorded as (client thread id, version) by `clients_calling`'s callers), as the
    versions that answered it in turn: [[1, 2], [1, 2]] for two clients each answered by 1, then by 2. (Across
    clients answers interleave: one client's request under way on the old version may end after the other's first
    answer from the new one.)"""
    by_client: dict[int, list[int]] = {}
    for client, version in answers:
        runs = by_client.setdefault(client, [])
        if not runs or runs[-1] != version:
            runs.append(version)
    return list(by_client.values())


def wait_until(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Polls `condition` until it holds or `seconds` pass: a bound against hanging, not a speed requirement."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)

