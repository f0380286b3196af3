"""ServerOptions: how `cnnpipe serve` listens and loads; no TensorFlow, so the CLI starts fast."""

import dataclasses
from typing import Optional

from cnnpipe.serving.batching import BatchingOptions

MAX_REQUEST_BYTES = 64 << 20  # TF Serving's gRPC default limit is 4 MiB per message; images in JSON grow by 4/3
# A request's memory grows with its images (a 28x28 one costs the server about 0.2 MB at its peak, in JSON parsing and
# the model's activations: bench/serving_memory.py); 1024 holds one request to about 220 MB.
MAX_BATCH_IMAGES = 1024
DRAIN_SECONDS = 30.0  # as a Kubernetes pod's default termination grace period


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    serving_dir: Optional[str] = None  # each subdirectory is a model named after it
    model_config_file: Optional[str] = None  # a models.config; overrides serving_dir
    rest_port: int = 8501
    grpc_port: int = 8500
    host: str = "0.0.0.0"  # as TF Serving: every interface (containers); tests use 127.0.0.1
    poll_seconds: float = 1.0
    model_config_poll_seconds: Optional[float] = None  # re-read model_config_file every S s (None: each poll; 0: never)
    batching: Optional[BatchingOptions] = None
    max_request_bytes: int = MAX_REQUEST_BYTES
    intra_op_parallelism: int = 0  # TensorFlow's threads within one op; 0: TensorFlow chooses (as TF Serving)
    inter_op_parallelism: int = 0  # TensorFlow's threads running ops side by side; 0: TensorFlow chooses
    max_batch_images: int = MAX_BATCH_IMAGES  # images (instances) in one request; more are refused
    drain_seconds: float = DRAIN_SECONDS  # on SIGTERM/SIGINT, how long requests under way may take to finish
    log_requests: Optional[str] = None  # a directory: log a sample of predictions there (serving/request_log.py)
    log_sample_rate: float = 1.0  # the share of predictions logged
    monitoring_config_file: Optional[str] = None  # TF Serving's MonitoringConfig: enables the Prometheus endpoint
    grpc_channel_arguments: str = ""  # further gRPC server options, "name=value,name=value"
    enable_model_warmup: bool = True  # replay each version's assets.extra/tf_serving_warmup_requests before serving
    warmup_iterations: int = 1  # times each warmup request is replayed
