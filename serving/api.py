"""What the REST and gRPC front ends share: model status and metadata as TF Serving's protos, and
the predict call on checked inputs.
"""

from typing import Optional

import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from cnnpipe.serving.errors import invalid
from cnnpipe.serving.manager import ModelManager
from cnnpipe.serving.servable import Servable

SIGNATURE_DEF = "signature_def"  # the one metadata field TF Serving answers


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


def model_spec(servable: Servable, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature_name)
    spec.version.value = servable.version
    return spec


def predict(servable: Servable, signature_name: str, inputs: dict[str, np.ndarray],
            output_filter: tuple[str, ...] = ()) -> tuple[str, dict[str, np.ndarray]]:
    """Runs the signature; returns its key and the outputs (only those in `output_filter` when given)."""
    key, signature = servable.signature(signature_name)
    unknown = set(output_filter) - set(signature.outputs)
    if unknown:
        raise invalid(f"output_filter names {sorted(unknown)}, but signature '{key}' has outputs "
                      f"{sorted(signature.outputs)}")
    outputs = servable.run(key, inputs)
    return key, {name: outputs[name] for name in (output_filter or outputs)}

