"""`cnnpipe serve`: TF Serving's REST and gRPC APIs over a serving directory.

When a `tensorflow_model_server` binary is on PATH it is launched with the same models instead;
otherwise the models are served by this package (`manager`, `rest`, `grpc_api`).
"""

import logging
import os
import shutil
import signal
import tempfile
import threading
from typing import Optional

import tensorflow as tf

from cnnpipe.serving import model_config
from cnnpipe.serving.batching import BatchingOptions
from cnnpipe.serving.grpc_api import grpc_server
from cnnpipe.serving.manager import ModelManager
from cnnpipe.serving.options import ServerOptions
from cnnpipe.serving.rest import RestServer

MODEL_SERVER = "tensorflow_model_server"

log = logging.getLogger("cnnpipe.serving")


class RunningServer:
    """The REST and gRPC servers and the model manager of one `serve` call."""

    def __init__(self, options: ServerOptions):
        if options.intra_op_parallelism:  # before the first model loads: TensorFlow fixes its threads then
            tf.config.threading.set_intra_op_parallelism_threads(options.intra_op_parallelism)
        if options.inter_op_parallelism:
            tf.config.threading.set_inter_op_parallelism_threads(options.inter_op_parallelism)
        self.manager = ModelManager(options.serving_dir, options.model_config_file, options.batching)
        self.manager.start(options.poll_seconds)  # the first versions are loaded before the ports open
        self.grpc = grpc_server(self.manager, f"{options.host}:{options.grpc_port}", options.max_request_bytes)
        self.rest = RestServer((options.host, options.rest_port), self.manager, options.max_request_bytes)
        self._rest_thread = threading.Thread(target=self.rest.serve_forever, daemon=True, name="rest")
        self._rest_thread.start()

    def stop(self) -> None:
        self.rest.shutdown()
        self.rest.server_close()
        self.grpc.stop(grace=1).wait()
        self.manager.stop()


def model_server_command(binary: str, options: ServerOptions, config_file: str,
                         batching_file: Optional[str] = None) -> list[str]:
    """The tensorflow_model_server command line for `options`."""
    command = [
        binary,
        f"--port={options.grpc_port}",
        f"--rest_api_port={options.rest_port}",
        f"--model_config_file={config_file}",
        f"--model_config_file_poll_wait_seconds={max(1, round(options.poll_seconds))}",
        f"--file_system_poll_wait_seconds={max(1, round(options.poll_seconds))}",
    ]
    if options.intra_op_parallelism:
        command.append(f"--tensorflow_intra_op_parallelism={options.intra_op_parallelism}")
    if options.inter_op_parallelism:
        command.append(f"--tensorflow_inter_op_parallelism={options.inter_op_parallelism}")
    if batching_file:
        command += ["--enable_batching=true", f"--batching_parameters_file={batching_file}"]
    return command


def batching_parameters(options: BatchingOptions) -> str:
    """TF Serving's batching parameters file (text format) for `options`."""
    return (f"max_batch_size {{ value: {options.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {options.batch_timeout_micros} }}\n"
            f"num_batch_threads {{ value: {options.num_batch_threads} }}\n")


def _launch_model_server(binary: str, options: ServerOptions) -> None:
    """Replaces this process with tensorflow_model_server serving the same models."""
    config_file = options.model_config_file or model_config.write(options.serving_dir)
    batching_file = None
    if options.batching:
        handle, batching_file = tempfile.mkstemp(prefix="cnnpipe-batching-", suffix=".pbtxt")
        with os.fdopen(handle, "w") as f:
            f.write(batching_parameters(options.batching))
    command = model_server_command(binary, options, config_file, batching_file)
    print("cnnpipe: launching " + " ".join(command), flush=True)
    os.execv(binary, command)


def serve(options: ServerOptions) -> None:
    """Serves until interrupted (SIGINT or SIGTERM)."""
    binary = shutil.which(MODEL_SERVER)
    if binary:
        _launch_model_server(binary, options)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = RunningServer(options)
    source = options.model_config_file or options.serving_dir
    print(f"cnnpipe: serving {source}: REST on {options.host}:{options.rest_port}, gRPC on "
          f"{options.host}:{options.grpc_port}", flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    server.stop()
