"""ServerOptions: how `cnnpipe serve` listens and loads; each field is also its flag (core/options.py). No
TensorFlow here, so the CLI starts fast."""

import dataclasses
from typing import Optional

from cnnpipe.core.names import DEFAULT_SERVING_DIR
from cnnpipe.core.options import count, option, seconds, share
from cnnpipe.serving.batching import BatchingOptions

MAX_REQUEST_BYTES = 64 << 20  # TF Serving's gRPC default limit is 4 MiB per message; images in JSON grow by 4/3
# A request's memory grows with its images (a 28x28 one costs the server about 0.2 MB at its peak, in JSON parsing and
# the model's activations: bench/serving_memory.py); 1024 holds one request to about 220 MB.
MAX_BATCH_IMAGES = 1024
DRAIN_SECONDS = 30.0  # as a Kubernetes pod's default termination grace period
GROUP = "serving"


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    serving_dir: str = option(DEFAULT_SERVING_DIR, "each subdirectory is a model named after it", GROUP)
    model_config_file: Optional[str] = option(
        None, "a TF Serving models.config (model_config_list) to serve instead of --serving-dir", GROUP,
        flag="--model-config", metavar="FILE")
    rest_port: int = option(8501, "", GROUP, metavar="PORT")
    grpc_port: int = option(8500, "", GROUP, metavar="PORT")
    host: str = option("0.0.0.0", "address to listen on", GROUP)  # as TF Serving: every interface (containers)
    poll_seconds: float = option(1.0, "how often to look for new versions", GROUP, parse=seconds,
                                metavar="S")
    model_config_poll_seconds: Optional[float] = option(
        None, "with --model-config, read the file again every S seconds (0: only at the start, as TF Serving's "
        "--model_config_file_poll_wait_seconds=0)", GROUP, parse=seconds, metavar="S",
        default_help="at every --poll-seconds")
    max_request_bytes: int = option(MAX_REQUEST_BYTES, "larger request bodies are refused", GROUP, parse=count,
                                     metavar="BYTES")
    max_batch_images: int = option(
        MAX_BATCH_IMAGES, "requests of more images (instances) are refused, over REST and gRPC: a request's memory "
        "grows with its images, and these bound it (28x28 images: about 0.2 MB each at the server's peak, so the "
        "default holds one request to about 220 MB)", GROUP, parse=count, metavar="N")
    drain_seconds: float = option(
        DRAIN_SECONDS, "on SIGTERM or SIGINT, stop taking requests and give those under way up to S seconds to finish "
        "before unloading and exiting (as a Kubernetes pod's termination grace period)", GROUP, parse=seconds,
        metavar="S")
    intra_op_parallelism: int = option(
        0, "TensorFlow's threads within one op (0: TensorFlow chooses), as TF Serving's "
        "--tensorflow_intra_op_parallelism", GROUP, flag="--tensorflow-intra-op-parallelism", metavar="N")
    inter_op_parallelism: int = option(0, "TensorFlow's threads running ops side by side (0: TensorFlow chooses)",
                                       GROUP, flag="--tensorflow-inter-op-parallelism", metavar="N")
    log_requests: Optional[str] = option(
        None, "log a sample of the predictions each version makes under DIR/<model>/<version>/ (PredictionLog "
        "records in TFRecord files, as TF Serving's request logging; never delays or fails a request), for "
        "`cnnpipe skew`", GROUP, metavar="DIR")
    log_sample_rate: float = option(1.0, "with --log-requests, the share of predictions logged", GROUP, parse=share,
                                    metavar="R")
    monitoring_config_file: Optional[str] = option(
        None, "a TF Serving MonitoringConfig (text format); with prometheus_config { enable: true } the REST port "
        "answers GET /monitoring/prometheus/metrics (or its path) with request counts and latencies per model, API "
        "and status, and each version's load state", GROUP, metavar="FILE")
    grpc_channel_arguments: str = option("", "further gRPC server options, as TF Serving's --grpc_channel_arguments",
                                         GROUP, metavar="NAME=VALUE,…")
    enable_model_warmup: bool = option(
        True, "do not replay a version's assets.extra/tf_serving_warmup_requests before serving it", GROUP,
        flag="--no-model-warmup")
    warmup_iterations: int = option(1, "times each warmup request is replayed", GROUP, parse=count, metavar="N")
    enable_batching: bool = option(False, "stack concurrent requests into one call", BatchingOptions.GROUP)
    batching: BatchingOptions = dataclasses.field(default_factory=BatchingOptions)  # with enable_batching

    @property
    def active_batching(self) -> Optional[BatchingOptions]:
        """The batching options when batching is on, else None."""
        return self.batching if self.enable_batching else None
