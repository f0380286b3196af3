"""`cnnpipe predict` and `cnnpipe search`: the top classes of image files (the `predict_image` signature, or with
`--api classify` the `classify` signature through TF Serving's Classify API) and their most similar catalog items
(`search`), from a server over REST or gRPC, or in-process from the newest pushed version.
"""

import base64
import json
import os
import urllib.error
import urllib.request
from typing import Optional

import numpy as np

from cnnpipe.core import features, images as core_images
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import (ALL_CLASS_NAMES, CLASSIFY, CLASSIFY_CLASSES, CLASSIFY_SCORES, INPUTS,
                                NEIGHBOR_CLASS_NAMES, NEIGHBOR_IDS, NEIGHBOR_SOURCES, PREDICT_IMAGE, PROBABILITIES,
                                SCORES, SEARCH)
from cnnpipe.serving import model_config

OUTPUTS = {PREDICT_IMAGE: (PROBABILITIES, ALL_CLASS_NAMES),  # what each command needs of its signature
           SEARCH: (NEIGHBOR_IDS, SCORES, NEIGHBOR_CLASS_NAMES, NEIGHBOR_SOURCES)}
MISSING_SIGNATURE_FIXES = {
    SEARCH: "it was pushed without visual search (--no-search)",
    CLASSIFY: "it was exported before pushed models had one: push a newer model (`cnnpipe run`), or use --api predict",
}
TIMEOUT_SECONDS = 60

Outputs = dict[str, np.ndarray]  # each of the signature's OUTPUTS, [N, ...]; classify's named as predict_image's


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


def tf_examples(images: list[bytes]) -> list[bytes]:
    """The (upright) images as serialized tf.Examples with their encoded bytes as the `image` feature: the feature
    `serving_default` and `classify` parse of ingestion's records."""
    import tensorflow as tf  # noqa: PLC0415 - only classify sends tf.Examples

    return [tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))})).SerializeToString()
        for image in images]


def _json_feature(feature) -> object:
    """A tf.train.Feature as TF Serving's REST examples write it: bytes as {"b64": ...}, one value bare."""
    kind = feature.WhichOneof("kind")
    values = [{"b64": base64.b64encode(v).decode()} if kind == "bytes_list" else v
              for v in getattr(feature, kind).value]
    return values[0] if len(values) == 1 else values


def json_example(serialized: bytes) -> dict:
    """A serialized tf.Example as one of the `examples` of TF Serving's REST classify request."""
    import tensorflow as tf  # noqa: PLC0415

    example = tf.train.Example.FromString(serialized)
    return {key: _json_feature(feature) for key, feature in sorted(example.features.feature.items())}


def _classified(classes, scores) -> Outputs:
    """classify's `classes` and `scores` as predict_image's `all_class_names` and `probabilities`."""
    return {ALL_CLASS_NAMES: np.array(classes), PROBABILITIES: np.array(scores, dtype=np.float32)}


def _model_path(name: str, version: Optional[int]) -> str:
    return f"/v1/models/{name}" + (f"/versions/{version}" if version is not None else "")


def _post(url: str, body: dict) -> dict:
    """The JSON answer of a TF Serving REST call."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        message = json.loads(error.read() or b"{}").get("error", error.reason)
        raise CnnpipeError(f"{url} answered {error.code}: {message}") from None
    except urllib.error.URLError as error:
        raise CnnpipeError(f"cannot reach {url}: {error.reason}; is `cnnpipe serve` (or TF Serving) running there?") \
            from None


def call_rest(server: str, name: str, version: Optional[int], signature: str, inputs: list[bytes]) -> Outputs:
    """TF Serving's REST API: `inputs` (encoded images) to predict, row format, as {"b64": ...}; for `classify`,
    `inputs` (serialized tf.Examples) to classify, as JSON examples."""
    url = f"http://{server}{_model_path(name, version)}"
    if signature == CLASSIFY:
        result = _post(f"{url}:classify", {"signature_name": signature,
                                           "examples": [json_example(example) for example in inputs]})["results"]
        return _classified([[label for label, _ in row] for row in result],
                           [[score for _, score in row] for row in result])
    predictions = _post(f"{url}:predict", {"signature_name": signature,
                                           "instances": [{"b64": base64.b64encode(i).decode()} for i in inputs]})
    return {key: np.array([row[key] for row in predictions["predictions"]]) for key in OUTPUTS[signature]}


def _grpc_call(server: str, method: str, request):
    """PredictionService's `method` answering `request`."""
    import grpc  # noqa: PLC0415 - only this path needs gRPC and TensorFlow Serving's protos
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: PLC0415

    with grpc.insecure_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            return getattr(stub, method)(request, timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            raise CnnpipeError(f"gRPC {server} answered {error.code().name}: {error.details()}") from None


def _model_spec(spec, name: str, version: Optional[int], signature: str) -> None:
    spec.name, spec.signature_name = name, signature
    if version is not None:
        spec.version.value = version


def call_grpc(server: str, name: str, version: Optional[int], signature: str, inputs: list[bytes]) -> Outputs:
    """TF Serving's gRPC PredictionService.Predict; for `classify`, PredictionService.Classify with `inputs`
    (serialized tf.Examples) as its example list."""
    import tensorflow as tf  # noqa: PLC0415
    from tensorflow_serving.apis import classification_pb2, predict_pb2  # noqa: PLC0415

    if signature == CLASSIFY:
        request = classification_pb2.ClassificationRequest()
        _model_spec(request.model_spec, name, version, signature)
        for example in inputs:
            request.input.example_list.examples.add().ParseFromString(example)
        result = _grpc_call(server, "Classify", request).result.classifications
        return _classified([[c.label for c in row.classes] for row in result],
                           [[c.score for c in row.classes] for row in result])
    request = predict_pb2.PredictRequest()
    _model_spec(request.model_spec, name, version, signature)
    request.inputs[INPUTS[signature]].CopyFrom(tf.make_tensor_proto(inputs, dtype=tf.string))
    request.output_filter.extend(OUTPUTS[signature])
    response = _grpc_call(server, "Predict", request)
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


def call_local(model_dir: str, signature: str, inputs: list[bytes]) -> Outputs:
    """The SavedModel at `model_dir`, its `signature` called in this process with `inputs` (encoded images, or
    serialized tf.Examples for `classify`)."""
    import tensorflow as tf  # noqa: PLC0415

    signatures = tf.saved_model.load(model_dir).signatures
    if signature not in signatures:
        fix = f"; {MISSING_SIGNATURE_FIXES[signature]}" if signature in MISSING_SIGNATURE_FIXES else ""
        raise CnnpipeError(f"{model_dir} has no '{signature}' signature (it has {', '.join(sorted(signatures))}){fix}")
    outputs = signatures[signature](**{INPUTS[signature]: tf.constant(inputs)})
    if signature == CLASSIFY:
        return _classified(outputs[CLASSIFY_CLASSES].numpy(), outputs[CLASSIFY_SCORES].numpy())
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


def score_digits(scores: np.ndarray, fewest: int = 3, most: int = 7) -> int:
    """The fewest decimals (from `fewest` to `most`) at which each image's different scores print differently."""
    for digits in range(fewest, most):
        if all(len({f"{score:.{digits}f}" for score in row}) == len(set(row.tolist())) for row in scores):
            return digits
    return most


def format_neighbours(paths: list[str], outputs: Outputs, k: int) -> str:
    """Each image's `k` most similar catalog items: rank, score (with the decimals that tell them apart), class, item
    id and source."""
    scores = outputs[SCORES][:, :k].astype(np.float64)
    digits = score_digits(scores)
    lines = []
    for row, path in enumerate(paths):
        lines.append(path)
        for rank in range(scores.shape[1]):
            lines.append(f"  {rank + 1:>3}. {scores[row, rank]:{digits + 3}.{digits}f}  "
                         f"{_text(outputs[NEIGHBOR_CLASS_NAMES][row, rank]) or '-':<16} "
                         f"#{int(outputs[NEIGHBOR_IDS][row, rank]):<7} {_text(outputs[NEIGHBOR_SOURCES][row, rank])}")
    return "\n".join(lines)
