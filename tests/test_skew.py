"""`cnnpipe skew`: real images sent to `cnnpipe serve --log-requests`, compared with the served version's training
data; brightened images are found skewed by name, ordinary ones are not."""

import base64
import os

import numpy as np
import pytest
import requests

from conftest import cnnpipe, encode, fashion_mnist, running_server
from cnnpipe.serving.model_config import versions

IMAGES, PER_REQUEST = 400, 50


def send_logged(pushed_run, logs, images: np.ndarray) -> None:
    """`images` sent to predict_image through a server that logs its requests into `logs`."""
    with running_server(os.path.dirname(pushed_run.serving_base), "--log-requests", str(logs)) as server:
        for start in range(0, len(images), PER_REQUEST):
            batch = [{"b64": base64.b64encode(encode(p)).decode()} for p in images[start:start + PER_REQUEST]]
            answer = requests.post(f"{server.rest}/v1/models/{pushed_run.name}:predict", timeout=60,
                                   json={"signature_name": "predict_image", "instances": batch})
            assert answer.status_code == 200, answer.text
        server.process.terminate()
        assert server.process.wait(timeout=60) == 0


@pytest.fixture(scope="module")
def logged(pushed_run, tmp_path_factory) -> dict[str, str]:
    images = fashion_mnist("t10k", IMAGES)[0]
    root = tmp_path_factory.mktemp("requests")
    send_logged(pushed_run, root / "ordinary", images)
    send_logged(pushed_run, root / "brightened", np.clip(images.astype(int) + 60, 0, 255).astype(np.uint8))
    return {name: str(root / name) for name in ("ordinary", "brightened")}


def test_ordinary_requests_show_no_skew(pushed_run, logged, tmp_path):
    result = cnnpipe("skew", "--requests", logged["ordinary"], "--serving-dir",
                     os.path.dirname(pushed_run.serving_base), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    version = versions(pushed_run.serving_base)[-1]
    assert result.stdout.startswith(f"{pushed_run.name} version {version}: {IMAGES // PER_REQUEST} logged requests, "
                                    f"{IMAGES} images; no skew; against its training data: ")
    assert "brightness 0.0" in result.stdout and "height 0.0000" in result.stdout


@pytest.mark.fault("serving", "served requests whose images are brighter than the training data (request log)",
                   "cnnpipe skew names brightness with its JS divergence; exit 2")
def test_brightened_requests_are_skewed_in_brightness(pushed_run, logged, tmp_path, observed):
    result = cnnpipe("skew", "--requests", logged["brightened"], "--output", os.path.dirname(
        os.path.dirname(pushed_run.serving_base)), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr[-2000:]
    assert "; skew in brightness (Jensen-Shannon divergence over 0.1);" in result.stdout
    observed(result.stdout.strip())


def test_a_directory_without_request_logs_is_named(tmp_path):
    result = cnnpipe("skew", "--requests", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"cnnpipe: {tmp_path}: no request logs here; give the --log-requests directory of "
                                     "`cnnpipe serve`.")
