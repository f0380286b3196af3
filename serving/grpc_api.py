"""TF Serving's gRPC API: PredictionService (Predict, Classify, Regress, MultiInference, GetModelMetadata) and
ModelService (GetModelStatus), with the stubs of tensorflow-serving-api. Errors abort with TF Serving's codes; every
call is counted in the server's metrics.
"""

import functools
import logging
import time
from concurrent import futures
from typing import Callable, Optional

import grpc
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from cnnpipe.serving import api, inference
from cnnpipe.serving.errors import ServingError, invalid
from cnnpipe.serving.manager import ModelManager
from cnnpipe.serving.monitoring import GRPC, Metrics
from cnnpipe.serving.request_log import RequestLog

log = logging.getLogger("cnnpipe.serving")


def _model_name(request) -> str:
    """The model a request names, for the metrics."""
    if isinstance(request, inference_pb2.MultiInferenceRequest):
        return request.tasks[0].model_spec.name if request.tasks else ""
    return request.model_spec.name


def _answers_errors(api_name: str) -> Callable:
    """Counts the call in flight and in the metrics as `api_name`; turns a ServingError into its status code, any
    other failure into INTERNAL."""

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self, request, context: grpc.ServicerContext):
            start, code = time.perf_counter(), grpc.StatusCode.OK
            try:
                with self.in_flight:
                    return method(self, request, context)
            except ServingError as error:
                code = error.code
                context.abort(error.code, error.message)
            except Exception as error:  # noqa: BLE001 - a bug fails this call only
                code = grpc.StatusCode.INTERNAL
                log.exception("%s failed", api_name)
                context.abort(code, f"{type(error).__name__}: {error}")
            finally:
                self.metrics.observe_request(_model_name(request), api_name, GRPC, code, time.perf_counter() - start)

        return wrapper

    return decorate


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, max_batch_images: int, in_flight: api.InFlight, metrics: Metrics,
                 request_log: Optional[RequestLog] = None):
        self.manager, self.max_batch_images, self.in_flight = manager, max_batch_images, in_flight
        self.metrics, self.request_log = metrics, request_log

    @_answers_errors("Predict")
    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:  # noqa: N802
        servable = api.servable_for(self.manager, request)
        return api.predict_response(servable, request, self.max_batch_images, self.request_log)

    @_answers_errors("Classify")
    def Classify(self, request: classification_pb2.ClassificationRequest,  # noqa: N802
                 context) -> classification_pb2.ClassificationResponse:
        return inference.classify(api.servable_for(self.manager, request), request)

    @_answers_errors("Regress")
    def Regress(self, request: regression_pb2.RegressionRequest,  # noqa: N802
                context) -> regression_pb2.RegressionResponse:
        return inference.regress(api.servable_for(self.manager, request), request)

    @_answers_errors("MultiInference")
    def MultiInference(self, request: inference_pb2.MultiInferenceRequest,  # noqa: N802
                       context) -> inference_pb2.MultiInferenceResponse:
        spec = inference.check_tasks(request)
        servable = self.manager.servable(spec.name, *api.version_choice(spec))
        response = inference.multi_inference(servable, request)
        self.metrics.observe_examples(spec.name, inference.example_count(request.input))
        return response

    @_answers_errors("GetModelMetadata")
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,  # noqa: N802
                         context) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field not in (api.SIGNATURE_DEF, api.SEARCH_INDEX):
                raise invalid(f"Metadata field {field} is not supported")
        servable = api.servable_for(self.manager, request)
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=api.model_spec(servable))
        if api.SIGNATURE_DEF in request.metadata_field:
            response.metadata[api.SIGNATURE_DEF].Pack(api.signature_def_map(servable))
        for key, value in api.search_index(servable).items():
            if key in request.metadata_field:
                response.metadata[key].Pack(wrappers_pb2.StringValue(value=value))
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, in_flight: api.InFlight, metrics: Metrics):
        self.manager, self.in_flight, self.metrics = manager, in_flight, metrics

    @_answers_errors("GetModelStatus")
    def GetModelStatus(self, request, context):  # noqa: N802
        if not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
        version, label = api.version_choice(request.model_spec)
        if label:
            version = self.manager.servable(request.model_spec.name, None, label).version
        return api.model_status(self.manager, request.model_spec.name, version)


def channel_arguments(text: str) -> list[tuple[str, object]]:
    """TF Serving's --grpc_channel_arguments ("name=value,name=value") as gRPC server options; whole numbers
    become integers."""
    arguments = []
    for pair in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise ValueError(f"--grpc-channel-arguments: {pair!r} is not name=value")
        arguments.append((name.strip(), int(value) if value.strip().lstrip("-").isdigit() else value.strip()))
    return arguments


def grpc_server(manager: ModelManager, address: str, max_request_bytes: int, max_batch_images: int,
                in_flight: api.InFlight, metrics: Metrics, request_log: Optional[RequestLog] = None,
                threads: int = api.MODEL_THREADS, options: tuple[tuple[str, object], ...] = ()) -> grpc.Server:
    """A started gRPC server with both services on `address` (host:port); `in_flight` counts its calls, `metrics`
    records them; `request_log` gets a sample of the predictions; `options` are further gRPC channel arguments."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", max_request_bytes),
                 ("grpc.max_send_message_length", -1), *options],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, max_batch_images, in_flight, metrics, request_log), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager, in_flight, metrics), server)
    if not server.add_insecure_port(address):
        raise OSError(f"cannot listen for gRPC on {address}")
    server.start()
    return server
