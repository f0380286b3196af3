"""ServerOptions: how `cnnpipe serve` listens and loads; no TensorFlow, so the CLI starts fast."""

import dataclasses
from typing import Optional

from cnnpipe.serving.batching import BatchingOptions

MAX_REQUEST_BYTES = 64 << 20  # TF Serving's gRPC default limit is 4 MiB per message; images in JSON grow by 4/3


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    serving_dir: Optional[str] = None  # each subdirectory is a model named after it
    model_config_file: Optional[str] = None  # a models.config; overrides serving_dir
    rest_port: int = 8501
    grpc_port: int = 8500
    host: str = "0.0.0.0"  # as TF Serving: every interface (containers); tests use 127.0.0.1
    poll_seconds: float = 1.0
    batching: Optional[BatchingOptions] = None
    max_request_bytes: int = MAX_REQUEST_BYTES
    intra_op_parallelism: int = 0  # TensorFlow's threads within one op; 0: TensorFlow chooses (as TF Serving)
    inter_op_parallelism: int = 0  # TensorFlow's threads running ops side by side; 0: TensorFlow chooses
