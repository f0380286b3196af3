"""REST request bodies as JSON, with each large array of numbers read by NumPy instead of `json.loads`.

`json.loads` makes a Python float for every number: a `predict_pixels` body of 1,024 images is 800,000 objects,
which take seconds to build and convert, and which fragment Python's small-object allocator, so that the server
kept more memory after every large request. Here a large literal of nested lists of JSON numbers, regular in
shape, becomes an ndarray directly (int64 when no number has a fraction or an exponent, float64 otherwise). The
rest of the body, and any literal that is not such an array, goes through `json.loads`, which also words every
error: a body this module cannot read is parsed by `json.loads` whole.
"""

import json
import re
import secrets
from typing import Any, Optional

import numpy as np

LARGE_BYTES = 65536  # a shorter literal is left to json.loads
_WHITESPACE = b" \t\n\r"  # JSON's
_CANDIDATE = re.compile(rb"\[[\[\]0-9%s,.eE+\-]{%d,}\]" % (_WHITESPACE, LARGE_BYTES))
_NUMBER = rb"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"  # JSON's grammar, without backtracking
_SPACE = rb"[%s]*+" % _WHITESPACE
_ITEM = rb"%s(?:\[%s)*+%s%s(?:\]%s)*+" % (_SPACE, _SPACE, _NUMBER, _SPACE, _SPACE)  # a number, its brackets
_NUMBERS = re.compile(rb"%s(?:,%s)*+" % (_ITEM, _ITEM))
_BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")
_NOT_STRUCTURE = b"0123456789.eE+-" + _WHITESPACE
_INT64_ENDS = [np.iinfo(np.int64).min, np.iinfo(np.int64).max]  # what NumPy reads an integer beyond int64 as


def loads(body: bytes) -> Any:
    """The JSON value of `body`, its large numeric arrays as ndarrays; raises what `json.loads(body)` raises."""
    token = secrets.token_hex(8)  # a string no client can guess stands in for each array while the rest is parsed
    arrays: dict[str, np.ndarray] = {}
    pieces, start = [], 0
    for match in _CANDIDATE.finditer(body):
        array = numeric_array(match.group())
        if array is not None:
            key = f"{token}:{len(arrays)}"
            arrays[key] = array
            pieces += [body[start:match.start()], b'"%s"' % key.encode()]
            start = match.end()
    if not arrays:
        return json.loads(body)
    try:
        value = json.loads(b"".join(pieces + [body[start:]]))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return json.loads(body)
    placed: list[str] = []
    value = _put_back(value, arrays, placed)
    return value if len(placed) == len(arrays) else json.loads(body)  # a stand-in as a key: body was not JSON


def _put_back(value: Any, arrays: dict[str, np.ndarray], placed: list[str]) -> Any:
    """`value` with each stand-in string replaced by its array (appended to `placed`)."""
    if isinstance(value, str) and value in arrays:
        placed.append(value)
        return arrays[value]
    if isinstance(value, list):
        return [_put_back(item, arrays, placed) for item in value]
    if isinstance(value, dict):
        return {key: _put_back(item, arrays, placed) for key, item in value.items()}
    return value


def numeric_array(literal: bytes) -> Optional[np.ndarray]:
    """The array a JSON literal of nested lists of numbers holds, or None when it is not one (ragged, empty lists,
    anything but numbers, or integers beyond int64)."""
    if not _NUMBERS.fullmatch(literal):
        return None
    skeleton = literal.translate(None, _NOT_STRUCTURE)  # brackets and commas only, e.g. b"[[,],[,]]"
    shape = _shape(skeleton)
    if shape is None or _skeleton(shape) != skeleton:
        return None
    integral = not any(mark in literal for mark in (b".", b"e", b"E"))
    values = np.fromstring(literal.translate(_BRACKETS_TO_SPACES), dtype=np.int64 if integral else np.float64, sep=",")
    if values.size != np.prod(shape) or (integral and np.isin(values, _INT64_ENDS).any()):
        return None  # json.loads keeps an integer beyond int64 exact
    return values.reshape(shape)


def _shape(skeleton: bytes) -> Optional[tuple[int, ...]]:
    """The shape of a regular skeleton, read along its first elements: at depth j, the first list ends at the first
    run of (rank - j + 1) closing brackets, and its elements are parted by (rank - j) closing brackets and a comma."""
    rank = len(skeleton) - len(skeleton.lstrip(b"["))
    shape = []
    for depth in range(1, rank + 1):
        end = skeleton.find(b"]" * (rank - depth + 1))
        if end < 0:
            return None
        shape.append(skeleton.count(b"]" * (rank - depth) + b",", 0, end) + 1)
    return tuple(shape)


def _skeleton(shape: tuple[int, ...]) -> bytes:
    """The brackets and commas of a JSON array of `shape`."""
    text = b"[" + b"," * (shape[-1] - 1) + b"]"
    for size in reversed(shape[:-1]):
        text = b"[" + b",".join([text] * size) + b"]"
    return text
