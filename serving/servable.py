"""One loaded model version, run as TF Serving runs it: the SavedModel's `serve` meta graph in a TensorFlow session
of its own, each signature's inputs fed to their tensors and its outputs fetched in one session call.

Running the graph (not `tf.saved_model.load`'s functions) serves what TF Serving serves: TF1 SavedModels (reference
variables, graphs that TF2's loader cannot re-trace) and TF2 ones alike, with shapes left to the graph (a scalar
fed to a [-1, 1] input is the graph's business, as on TF Serving).
"""

import dataclasses
import functools
import os
import re
import threading
from typing import Callable, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
from tensorflow.python.saved_model import loader_impl

from cnnpipe.core.names import (NEIGHBOR_CLASS_NAMES, NEIGHBOR_IDS, NEIGHBOR_SOURCES, SCORES, SEARCH,
                                SEARCH_ASSETS, SEARCH_VECTOR, SEARCH_VECTORS, SERVING_DEFAULT)
from cnnpipe.retrieval import index, items
from cnnpipe.serving.batching import Batcher, BatchingOptions
from cnnpipe.serving.errors import ServingError, invalid

SERVE_TAGS = [tf.saved_model.SERVING]  # TF Serving's default --saved_model_tags
Arrays = dict[str, np.ndarray]


def _spec(tensor_info: meta_graph_pb2.TensorInfo) -> tf.TensorSpec:
    return tf.TensorSpec(tf.TensorShape(tensor_info.tensor_shape), tf.as_dtype(tensor_info.dtype))


def _runnable(signature_def: meta_graph_pb2.SignatureDef) -> bool:
    """Whether a signature feeds and fetches typed tensors (not, e.g., TF2's `__saved_model_init_op`, an op)."""
    infos = [*signature_def.inputs.values(), *signature_def.outputs.values()]
    return all(info.dtype != types_pb2.DT_INVALID and info.name for info in infos)


@dataclasses.dataclass(frozen=True)
class Signature:
    """A signature's input and output specs, and `run(inputs, outputs)`: the outputs named (all when empty)."""
    inputs: dict[str, tf.TensorSpec]
    outputs: dict[str, tf.TensorSpec]
    run: Callable[[Arrays, tuple[str, ...]], Arrays]

    def fits(self, inputs: Arrays) -> bool:
        """Whether `inputs` have the shapes the signature declares (the batcher stacks only those)."""
        return all(spec.shape.is_compatible_with(inputs[name].shape) for name, spec in self.inputs.items())

    @functools.cached_property
    def batchable(self) -> bool:
        """Whether requests can be stacked: every input and output has a leading batch dimension."""
        specs = list(self.inputs.values()) + list(self.outputs.values())
        return all(spec.shape.rank and spec.shape[0] is None for spec in specs)


def _status_code(error: tf.errors.OpError) -> grpc.StatusCode:
    """TensorFlow's error codes are gRPC's."""
    return next((code for code in grpc.StatusCode if code.value[0] == error.error_code), grpc.StatusCode.UNKNOWN)


NOT_THE_CAUSE = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
ASSERTION = re.compile(r"assertion failed: \[(?P<message>.*)\]")  # a tf.debugging.Assert in the graph: its message


def cause(message: str) -> str:
    """The line of a TensorFlow error message that says what went wrong (not where in the graph)."""
    lines = [line.strip() for line in message.split("\n")]
    causes = [line for line in lines if line and not line.startswith(NOT_THE_CAUSE)]
    found = causes[-1] if causes else lines[0]
    assertion = ASSERTION.search(found)
    return assertion["message"] if assertion else found


def _check_serve_tags(path: str) -> None:
    """Refuses a SavedModel without a meta graph tagged exactly {"serve"}, the one TF Serving loads (a SavedModel can
    hold several, e.g. TF1 exports for training and for serving), naming the tags it has."""
    meta_graphs = loader_impl.parse_saved_model(path).meta_graphs
    if not any(set(meta_graph.meta_info_def.tags) == set(SERVE_TAGS) for meta_graph in meta_graphs):
        found = "; ".join(str(sorted(meta_graph.meta_info_def.tags)) for meta_graph in meta_graphs) or "none"
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"{path}: no meta graph tagged {SERVE_TAGS} to serve (its meta graphs' tags: {found}); "
                           "export the model with the serve tag (tf.saved_model.save and Keras do)")


class Session:
    """A SavedModel's serve meta graph loaded into a session; `run` feeds and fetches tensors by name through a
    callable made once per set of feeds and fetches (thread-safe, no per-call graph pruning). The session closes
    when the last reference goes: requests under way when a version is unloaded finish on it."""

    def __init__(self, path: str, label: str):
        self.label = label  # e.g. "fashion version 3", for error messages
        self.graph = tf.Graph()
        config = config_pb2.ConfigProto(
            intra_op_parallelism_threads=tf.config.threading.get_intra_op_parallelism_threads(),
            inter_op_parallelism_threads=tf.config.threading.get_inter_op_parallelism_threads())
        _check_serve_tags(path)
        self._session = tf.compat.v1.Session(graph=self.graph, config=config)
        with self.graph.as_default():
            self.meta_graph = tf.compat.v1.saved_model.loader.load(self._session, SERVE_TAGS, path)
        self._callables: dict[tuple, Callable] = {}
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray], fetches: tuple[str, ...], what: str) -> list[np.ndarray]:
        """The values of the `fetches` tensors with `feeds` fed to theirs; TensorFlow's errors as ServingErrors
        naming `what` was run."""
        key = (tuple(feeds), fetches)
        call = self._callables.get(key)
        if call is None:
            with self._lock:
                options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
                call = self._callables.setdefault(key, self._session._make_callable_from_options(options))
        try:
            return call(*feeds.values())
        except tf.errors.OpError as error:
            raise ServingError(_status_code(error), f"{what} of {self.label} failed on this request: "
                               f"{cause(error.message)}") from None
        except (TypeError, ValueError) as error:
            raise invalid(f"{what} of {self.label} cannot take this request: {cause(str(error))}") from None


def _shape_hint(signature_def: meta_graph_pb2.SignatureDef, inputs: Arrays) -> str:
    """When inputs do not have the shapes the signature declares, what they are and what it declares (the graph
    decides what it takes, as on TF Serving; this says why it likely refused)."""
    unfit = [f"'{alias}' has shape {list(value.shape)}, the signature declares "
             f"{[-1 if d is None else d for d in _spec(signature_def.inputs[alias]).shape.as_list()]}"
             for alias, value in inputs.items()
             if not _spec(signature_def.inputs[alias]).shape.is_compatible_with(value.shape)]
    return f" ({'; '.join(unfit)}; -1: any size)" if unfit else ""


def signature_def_runner(session: Session, key: str,
                         signature_def: meta_graph_pb2.SignatureDef) -> Callable[[Arrays, tuple[str, ...]], Arrays]:
    """`run(inputs, outputs)` for a SignatureDef: its inputs fed to their tensors, the outputs named (all when
    empty) fetched."""

    def run(inputs: Arrays, outputs: tuple[str, ...]) -> Arrays:
        names = outputs or tuple(signature_def.outputs)
        feeds = {signature_def.inputs[alias].name: value for alias, value in inputs.items()}
        fetches = tuple(signature_def.outputs[alias].name for alias in names)
        try:
            return dict(zip(names, session.run(feeds, fetches, f"signature '{key}'")))
        except ServingError as error:
            raise ServingError(error.code, error.message + _shape_hint(signature_def, inputs)) from None

    return run


def catalog_items(path: str, name: str = items.FILE) -> Optional[items.Items]:
    """The item table `name` (the catalog's, or its example queries') of the version at `path` (in
    `assets.extra/search/`), or None without one."""
    table = os.path.join(path, SEARCH_ASSETS, name)
    return items.read(table) if os.path.isfile(table) else None


def indexed_search(signatures: dict[str, Signature], path: str, table: items.Items) -> Optional[Signature]:
    """The `search` signature answered by the ScaNN index of the version at `path` (in `assets.extra/search/`), or
    None without one (or without the `search_vector` signature it is queried with: a version pushed before it answers
    from its `search` signature): the signature's own specs, the query's search vector, the neighbours looked up in the
    index and the item table. An index built for another model is refused (FAILED_PRECONDITION, naming it)."""
    search_dir = os.path.join(path, SEARCH_ASSETS)
    if SEARCH_VECTOR not in signatures or not os.path.isdir(os.path.join(search_dir, index.INDEX_DIR)):
        return None
    exact, query = signatures[SEARCH], signatures[SEARCH_VECTOR]
    checksum = tf.saved_model.experimental.read_fingerprint(path).saved_model_checksum
    try:
        searcher = index.load(os.path.join(search_dir, index.INDEX_DIR), checksum)
    except index.IndexMismatch as error:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, str(error)) from None
    class_names, sources = (np.array([text.encode() for text in column], object)  # bytes, as TensorFlow's strings
                            for column in (table.class_names, table.sources))
    top_k = exact.outputs[SCORES].shape[1]

    def search(inputs: Arrays, outputs: tuple[str, ...]) -> Arrays:
        vectors = query.run(inputs, (SEARCH_VECTORS,))[SEARCH_VECTORS]
        ids, scores = searcher.search_batched(vectors, final_num_neighbors=top_k)
        found = {NEIGHBOR_IDS: ids.astype(np.int64), SCORES: scores, NEIGHBOR_CLASS_NAMES: class_names[ids],
                 NEIGHBOR_SOURCES: sources[ids]}
        return {name: found[name] for name in outputs or found}

    return Signature(exact.inputs, exact.outputs, search)


class Servable:
    """A SavedModel version loaded for serving; `run` calls a signature (through the batcher when on).

    A version with a search index answers `search` with it (`search_index` says so), else with the signature's
    own exact search; `items` is its catalog's item table (thumbnails for the page), `examples` a few query images
    the page offers."""

    def __init__(self, name: str, version: int, path: str, batching: Optional[BatchingOptions] = None):
        self.name, self.version, self.path = name, version, path
        self.session = Session(path, f"{name} version {version}")
        self.signature_defs = dict(self.session.meta_graph.signature_def)
        self.signatures = {key: Signature({alias: _spec(info) for alias, info in signature_def.inputs.items()},
                                          {alias: _spec(info) for alias, info in signature_def.outputs.items()},
                                          signature_def_runner(self.session, key, signature_def))
                           for key, signature_def in self.signature_defs.items() if _runnable(signature_def)}
        self.items = catalog_items(path)
        self.examples = catalog_items(path, items.EXAMPLES_FILE)
        indexed = indexed_search(self.signatures, path, self.items) if self.items else None
        if indexed:
            self.signatures[SEARCH] = indexed
        self.search_index = "scann" if indexed else "exact" if SEARCH in self.signatures else None
        self._batcher = Batcher(self._call, batching) if batching else None

    def signature(self, signature_name: str) -> tuple[str, Signature]:
        key = signature_name or SERVING_DEFAULT
        if key not in self.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Serving signature key \"{key}\" not found. {self.name} version {self.version} has: "
                               f"{', '.join(sorted(self.signatures))}")
        return key, self.signatures[key]

    def run(self, signature_name: str, inputs: Arrays, outputs: tuple[str, ...] = ()) -> Arrays:
        """The signature's `outputs` (all when empty) for `inputs`, named as the signature names them. With batching
        on, requests whose inputs have the declared shapes are stacked (all outputs computed, then filtered)."""
        key, signature = self.signature(signature_name)
        if self._batcher and signature.batchable and signature.fits(inputs):
            answered = self._batcher.submit(key, inputs)
            return {name: answered[name] for name in outputs or answered}
        return self._call(key, inputs, outputs)

    def _call(self, key: str, inputs: Arrays, outputs: tuple[str, ...] = ()) -> Arrays:
        return self.signatures[key].run(inputs, outputs)

    def close(self) -> None:
        if self._batcher:
            self._batcher.close()
