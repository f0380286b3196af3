"""Request and response tensors: TF Serving's REST JSON (row and columnar, {"b64": ...}) and gRPC
TensorProtos, to and from NumPy arrays of a signature's input types. Shapes are left to the graph, as TF Serving
leaves them.
"""

import base64
import binascii
import json
import math
from typing import Any, Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from cnnpipe.serving.errors import invalid

Specs = Mapping[str, tf.TensorSpec]
BYTES_SUFFIX = "_bytes"  # TF Serving's REST API sends string outputs with this suffix as {"b64": ...}


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and list(value) == ["b64"]


def _nested_shape(value: Any, name: str) -> tuple[tuple[int, ...], list]:
    """The shape of nested JSON lists and their leaves in row-major order; ragged lists are refused."""
    if isinstance(value, np.ndarray):  # an array json_body read, inside lists json.loads read
        return value.shape, value.ravel().tolist()
    if not isinstance(value, list):
        return (), [value]
    if not value:
        return (0,), []
    parts = [_nested_shape(item, name) for item in value]
    shapes = {shape for shape, _ in parts}
    if len(shapes) > 1:
        raise invalid(f"input '{name}': the nested lists are ragged (inner shapes {sorted(shapes)}); "
                      "a tensor needs lists of equal length at each level")
    return (len(value),) + parts[0][0], [leaf for _, leaves in parts for leaf in leaves]


def _string_leaf(leaf: Any, name: str) -> bytes:
    if isinstance(leaf, str):
        return leaf.encode("utf-8")
    if _is_b64(leaf) and isinstance(leaf["b64"], str):
        try:
            return base64.b64decode(leaf["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"input '{name}': {{\"b64\": ...}} holds no valid base64 text") from None
    raise invalid(f"input '{name}' takes strings: send text, or binary data such as an image as {{\"b64\": \"...\"}}, "
                  f"not {type(leaf).__name__} {str(leaf)[:40]}")


def type_name(dtype: tf.DType) -> str:
    """TensorFlow's name of a type as TF Serving words it (DataTypeString: "float", "int64", "string")."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum).removeprefix("DT_").lower()


def json_type(value: Any) -> str:
    """A JSON value's type as TF Serving's errors name it."""
    if value is None or isinstance(value, bool):
        return {None: "Null", True: "True", False: "False"}[value]
    return {str: "String", dict: "Object", list: "Array"}.get(type(value), "Number")


def excerpt(value: Any) -> str:
    """A JSON value as TF Serving quotes it in an error: compact, at most 256 characters."""
    return json.dumps(value, separators=(",", ":"), default=str)[:256]


def type_error(leaf: Any, dtype: tf.DType, name: str) -> Exception:
    return invalid(f"JSON Value: {excerpt(leaf)} Type: {json_type(leaf)} is not of expected type: "
                   f"{type_name(dtype)} (input '{name}')")


def _numeric_leaves(leaves: list, dtype: tf.DType, name: str) -> np.ndarray:
    for leaf in leaves:
        is_number = isinstance(leaf, (int, float)) and not isinstance(leaf, bool)
        ok = isinstance(leaf, bool) if dtype == tf.bool else (
            is_number and (dtype.is_floating or isinstance(leaf, int))
        )
        if not ok:
            raise type_error(leaf, dtype, name)
    return np.array(leaves, dtype=dtype.as_numpy_dtype)


def _parsed_numbers(array: np.ndarray, dtype: tf.DType, name: str) -> np.ndarray:
    """An array of numbers json_body read, checked as `_numeric_leaves` checks JSON numbers."""
    if dtype == tf.string:
        _string_leaf(array.flat[0].item(), name)  # refuses a number
    if array.dtype.kind == "f" and not dtype.is_floating:
        raise invalid(f"input '{name}' takes {dtype.name} values, but numbers with a fraction or an exponent were sent")
    _numeric_leaves([array.flat[0].item()], dtype, name)  # refuses numbers for a bool input
    return array.astype(dtype.as_numpy_dtype, copy=False)


def from_json(value: Any, spec: tf.TensorSpec, name: str) -> np.ndarray:
    """One input's JSON value (nested lists, or an ndarray json_body read; strings or {"b64": ...} for string
    inputs) as an array."""
    if isinstance(value, np.ndarray):
        return _parsed_numbers(value, spec.dtype, name)
    shape, leaves = _nested_shape(value, name)
    if spec.dtype == tf.string:
        array = np.empty(len(leaves), dtype=object)
        array[:] = [_string_leaf(leaf, name) for leaf in leaves]
    else:
        array = _numeric_leaves(leaves, spec.dtype, name)
    return array.reshape(shape)


def _named(value: Any) -> bool:
    """Whether a JSON object names the signature's inputs (and is not a value of the only input)."""
    return isinstance(value, dict) and not _is_b64(value)


def _check_names(names: set, specs: Specs, where: str) -> None:
    if names != set(specs):
        raise invalid(f"{where} names inputs {sorted(names)}, but the signature takes {sorted(specs)}")


def from_rest(body: Any, specs: Specs) -> tuple[dict[str, np.ndarray], bool]:
    """The inputs of a REST predict request body, and whether it is in row format ("instances")."""
    if not isinstance(body, dict):
        raise invalid(f"JSON Value: {excerpt(body)} Is not object")
    if "instances" not in body and "inputs" not in body:
        raise invalid("Missing 'inputs' or 'instances' key: send \"instances\" (row format) or \"inputs\" "
                      "(columnar format)")
    if "instances" in body and "inputs" in body:
        raise invalid(f"JSON Value: {excerpt(body)} Not formatted correctly expecting only one of 'inputs' or "
                      "'instances' keys exist")
    if "inputs" in body:
        columns = body["inputs"]
        if not _named(columns):
            if len(specs) != 1:
                raise invalid(f'"inputs" must be an object naming each input: {sorted(specs)}')
            columns = {next(iter(specs)): columns}
        _check_names(set(columns), specs, '"inputs"')
        return {name: from_json(columns[name], specs[name], name) for name in specs}, False
    instances = body["instances"]
    if not isinstance(instances, (list, np.ndarray)):
        raise invalid(f"JSON Value: {excerpt(body)} Expecting 'instances' to be an list/array")
    if len(instances) == 0:
        raise invalid(f"JSON Value: {excerpt(body)} No values in 'instances' array")
    if all(_named(instance) for instance in instances):
        for index, instance in enumerate(instances):
            _check_names(set(instance), specs, f'"instances"[{index}]')
        columns = {name: [instance[name] for instance in instances] for name in specs}
    elif len(specs) == 1:
        columns = {next(iter(specs)): instances}
    else:
        raise invalid(f'each of "instances" must be an object naming each input: {sorted(specs)}')
    return {name: from_json(column, specs[name], name) for name, column in columns.items()}, True


def rest_rows(body: Any) -> int:
    """How many instances a REST predict request body holds, counted before any conversion (0 for a body
    `from_rest` refuses)."""
    if not isinstance(body, dict):
        return 0
    if isinstance(body.get("instances"), (list, np.ndarray)):
        return len(body["instances"])
    columns = body.get("inputs")
    values = columns.values() if _named(columns) else [columns]
    return max((len(value) for value in values if isinstance(value, (list, np.ndarray))), default=0)


def _json_value(array: np.ndarray, name: str) -> Any:
    if array.dtype != object:
        return array.tolist()

    def text(item: bytes) -> Any:
        if name.endswith(BYTES_SUFFIX) or not _is_utf8(item):
            return {"b64": base64.b64encode(item).decode()}
        return item.decode("utf-8")

    return np.frompyfunc(text, 1, 1)(array).tolist() if array.ndim else text(array.item())


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def to_rest(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    """The REST response: {"predictions": [...]} for row format, {"outputs": ...} for columnar."""
    if not row_format:
        if len(outputs) == 1:
            (name, value), = outputs.items()
            return {"outputs": _json_value(value, name)}
        return {"outputs": {name: _json_value(value, name) for name, value in outputs.items()}}
    rows = {len(value) if value.ndim else None for value in outputs.values()}
    if len(rows) != 1 or None in rows:
        raise invalid('the signature\'s outputs do not share a batch size, so they cannot be answered in row format; '
                      'send "inputs" (columnar format) instead')
    columns = {name: _json_value(value, name) for name, value in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {"predictions": [dict(zip(columns, row)) for row in zip(*columns.values())]}


def proto_rows(proto: tensor_pb2.TensorProto) -> int:
    """How many instances a TensorProto holds (its first dimension), read from its shape before any conversion."""
    return proto.tensor_shape.dim[0].size if proto.tensor_shape.dim else 1


def from_proto(proto: tensor_pb2.TensorProto, spec: tf.TensorSpec, name: str) -> np.ndarray:
    """A gRPC request's TensorProto as an array, checked against the signature's dtype (the shape is the graph's
    to check)."""
    if proto.dtype != spec.dtype.as_datatype_enum:
        sent = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "no dtype"
        raise invalid(f"input '{name}' takes {spec.dtype.name} values, but {sent} was sent")
    try:
        is_strings = proto.dtype == types_pb2.DT_STRING and not proto.tensor_content
        array = _strings(proto) if is_strings else tf.make_ndarray(proto)
    except (TypeError, ValueError) as error:
        raise invalid(f"input '{name}': the TensorProto cannot be read: {error}") from None
    return array


def _strings(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A string TensorProto's values as tf.make_ndarray reads them (too few repeat the last one; none give b"",
    where TensorFlow gives str ""). Images come this way on gRPC requests, and TensorFlow's per-call overhead
    makes it slower: 1.7x for 64 PNGs (6.4 against 11.1 µs), 2.5x for one, 1.1x for 1,024 short strings
    (bench/tensor_protos.py, docs/benchmarks.md)."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    values = list(proto.string_val)
    values += [values[-1] if values else b""] * (math.prod(shape) - len(values))
    return np.array(values, dtype=object).reshape(shape)


# The typed field of a TensorProto for each type (TensorFlow's Tensor::AsProtoField), and the NumPy view written.
TYPED_FIELDS = {
    types_pb2.DT_INT32: ("int_val", None), types_pb2.DT_INT16: ("int_val", None), types_pb2.DT_INT8: ("int_val", None),
    types_pb2.DT_UINT8: ("int_val", None), types_pb2.DT_UINT16: ("int_val", None),
    types_pb2.DT_INT64: ("int64_val", None), types_pb2.DT_UINT32: ("uint32_val", None),
    types_pb2.DT_UINT64: ("uint64_val", None), types_pb2.DT_BOOL: ("bool_val", None),
    types_pb2.DT_HALF: ("half_val", np.uint16),
}
# The typed fields of fixed width (float_val 5, double_val 6, scomplex_val 9, dcomplex_val 12: packed little-endian
# values), written from the array's bytes as the serialized field: a Python number per value is 100 times slower.
PACKED_FIELDS = {types_pb2.DT_FLOAT: (5, "<f4"), types_pb2.DT_DOUBLE: (6, "<f8"),
                 types_pb2.DT_COMPLEX64: (9, "<c8"), types_pb2.DT_COMPLEX128: (12, "<c16")}


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def write_proto(array: np.ndarray, proto: tensor_pb2.TensorProto) -> None:
    """Writes an output array into an empty TensorProto in place, in the typed field of its type (`float_val`,
    `int64_val`, `string_val` ...) as TF Serving answers, so that clients reading those fields see the values;
    tf.make_ndarray reads it back the same."""
    proto.tensor_shape.SetInParent()  # a scalar's shape is present and empty
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.dtype == object:
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(array.reshape(-1).tolist())
        return
    proto.dtype = tf.as_dtype(array.dtype).as_datatype_enum
    if proto.dtype in PACKED_FIELDS:
        number, layout = PACKED_FIELDS[proto.dtype]
        values = np.ascontiguousarray(array, dtype=layout).tobytes()
        proto.MergeFromString(_varint(number << 3 | 2) + _varint(len(values)) + values)
        return
    field, view = TYPED_FIELDS.get(proto.dtype, (None, None))
    if field is None:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
        return
    flat = array.reshape(-1)
    getattr(proto, field).extend((flat.view(view) if view else flat).tolist())
