"""TF Serving's gRPC API: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus), with the stubs of tensorflow-serving-api. Errors abort with TF Serving's codes.
"""

import functools
import logging
from concurrent import futures
from typing import Callable, Optional

import grpc
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from cnnpipe.serving import api, tensors
from cnnpipe.serving.errors import ServingError, invalid
from cnnpipe.serving.manager import ModelManager
from cnnpipe.serving.request_log import RequestLog

log = logging.getLogger("cnnpipe.serving")


def _answers_errors(method: Callable) -> Callable:
    """Counts the call in flight; turns a ServingError into its status code, any other failure into INTERNAL."""

    @functools.wraps(method)
    def wrapper(self, request, context: grpc.ServicerContext):
        try:
            with self.in_flight:
                return method(self, request, context)
        except ServingError as error:
            context.abort(error.code, error.message)
        except Exception as error:  # noqa: BLE001 - a bug fails this call only
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    return wrapper


def _version(spec) -> tuple[Optional[int], str]:
    return (spec.version.value if spec.HasField("version") else None), spec.version_label


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, max_batch_images: int, in_flight: api.InFlight,
                 request_log: Optional[RequestLog] = None):
        self.manager, self.max_batch_images, self.in_flight = manager, max_batch_images, in_flight
        self.request_log = request_log

    @_answers_errors
    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:  # noqa: N802
        servable = self.manager.servable(request.model_spec.name, *_version(request.model_spec))
        key, signature = servable.signature(request.model_spec.signature_name)
        if set(request.inputs) != set(signature.inputs):
            raise invalid(f"the request names inputs {sorted(request.inputs)}, but signature '{key}' takes "
                          f"{sorted(signature.inputs)}")
        images = max((tensors.proto_rows(proto) for proto in request.inputs.values()), default=0)
        with api.batch_of(images, self.max_batch_images):
            inputs = {name: tensors.from_proto(request.inputs[name], spec, name)
                      for name, spec in signature.inputs.items()}
            _, outputs = api.predict(servable, key, inputs, tuple(request.output_filter), self.request_log)
            response = predict_pb2.PredictResponse(model_spec=api.model_spec(servable, key))
            for name, value in outputs.items():
                tensors.write_proto(value, response.outputs[name])
            return response

    @_answers_errors
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,  # noqa: N802
                         context) -> get_model_metadata_pb2.GetModelMetadataResponse:
        unknown = set(request.metadata_field) - {api.SIGNATURE_DEF, api.SEARCH_INDEX}
        if unknown or not request.metadata_field:
            raise invalid(f"metadata_field must be ['{api.SIGNATURE_DEF}'] (or this server's '{api.SEARCH_INDEX}'), "
                          f"not {list(request.metadata_field)}")
        servable = self.manager.servable(request.model_spec.name, *_version(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=api.model_spec(servable))
        if api.SIGNATURE_DEF in request.metadata_field:
            response.metadata[api.SIGNATURE_DEF].Pack(api.signature_def_map(servable))
        for key, value in api.search_index(servable).items():
            if key in request.metadata_field:
                response.metadata[key].Pack(wrappers_pb2.StringValue(value=value))
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, in_flight: api.InFlight):
        self.manager, self.in_flight = manager, in_flight

    @_answers_errors
    def GetModelStatus(self, request, context):  # noqa: N802
        version, label = _version(request.model_spec)
        if label:
            version = self.manager.servable(request.model_spec.name, None, label).version
        return api.model_status(self.manager, request.model_spec.name, version)


def grpc_server(manager: ModelManager, address: str, max_request_bytes: int, max_batch_images: int,
                in_flight: api.InFlight, request_log: Optional[RequestLog] = None,
                threads: int = api.MODEL_THREADS) -> grpc.Server:
    """A started gRPC server with both services on `address` (host:port); `in_flight` counts its calls;
    `request_log` gets a sample of the predictions."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", max_request_bytes),
                 ("grpc.max_send_message_length", -1)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, max_batch_images, in_flight, request_log), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager, in_flight), server)
    if not server.add_insecure_port(address):
        raise OSError(f"cannot listen for gRPC on {address}")
    server.start()
    return server
