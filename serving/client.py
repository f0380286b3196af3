"""`cnnpipe predict` and `cnnpipe search`: the top classes of image files (the `predict_image` signature) and their
most similar catalog items (`search`), from a server over REST or gRPC, or in-process from the newest pushed version.
"""

import base64
import json
import os
import urllib.error
import urllib.request
from typing import Optional

import numpy as np

from cnnpipe.core import images as core_images
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import (ALL_CLASS_NAMES, INPUTS, NEIGHBOR_CLASS_NAMES, NEIGHBOR_IDS, NEIGHBOR_SOURCES,
                                PREDICT_IMAGE, PROBABILITIES, SCORES, SEARCH)
from cnnpipe.serving import model_config

OUTPUTS = {PREDICT_IMAGE: (PROBABILITIES, ALL_CLASS_NAMES),  # what each command needs of its signature
           SEARCH: (NEIGHBOR_IDS, SCORES, NEIGHBOR_CLASS_NAMES, NEIGHBOR_SOURCES)}
TIMEOUT_SECONDS = 60

Outputs = dict[str, np.ndarray]  # each of the signature's OUTPUTS, [N, ...]


def read_images(paths: list[str]) -> list[bytes]:
    """The files' images as the model should get them: upright by their EXIF orientation (which TensorFlow's
    decoders ignore), as ingestion stored them; an upright PNG or JPEG is sent as it is."""
    images = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                images.append(core_images.upright_bytes(f.read()))
        except OSError as error:
            raise CnnpipeError(f"{path}: cannot read the image ({error.strerror}); check the path.") from None
        except core_images.ImageReadError as error:
            raise CnnpipeError(f"{path}: {error}; check the file.") from None
    return images


def _model_path(name: str, version: Optional[int]) -> str:
    return f"/v1/models/{name}" + (f"/versions/{version}" if version is not None else "")


def call_rest(server: str, name: str, version: Optional[int], signature: str, images: list[bytes]) -> Outputs:
    """TF Serving's REST predict, row format, images as {"b64": ...}."""
    body = json.dumps({"signature_name": signature,
                       "instances": [{"b64": base64.b64encode(image).decode()} for image in images]}).encode()
    url = f"http://{server}{_model_path(name, version)}:predict"
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            predictions = json.load(response)["predictions"]
    except urllib.error.HTTPError as error:
        message = json.loads(error.read() or b"{}").get("error", error.reason)
        raise CnnpipeError(f"{url} answered {error.code}: {message}") from None
    except urllib.error.URLError as error:
        raise CnnpipeError(f"cannot reach {url}: {error.reason}; is `cnnpipe serve` (or TF Serving) running there?") \
            from None
    return {key: np.array([row[key] for row in predictions]) for key in OUTPUTS[signature]}


def call_grpc(server: str, name: str, version: Optional[int], signature: str, images: list[bytes]) -> Outputs:
    """TF Serving's gRPC PredictionService.Predict."""
    import grpc  # noqa: PLC0415 - only this path needs gRPC and TensorFlow's protos
    import tensorflow as tf  # noqa: PLC0415
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: PLC0415

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[INPUTS[signature]].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    request.output_filter.extend(OUTPUTS[signature])
    with grpc.insecure_channel(server) as channel:
        try:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            raise CnnpipeError(f"gRPC {server} answered {error.code().name}: {error.details()}") from None
    return {key: tf.make_ndarray(response.outputs[key]) for key in OUTPUTS[signature]}


def local_model_dir(serving_dir: str, name: str, version: Optional[int] = None) -> str:
    """The directory of a pushed version of model `name`: `version`, or the newest."""
    base_path = os.path.join(serving_dir, name)
    versions = model_config.versions(base_path)
    if not versions:
        models = [config.name for config in model_config.scan(serving_dir).model_config_list.config]
        raise CnnpipeError(f"{base_path}: no pushed version of model '{name}' (models in {serving_dir}: "
                           f"{', '.join(models) or 'none'}). Run the pipeline, or pass --model or --serving-dir.")
    if version is not None and version not in versions:
        raise CnnpipeError(f"{base_path}: no version {version}; pushed versions: {', '.join(map(str, versions))}.")
    return os.path.join(base_path, str(versions[-1] if version is None else version))


def call_local(model_dir: str, signature: str, images: list[bytes]) -> Outputs:
    """The SavedModel at `model_dir`, called in this process."""
    import tensorflow as tf  # noqa: PLC0415

    signatures = tf.saved_model.load(model_dir).signatures
    if signature not in signatures:
        raise CnnpipeError(f"{model_dir} has no '{signature}' signature (it has {', '.join(sorted(signatures))})"
                           + ("; it was pushed without visual search (--no-search)" if signature == SEARCH else ""))
    outputs = signatures[signature](images=tf.constant(images))
    return {key: outputs[key].numpy() for key in OUTPUTS[signature]}


def top_classes(outputs: Outputs, k: int) -> list[list[tuple[str, float]]]:
    """For each image, its `k` most probable classes with their probabilities, most probable first."""
    tops = []
    for probabilities, names in zip(outputs[PROBABILITIES], outputs[ALL_CLASS_NAMES]):
        order = np.argsort(-probabilities, kind="stable")[:k]
        tops.append([(names[i].decode() if isinstance(names[i], bytes) else str(names[i]), float(probabilities[i]))
                     for i in order])
    return tops


def format_top_classes(paths: list[str], tops: list[list[tuple[str, float]]]) -> str:
    lines = []
    for path, top in zip(paths, tops):
        lines.append(path)
        lines += [f"  {name:<16} {probability:7.2%}" for name, probability in top]
    return "\n".join(lines)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def format_neighbours(paths: list[str], outputs: Outputs, k: int) -> str:
    """Each image's `k` most similar catalog items: rank, score, class, item id and source."""
    lines = []
    for row, path in enumerate(paths):
        lines.append(path)
        for rank in range(min(k, outputs[SCORES].shape[1])):
            lines.append(f"  {rank + 1:>3}. {float(outputs[SCORES][row, rank]):6.3f}  "
                         f"{_text(outputs[NEIGHBOR_CLASS_NAMES][row, rank]) or '-':<16} "
                         f"#{int(outputs[NEIGHBOR_IDS][row, rank]):<7} {_text(outputs[NEIGHBOR_SOURCES][row, rank])}")
    return "\n".join(lines)
