"""What the REST and gRPC front ends and the warmup share: model status and metadata as TF Serving's protos, the
predict call on checked inputs and on a PredictRequest, the replay of a version's warmup requests, the limit on
images per request, and the count of requests under way.
"""

import contextlib
import ctypes
import threading
from typing import Iterable, Iterator, Optional

import numpy as np
from google.protobuf.message import Message
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2, predict_pb2,
                                     prediction_log_pb2)

from cnnpipe.serving import inference, tensors, warmup
from cnnpipe.serving.errors import invalid
from cnnpipe.serving.manager import ModelManager
from cnnpipe.serving.request_log import RequestLog
from cnnpipe.serving.servable import Servable

SIGNATURE_DEF = "signature_def"  # the one metadata field TF Serving answers
SEARCH_INDEX = "search_index"  # this server's own: what answers `search` ("scann" or "exact"), for a model with it
# After a request of this many images, freed memory goes back to the system (a trim takes 1-3 ms; such a request
# takes hundreds).
TRIM_AFTER_IMAGES = 64
# Threads that run the models, per API (gRPC's handlers; REST's predictions). Long-lived on purpose: TensorFlow 2.16
# keeps state for every thread that calls it and never frees it (a FunctionCallOptions and a list, in
# pywrap_tfe_src.cc's thread_local map made with `new`), so a thread per connection leaked without bound
# (docs/benchmarks.md).
MODEL_THREADS = 16
_libc = ctypes.CDLL(None)
_malloc_trim = getattr(_libc, "malloc_trim", None)  # glibc's; elsewhere memory is left as it is
_mallopt = getattr(_libc, "mallopt", None)
M_ARENA_MAX = -8  # mallopt's parameter (glibc's malloc.h)
MALLOC_ARENAS = 2


class InFlight:
    """Counts the work under way: gRPC calls (`with in_flight:` around each) and REST connections (`add`);
    `wait_idle` waits until none is."""

    def __init__(self):
        self.count = 0
        self._changed = threading.Condition()

    def add(self, count: int) -> None:
        with self._changed:
            self.count += count
            self._changed.notify_all()

    def __enter__(self) -> None:
        self.add(1)

    def __exit__(self, *_) -> None:
        self.add(-1)

    def wait_idle(self, timeout: float) -> bool:
        """Whether no request was under way within `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self.count == 0, timeout)


def limit_malloc_arenas() -> None:
    """Caps glibc's malloc arenas at MALLOC_ARENAS (process-wide), before the server's threads start. By default
    glibc gives threads up to 8 arenas per core, and each arena keeps free memory of the large requests that ran in
    it: on 2 cores, after 36 large requests from 4 clients at once, 16 arenas held 320-340 MB and 2 held 185 MB
    (docs/benchmarks.md)."""
    if _mallopt:
        _mallopt(M_ARENA_MAX, MALLOC_ARENAS)


@contextlib.contextmanager
def batch_of(images: int, max_batch_images: int) -> Iterator[None]:
    """Around the work on a request of `images` images (instances): refuses more than the server's limit, and after
    a large request hands the memory it freed back to the system. glibc keeps freed memory in its arenas (see
    `limit_malloc_arenas`) for reuse; the trim returned a third of what 48 large requests left (docs/benchmarks.md)."""
    try:
        if images > max_batch_images:
            raise invalid(f"this request has {images} images (instances); this server takes at most "
                          f"{max_batch_images} per request: split it, or start the server with a larger "
                          "--max-batch-images")
        yield
    finally:
        if images >= TRIM_AFTER_IMAGES and _malloc_trim:
            _malloc_trim(0)


def model_status(manager: ModelManager, name: str,
                 version: Optional[int]) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for number, status in sorted(manager.status(name, version).items(), reverse=True):
        entry = response.model_version_status.add(version=number, state=status.state)
        entry.status.error_code = status.error_code.value[0]
        entry.status.error_message = status.error_message
    return response


def signature_def_map(servable: Servable) -> get_model_metadata_pb2.SignatureDefMap:
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in servable.signature_defs.items():
        signature_defs.signature_def[key].CopyFrom(signature_def)
    return signature_defs


def search_index(servable: Servable) -> dict[str, str]:
    """The metadata field naming what answers the version's `search` signature (none without one)."""
    return {SEARCH_INDEX: servable.search_index} if servable.search_index else {}


def model_spec(servable: Servable, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature_name)
    spec.version.value = servable.version
    return spec


def servable_for(manager: ModelManager, request: Message) -> Servable:
    """The loaded version a request's model spec names (its `model_spec` field): TF Serving's INVALID_ARGUMENT for
    a request without one or without a model name, NOT_FOUND for a model or version not served."""
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    spec = request.model_spec
    if not spec.name:
        raise invalid("ModelSpec has no name specified.")
    return manager.servable(spec.name, *version_choice(spec))


def version_choice(spec: model_pb2.ModelSpec) -> tuple[Optional[int], str]:
    """A model spec's version, or its version label ("" without one)."""
    return (spec.version.value if spec.HasField("version") else None), spec.version_label


def check_input_names(sent: Iterable[str], signature_def: meta_graph_pb2.SignatureDef) -> None:
    """Refuses a Predict request whose inputs are not the signature's (fewer only when it has defaults)."""
    sent, expected = set(sent), set(signature_def.inputs)
    if len(sent) > len(expected) or (len(sent) < len(expected) and not signature_def.defaults):
        raise invalid(f"input size does not match signature: {len(sent)}!={len(expected)} "
                      f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                      f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                      f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
    unknown = sorted(sent - expected)
    if unknown:
        raise invalid(f"input tensor alias not found in signature: {unknown[0]}. Inputs expected to be in the set "
                      f"{{{','.join(sorted(expected))}}}.")


def check_output_filter(output_filter: tuple[str, ...], outputs: Iterable[str]) -> None:
    outputs = sorted(outputs)
    for index, alias in enumerate(output_filter):
        if alias not in outputs:
            raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                          f"{{{','.join(outputs)}}}.")
        if alias in output_filter[:index]:
            raise invalid(f"duplicate output tensor alias: {alias}")


def predict(servable: Servable, signature_name: str, inputs: dict[str, np.ndarray],
            output_filter: tuple[str, ...] = (), log: Optional[RequestLog] = None) -> tuple[str, dict[str, np.ndarray]]:
    """Runs the signature; returns its key and the outputs (only those in `output_filter` when given); `log` gets
    a sample of the predictions."""
    key, signature = servable.signature(signature_name)
    check_output_filter(output_filter, signature.outputs)
    outputs = servable.run(key, inputs, output_filter)
    if log is not None:
        log.record(servable.name, servable.version, key, inputs, outputs)
    return key, outputs


def predict_response(servable: Servable, request: predict_pb2.PredictRequest, max_batch_images: int,
                     log: Optional[RequestLog] = None) -> predict_pb2.PredictResponse:
    """A PredictRequest answered by `servable`: its inputs read as their signature's types, outputs in the typed
    fields of their TensorProtos."""
    key, signature = servable.signature(request.model_spec.signature_name)
    check_input_names(request.inputs, servable.signature_defs[key])
    images = max((tensors.proto_rows(proto) for proto in request.inputs.values()), default=0)
    with batch_of(images, max_batch_images):
        inputs = {name: tensors.from_proto(proto, signature.inputs[name], name)
                  for name, proto in request.inputs.items()}
        _, outputs = predict(servable, key, inputs, tuple(request.output_filter), log)
        response = predict_pb2.PredictResponse(model_spec=model_spec(servable, key))
        for name, value in outputs.items():
            tensors.write_proto(value, response.outputs[name])
        return response


def answer_log(servable: Servable, log: prediction_log_pb2.PredictionLog, max_batch_images: int) -> None:
    """Answers the request a PredictionLog holds with `servable`, as the API it was made to would (a warmup)."""
    answer = {
        "predict_log": lambda: predict_response(servable, log.predict_log.request, max_batch_images),
        "classify_log": lambda: inference.classify(servable, log.classify_log.request),
        "regress_log": lambda: inference.regress(servable, log.regress_log.request),
        "multi_inference_log": lambda: inference.multi_inference(servable, log.multi_inference_log.request),
    }
    answer[log.WhichOneof("log_type")]()


def warm_up(servable: Servable, max_batch_images: int, iterations: int = 1) -> int:
    """Replays the version's warmup requests (assets.extra/tf_serving_warmup_requests) before it serves; returns how
    many records it has. A request that fails fails the load."""
    return warmup.replay(servable.path, lambda log: answer_log(servable, log, max_batch_images), iterations)
