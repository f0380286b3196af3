"""`cnnpipe serve`: TF Serving's REST and gRPC APIs over a serving directory.

When a `tensorflow_model_server` binary is on PATH it is launched with the same models instead;
otherwise the models are served by this package (`manager`, `rest`, `grpc_api`).
"""

import functools
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Optional

import tensorflow as tf

from cnnpipe.serving import api, model_config, monitoring
from cnnpipe.serving.batching import BatchingOptions
from cnnpipe.serving.grpc_api import channel_arguments, grpc_server
from cnnpipe.serving.manager import ModelManager
from cnnpipe.serving.options import ServerOptions
from cnnpipe.serving.request_log import RequestLog
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
        metrics_path = (monitoring.read_config(options.monitoring_config_file) if options.monitoring_config_file
                        else None)
        self.metrics = monitoring.Metrics()
        warm_up = functools.partial(api.warm_up, max_batch_images=options.max_batch_images,
                                    iterations=options.warmup_iterations) if options.enable_model_warmup else None
        self.manager = ModelManager(options.serving_dir, options.model_config_file, options.active_batching, warm_up,
                                    self.metrics, options.model_config_poll_seconds)
        self.manager.start(options.poll_seconds)  # the first versions are loaded before the ports open
        self.in_flight = api.InFlight()
        self.request_log = RequestLog(options.log_requests, options.log_sample_rate) if options.log_requests else None
        self.grpc = grpc_server(self.manager, f"{options.host}:{options.grpc_port}", options.max_request_bytes,
                                options.max_batch_images, self.in_flight, self.metrics, self.request_log,
                                options=tuple(channel_arguments(options.grpc_channel_arguments)))
        self.rest = RestServer((options.host, options.rest_port), self.manager, options.max_request_bytes,
                               options.max_batch_images, self.in_flight, self.metrics, self.request_log, metrics_path)
        threading.Thread(target=self.rest.serve_forever, daemon=True, name="rest").start()

    def stop(self, drain_seconds: float) -> bool:
        """Stops taking requests, lets those under way finish for up to `drain_seconds`, then unloads the models.

        Returns False, the models still loaded, when requests still run at the deadline: exiting while TensorFlow
        runs one crashes the process (exit's C++ destructors free oneDNN's compiled kernels under it: SIGSEGV)."""
        deadline = time.monotonic() + drain_seconds
        grpc_stopped = self.grpc.stop(grace=drain_seconds)  # refuses new calls at once
        self.rest.drain()
        grpc_finished = grpc_stopped.wait(max(0.0, deadline - time.monotonic()))
        if not (self.in_flight.wait_idle(max(0.0, deadline - time.monotonic())) and grpc_finished):
            return False
        self.manager.stop()
        if self.request_log is not None:
            self.request_log.close()
        return True


def model_server_command(binary: str, options: ServerOptions, config_file: str,
                         batching_file: Optional[str] = None) -> list[str]:
    """The tensorflow_model_server command line for `options`."""
    command = [
        binary,
        f"--port={options.grpc_port}",
        f"--rest_api_port={options.rest_port}",
        f"--model_config_file={config_file}",
        f"--model_config_file_poll_wait_seconds={config_poll_seconds(options)}",
        f"--file_system_poll_wait_seconds={max(1, round(options.poll_seconds))}",
    ]
    if options.intra_op_parallelism:
        command.append(f"--tensorflow_intra_op_parallelism={options.intra_op_parallelism}")
    if options.inter_op_parallelism:
        command.append(f"--tensorflow_inter_op_parallelism={options.inter_op_parallelism}")
    if batching_file:
        command += ["--enable_batching=true", f"--batching_parameters_file={batching_file}"]
    if options.monitoring_config_file:
        command.append(f"--monitoring_config_file={options.monitoring_config_file}")
    if options.grpc_channel_arguments:
        command.append(f"--grpc_channel_arguments={options.grpc_channel_arguments}")
    if not options.enable_model_warmup:
        command.append("--enable_model_warmup=false")
    if options.warmup_iterations != 1:
        command.append(f"--num_request_iterations_for_warmup={options.warmup_iterations}")
    return command


def config_poll_seconds(options: ServerOptions) -> int:
    """tensorflow_model_server's --model_config_file_poll_wait_seconds for `options` (whole seconds; 0: never)."""
    seconds = options.poll_seconds if options.model_config_poll_seconds is None else options.model_config_poll_seconds
    return 0 if seconds == 0 else max(1, round(seconds))


def batching_parameters(options: BatchingOptions) -> str:
    """TF Serving's batching parameters file (text format) for `options`."""
    return (f"max_batch_size {{ value: {options.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {options.batch_timeout_micros} }}\n"
            f"num_batch_threads {{ value: {options.num_batch_threads} }}\n")


def _launch_model_server(binary: str, options: ServerOptions) -> None:
    """Replaces this process with tensorflow_model_server serving the same models."""
    config_file = options.model_config_file or model_config.write(options.serving_dir)
    batching_file = None
    if options.active_batching:
        handle, batching_file = tempfile.mkstemp(prefix="cnnpipe-batching-", suffix=".pbtxt")
        with os.fdopen(handle, "w") as f:
            f.write(batching_parameters(options.active_batching))
    command = model_server_command(binary, options, config_file, batching_file)
    print("cnnpipe: launching " + " ".join(command), flush=True)
    os.execv(binary, command)


def _wait_for_a_signal() -> None:
    """Returns on SIGINT or SIGTERM; a second one while stopping is logged, and the drain goes on."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame) -> None:
        if stopping.is_set():
            log.warning("%s again: still finishing the requests under way (see --drain-seconds)",
                        signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    # Not one wait without a timeout: a signal that the kernel hands to another thread (TensorFlow's, gRPC's)
    # would not wake the main thread, and Python runs signal handlers only there.
    while not stopping.wait(timeout=0.5):
        pass


def serve(options: ServerOptions) -> None:
    """Serves until SIGINT or SIGTERM, then stops as `RunningServer.stop` does."""
    binary = shutil.which(MODEL_SERVER)
    if binary and not options.log_requests:  # TF Serving logs requests by its own model config, not by a flag
        _launch_model_server(binary, options)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api.limit_malloc_arenas()
    server = RunningServer(options)
    source = options.model_config_file or options.serving_dir
    print(f"cnnpipe: serving {source}: REST on {options.host}:{options.rest_port}, gRPC on "
          f"{options.host}:{options.grpc_port}", flush=True)
    _wait_for_a_signal()
    print(f"cnnpipe: stopping: no new requests; finishing those under way (up to {options.drain_seconds:g} s)",
          flush=True)
    if not server.stop(options.drain_seconds):
        print(f"cnnpipe: {server.in_flight.count} requests still running after --drain-seconds "
              f"{options.drain_seconds:g}; exiting without their answers", file=sys.stderr, flush=True)
        os._exit(1)  # not exit(): its C++ destructors would free TensorFlow's kernels under the running requests
    print("cnnpipe: stopped", flush=True)
