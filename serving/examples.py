"""tf.Examples from the JSON of REST Classify and Regress requests, as TF Serving reads them:

    {"signature_name": ..., "context": {FEATURE: VALUE, ...}, "examples": [{FEATURE: VALUE, ...}, ...]}

A VALUE is one value or a list of them: a number with a fraction or an exponent goes to a float_list, a whole
number or a boolean to an int64_list, a string or {"b64": ...} to a bytes_list. A feature's values share one kind.
"""

import base64
import binascii
from typing import Any

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import input_pb2

from cnnpipe.serving.errors import invalid
from cnnpipe.serving.tensors import excerpt, json_type

INT64 = (-(1 << 63), (1 << 63) - 1)
KIND_WORDS = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}


def _add(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    """Appends one JSON value to `feature`, in the list of its kind."""
    if isinstance(value, bool):
        kind, item = "int64_list", int(value)
    elif isinstance(value, float):
        kind, item = "float_list", value
    elif isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        kind, item = "int64_list", value
    elif isinstance(value, str):
        kind, item = "bytes_list", value.encode("utf-8")
    elif isinstance(value, dict) and list(value) == ["b64"] and isinstance(value["b64"], str):
        kind, item = "bytes_list", _decoded(value)
    else:
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")
    if feature.WhichOneof("kind") not in (None, kind):
        raise invalid(f"Unexpected element type in feature: {name} expecting type: "
                      f"{KIND_WORDS[feature.WhichOneof('kind')]}")
    getattr(feature, kind).value.append(item)


def _decoded(value: dict) -> bytes:
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"JSON Value: {excerpt(value)} not formatted correctly for base64 data") from None


def example(value: Any) -> example_pb2.Example:
    """One JSON object of features as a tf.Example."""
    if not isinstance(value, dict):
        raise invalid(f"Example must be JSON object but got JSON {json_type(value)}")
    made = example_pb2.Example()
    for name, content in value.items():
        feature = made.features.feature[name]
        values = content.tolist() if isinstance(content, np.ndarray) else content  # a long list json_body read
        for item in values if isinstance(values, list) else [values]:
            _add(item, name, feature)
    return made


def fill_input(body: Any, method: str, request_input: input_pb2.Input) -> None:
    """Fills a Classify or Regress request's input from its JSON body (`method`: "classify" or "regress")."""
    if not isinstance(body, dict):
        raise invalid(f"JSON Value: {excerpt(body)} Is not object")
    examples = body.get("examples")
    if examples is None:
        raise invalid(f"JSON Value: {excerpt(body)} When method is {method}, key 'examples' is expected and was not "
                      "found")
    if not isinstance(examples, list):
        raise invalid(f"JSON Value: {excerpt(body)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid(f"JSON Value: {excerpt(body)} 'examples' value is an empty array")
    if "context" in body:
        request_input.example_list_with_context.context.CopyFrom(example(body["context"]))
        listed = request_input.example_list_with_context.examples
    else:
        listed = request_input.example_list.examples
    listed.extend(example(value) for value in examples)
