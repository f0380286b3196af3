"""One loaded model version: its signatures, their input and output specs, and its SignatureDefs."""

import dataclasses
import functools
import os
import re
from typing import Callable, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.python.saved_model import loader_impl

from cnnpipe.core.names import (EMBED, EMBEDDINGS, NEIGHBOR_CLASS_NAMES, NEIGHBOR_IDS, NEIGHBOR_SOURCES, SCORES, SEARCH,
                                SEARCH_ASSETS, SERVING_DEFAULT)
from cnnpipe.retrieval import index, items
from cnnpipe.serving.batching import Batcher, BatchingOptions
from cnnpipe.serving.errors import ServingError, invalid



@dataclasses.dataclass(frozen=True)
class Signature:
    function: Callable
    inputs: dict[str, tf.TensorSpec]
    outputs: dict[str, tf.TensorSpec]

    @functools.cached_property
    def batchable(self) -> bool:
        """Whether requests can be stacked: every input and output has a leading batch dimension."""
        specs = list(self.inputs.values()) + list(self.outputs.values())
        return all(spec.shape.rank and spec.shape[0] is None for spec in specs)


SERVE_TAGS = {tf.saved_model.SERVING}  # TF Serving's default --saved_model_tags


def _serve_meta_graph(path: str) -> meta_graph_pb2.MetaGraphDef:
    """The SavedModel's meta graph tagged exactly {"serve"}, the one TF Serving loads (a SavedModel can hold
    several, e.g. TF1 exports for training and for serving)."""
    meta_graphs = loader_impl.parse_saved_model(path).meta_graphs
    for meta_graph in meta_graphs:
        if set(meta_graph.meta_info_def.tags) == SERVE_TAGS:
            return meta_graph
    found = "; ".join(str(sorted(meta_graph.meta_info_def.tags)) for meta_graph in meta_graphs) or "none"
    raise ServingError(grpc.StatusCode.NOT_FOUND,
                       f"{path}: no meta graph tagged {sorted(SERVE_TAGS)} to serve (its meta graphs' tags: {found}); "
                       "export the model with the serve tag (tf.saved_model.save and Keras do)")


def _status_code(error: tf.errors.OpError) -> grpc.StatusCode:
    """TensorFlow's error codes are gRPC's."""
    return next((code for code in grpc.StatusCode if code.value[0] == error.error_code), grpc.StatusCode.UNKNOWN)


NOT_THE_CAUSE = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
ASSERTION = re.compile(r"assertion failed: \[(?P<message>.*)\]")  # a tf.debugging.Assert in the graph: its message


def _cause(message: str) -> str:
    """The line of a TensorFlow error message that says what went wrong (not where in the graph)."""
    lines = [line.strip() for line in message.split("\n")]
    causes = [line for line in lines if line and not line.startswith(NOT_THE_CAUSE)]
    cause = causes[-1] if causes else lines[0]
    assertion = ASSERTION.fullmatch(cause)
    return assertion["message"] if assertion else cause


def _tensor(value: np.ndarray) -> tf.Tensor:
    """An input array, already of its signature's dtype, as a tensor.

    Not tf.constant: making an EagerTensor from Python leaks two small Python objects per tensor (TensorFlow 2.16 on
    Python 3.11; tensorflow#68196), and after each large REST request the leaked pair kept a 1 MiB pymalloc arena of
    the JSON parse resident. An op's input is converted to a tensor in C++, without the leak."""
    return tf.raw_ops.Identity(input=value)


def catalog_items(path: str) -> Optional[items.Items]:
    """The item table of the version at `path` (in `assets.extra/search/`), or None without one."""
    table = os.path.join(path, SEARCH_ASSETS, items.FILE)
    return items.read(table) if os.path.isfile(table) else None


def indexed_search(loaded, path: str, table: items.Items) -> Optional[Signature]:
    """The `search` signature answered by the ScaNN index of the version at `path` (in `assets.extra/search/`), or
    None without one: the signature's own specs, the query embedded by the `embed` signature, the neighbours looked
    up in the index and the item table. An index built for another model is refused (FAILED_PRECONDITION, naming
    it)."""
    search_dir = os.path.join(path, SEARCH_ASSETS)
    if SEARCH not in loaded.signatures or not os.path.isdir(os.path.join(search_dir, index.INDEX_DIR)):
        return None
    exact, embed = loaded.signatures[SEARCH], loaded.signatures[EMBED]
    checksum = tf.saved_model.experimental.read_fingerprint(path).saved_model_checksum
    try:
        searcher = index.load(os.path.join(search_dir, index.INDEX_DIR), checksum)
    except index.IndexMismatch as error:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, str(error)) from None
    class_names, sources = (np.array([text.encode() for text in column], object)  # bytes, as TensorFlow's strings
                            for column in (table.class_names, table.sources))
    top_k = exact.structured_outputs[SCORES].shape[1]

    def search(**inputs: tf.Tensor) -> dict[str, np.ndarray]:
        embeddings = embed(**inputs)[EMBEDDINGS].numpy()
        unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        ids, scores = searcher.search_batched(unit, final_num_neighbors=top_k)
        return {NEIGHBOR_IDS: ids.astype(np.int64), SCORES: scores, NEIGHBOR_CLASS_NAMES: class_names[ids],
                NEIGHBOR_SOURCES: sources[ids]}

    return Signature(search, exact.structured_input_signature[1], exact.structured_outputs)


class Servable:
    """A SavedModel version loaded for serving; `run` calls a signature (through the batcher when on).

    A version with a search index answers `search` with it (`search_index` says so), else with the signature's
    own exact search; `items` is its catalog's item table (thumbnails for the page)."""

    def __init__(self, name: str, version: int, path: str, batching: Optional[BatchingOptions] = None):
        self.name, self.version, self.path = name, version, path
        self.signature_defs = dict(_serve_meta_graph(path).signature_def)
        self._loaded = tf.saved_model.load(path, tags=list(SERVE_TAGS))  # the same meta graph's functions
        self.signatures = {
            key: Signature(function, function.structured_input_signature[1], function.structured_outputs)
            for key, function in self._loaded.signatures.items()
        }
        self.items = catalog_items(path)
        indexed = indexed_search(self._loaded, path, self.items) if self.items else None
        if indexed:
            self.signatures[SEARCH] = indexed
        self.search_index = "scann" if indexed else "exact" if SEARCH in self.signatures else None
        self._batcher = Batcher(self._call, batching) if batching else None

    def signature(self, signature_name: str) -> tuple[str, Signature]:
        key = signature_name or SERVING_DEFAULT
        if key not in self.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Serving signature name: \"{key}\" not found in signature def of {self.name} version "
                               f"{self.version}; it has: {', '.join(sorted(self.signatures))}")
        return key, self.signatures[key]

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The signature's outputs for `inputs` (already checked against its input specs)."""
        key, signature = self.signature(signature_name)
        if self._batcher and signature.batchable:
            return self._batcher.submit(key, inputs)
        return self._call(key, inputs)

    def _call(self, key: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        signature = self.signatures[key]
        try:
            tensors = {name: _tensor(value) for name, value in inputs.items()}
            return {name: np.asarray(value) for name, value in signature.function(**tensors).items()}
        except tf.errors.OpError as error:
            raise ServingError(_status_code(error), f"signature '{key}' of {self.name} version {self.version} "
                               f"failed on this request: {_cause(error.message)}") from None
        except (TypeError, ValueError) as error:
            raise invalid(f"signature '{key}' of {self.name} version {self.version} cannot take this request: "
                          f"{_cause(str(error))}") from None

    def close(self) -> None:
        if self._batcher:
            self._batcher.close()
