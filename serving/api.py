"""What the REST and gRPC front ends share: model status and metadata as TF Serving's protos, the
predict call on checked inputs, the limit on images per request, and the count of requests under way.
"""

import contextlib
import ctypes
import threading
from typing import Iterator, Optional

import grpc
import numpy as np
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from cnnpipe.serving.errors import ServingError, invalid
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


def model_status(manager: ModelManager, name: str, version: Optional[int]) -> get_model_status_pb2.GetModelStatusResponse:
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


def predict(servable: Servable, signature_name: str, inputs: dict[str, np.ndarray],
            output_filter: tuple[str, ...] = (), log: Optional[RequestLog] = None) -> tuple[str, dict[str, np.ndarray]]:
    """Runs the signature; returns its key and the outputs (only those in `output_filter` when given); `log` gets
    a sample of the predictions."""
    key, signature = servable.signature(signature_name)
    unknown = set(output_filter) - set(signature.outputs)
    if unknown:
        raise invalid(f"output_filter names {sorted(unknown)}, but signature '{key}' has outputs "
                      f"{sorted(signature.outputs)}")
    outputs = servable.run(key, inputs)
    if log is not None:
        log.record(servable.name, servable.version, key, inputs, outputs)
    return key, {name: outputs[name] for name in (output_filter or outputs)}


def unfit_signature(method: str, signature_def: meta_graph_pb2.SignatureDef) -> ServingError:
    """Why TF Serving refuses to run `method` ("classify" or "regress") with a signature: its checks in its order
    (without the method-name check, off by default). A signature that passes them gets UNIMPLEMENTED: this server
    only predicts."""
    inputs, outputs = signature_def.inputs, signature_def.outputs
    described = text_format.MessageToString(signature_def, as_one_line=True)
    if len(inputs) != 1:
        return invalid("Expected one input Tensor.")
    if method == "classify" and len(outputs) not in (1, 2):
        return invalid(f"Expected one or two output Tensors, found {len(outputs)}")
    if method == "regress" and len(outputs) != 1:
        return invalid("Expected one output Tensor.")
    if "inputs" not in inputs:
        return invalid(f"No {'classification' if method == 'classify' else 'regression'} inputs found in SignatureDef: "
                       f"{described}")
    if method == "classify" and not {"classes", "scores"} & set(outputs):
        return invalid('Expected classification signature outputs to contain at least one of "classes" or "scores". '
                       f"Signature was: {described}")
    if method == "regress" and "outputs" not in outputs:
        return invalid(f"No regression outputs found in SignatureDef: {described}")
    return ServingError(grpc.StatusCode.UNIMPLEMENTED, f"this server does not run {method}; call :predict with the "
                        "same signature")
