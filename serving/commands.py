"""The `serve`, `predict` and `search` subcommands of the `cnnpipe` command line."""

import argparse

from cnnpipe.core.names import CLASSIFY, DEFAULT_DATASET, DEFAULT_SERVING_DIR, PREDICT_IMAGE, SEARCH

DEFAULT_MODEL = DEFAULT_DATASET  # a run names its model after its data set
APIS = {"predict": PREDICT_IMAGE, "classify": CLASSIFY}  # `predict --api`: TF Serving's API, and the signature it calls


def _host_port(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. localhost:8501")
    return text


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected a whole number of at least 1")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a share in (0, 1], not {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("expected seconds, 0 or more")
    return value


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds `serve`, `predict` and `search` to the CLI's subcommands."""
    from cnnpipe.serving.batching import BatchingOptions  # noqa: PLC0415 - keeps --help fast
    from cnnpipe.serving.options import MAX_REQUEST_BYTES, ServerOptions  # noqa: PLC0415

    d, b = ServerOptions(), BatchingOptions()
    serve = commands.add_parser("serve", help="serve pushed models over TF Serving's REST and gRPC APIs")
    serve.add_argument("--serving-dir", default=DEFAULT_SERVING_DIR,
                       help=f"each subdirectory is a model named after it (default {DEFAULT_SERVING_DIR})")
    serve.add_argument("--model-config", dest="model_config_file", metavar="FILE",
                       help="a TF Serving models.config (model_config_list) to serve instead of --serving-dir")
    serve.add_argument("--rest-port", type=int, default=d.rest_port, help=f"default {d.rest_port}")
    serve.add_argument("--grpc-port", type=int, default=d.grpc_port, help=f"default {d.grpc_port}")
    serve.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    serve.add_argument("--poll-seconds", type=float, default=d.poll_seconds,
                       help=f"how often to look for new versions (default {d.poll_seconds})")
    serve.add_argument("--model-config-poll-seconds", type=_seconds, metavar="S",
                       help="with --model-config, read the file again every S seconds (0: only at the start, as TF "
                       "Serving's --model_config_file_poll_wait_seconds=0; default: at every --poll-seconds)")
    serve.add_argument("--max-request-bytes", type=int, default=MAX_REQUEST_BYTES,
                       help=f"larger request bodies are refused (default {MAX_REQUEST_BYTES})")
    serve.add_argument("--max-batch-images", type=_count, default=d.max_batch_images, metavar="N",
                       help="requests of more images (instances) are refused, over REST and gRPC: a request's "
                       "memory grows with its images, and these bound it (28x28 images: about 0.2 MB each at the "
                       f"server's peak, so the default {d.max_batch_images} holds one request to about 220 MB)")
    serve.add_argument("--drain-seconds", type=_seconds, default=d.drain_seconds, metavar="S",
                       help="on SIGTERM or SIGINT, stop taking requests and give those under way up to S seconds to "
                       f"finish before unloading and exiting (default {d.drain_seconds:g}, as a Kubernetes pod's "
                       "termination grace period)")
    serve.add_argument("--tensorflow-intra-op-parallelism", dest="intra_op_parallelism", type=int, metavar="N",
                       default=d.intra_op_parallelism, help="TensorFlow's threads within one op (default 0: TensorFlow "
                       "chooses), as TF Serving's --tensorflow_intra_op_parallelism")
    serve.add_argument("--tensorflow-inter-op-parallelism", dest="inter_op_parallelism", type=int, metavar="N",
                       default=d.inter_op_parallelism, help="TensorFlow's threads running ops side by side "
                       "(default 0: TensorFlow chooses)")
    serve.add_argument("--log-requests", metavar="DIR", help="log a sample of the predictions each version makes "
                       "under DIR/<model>/<version>/ (PredictionLog records in TFRecord files, as TF Serving's request "
                       "logging; never delays or fails a request), for `cnnpipe skew`")
    serve.add_argument("--log-sample-rate", type=_share, default=d.log_sample_rate, metavar="R",
                       help=f"with --log-requests, the share of predictions logged (default "
                       f"{d.log_sample_rate:g}: all)")
    serve.add_argument("--monitoring-config-file", metavar="FILE", help="a TF Serving MonitoringConfig (text format); "
                       "with prometheus_config { enable: true } the REST port answers GET "
                       "/monitoring/prometheus/metrics (or its path) with request counts and latencies per model, API "
                       "and status, and each version's load state")
    serve.add_argument("--grpc-channel-arguments", default="", metavar="NAME=VALUE,…",
                       help="further gRPC server options, as TF Serving's --grpc_channel_arguments")
    serve.add_argument("--no-model-warmup", dest="enable_model_warmup", action="store_false",
                       help="do not replay a version's assets.extra/tf_serving_warmup_requests before serving it")
    serve.add_argument("--warmup-iterations", type=_count, default=d.warmup_iterations, metavar="N",
                       help=f"times each warmup request is replayed (default {d.warmup_iterations})")
    batching = serve.add_argument_group("batching (as TF Serving's --enable_batching)")
    batching.add_argument("--enable-batching", action="store_true", help="stack concurrent requests into one call")
    batching.add_argument("--max-batch-size", type=int, default=b.max_batch_size, help=f"default {b.max_batch_size}")
    batching.add_argument("--batch-timeout-micros", type=int, default=b.batch_timeout_micros,
                          help=f"default {b.batch_timeout_micros}")
    batching.add_argument("--num-batch-threads", type=int, default=b.num_batch_threads,
                          help=f"default {b.num_batch_threads}")
    serve.set_defaults(func=_serve)

    predict = commands.add_parser("predict", help="the top classes of image files, from a server or in-process")
    _client_arguments(predict)
    predict.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    predict.add_argument("--api", choices=APIS, default="predict",
                         help="predict: the images to the predict_image signature (the default); classify: the images "
                         "as tf.Examples to the classify signature, through TF Serving's Classify API")
    predict.set_defaults(func=_predict)
    search = commands.add_parser("search", help="the catalog items most like image files (visual search), from a "
                                 "server or in-process")
    _client_arguments(search)
    search.add_argument("--top-k", type=int, default=10,
                        help="items to show per image (default 10, at most what the model's search signature returns)")
    search.set_defaults(func=_search)


def _client_arguments(parser: argparse.ArgumentParser) -> None:
    """The images, and where the model answering about them is: a server, or the newest pushed version."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files of any size and colour mode")
    parser.add_argument("--server", type=_host_port, metavar="HOST:PORT",
                        help="a TF Serving compatible server; without it the newest pushed version runs in-process")
    protocol = parser.add_mutually_exclusive_group()
    protocol.add_argument("--grpc", dest="protocol", action="store_const", const="grpc", help="call the server by gRPC")
    protocol.add_argument("--rest", dest="protocol", action="store_const", const="rest",
                          help="call the server by REST (the default)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    parser.add_argument("--version", type=int, help="model version (default: the newest)")
    parser.add_argument("--serving-dir", default=DEFAULT_SERVING_DIR,
                        help=f"where pushed models are, without --server (default {DEFAULT_SERVING_DIR})")


def _serve(args: argparse.Namespace) -> int:
    from cnnpipe.serving.batching import BatchingOptions  # noqa: PLC0415
    from cnnpipe.serving.options import ServerOptions  # noqa: PLC0415
    from cnnpipe.serving.server import serve  # noqa: PLC0415

    batching = BatchingOptions(args.max_batch_size, args.batch_timeout_micros, args.num_batch_threads) \
        if args.enable_batching else None
    serve(ServerOptions(
        serving_dir=args.serving_dir, model_config_file=args.model_config_file, rest_port=args.rest_port,
        grpc_port=args.grpc_port, host=args.host, poll_seconds=args.poll_seconds, batching=batching,
        model_config_poll_seconds=args.model_config_poll_seconds,
        max_request_bytes=args.max_request_bytes, intra_op_parallelism=args.intra_op_parallelism,
        inter_op_parallelism=args.inter_op_parallelism, max_batch_images=args.max_batch_images,
        drain_seconds=args.drain_seconds, log_requests=args.log_requests, log_sample_rate=args.log_sample_rate,
        monitoring_config_file=args.monitoring_config_file, grpc_channel_arguments=args.grpc_channel_arguments,
        enable_model_warmup=args.enable_model_warmup, warmup_iterations=args.warmup_iterations,
    ))
    return 0


def _call(args: argparse.Namespace, signature: str) -> tuple[list[str], dict]:
    """The images' outputs of `signature` (`classify`: the images sent as tf.Examples), from the server or the pushed
    model that `args` name."""
    from cnnpipe.core.errors import CnnpipeError  # noqa: PLC0415
    from cnnpipe.serving import client  # noqa: PLC0415

    if args.protocol and not args.server:
        raise CnnpipeError(f"--{args.protocol} calls a server: add --server HOST:PORT, or drop it to run in-process.")
    if args.top_k < 1:
        raise CnnpipeError(f"--top-k {args.top_k}: give 1 or more.")
    inputs = client.read_images(args.images)
    if signature == CLASSIFY:
        inputs = client.tf_examples(inputs)
    if args.server and args.protocol == "grpc":
        return args.images, client.call_grpc(args.server, args.model, args.version, signature, inputs)
    if args.server:
        return args.images, client.call_rest(args.server, args.model, args.version, signature, inputs)
    model_dir = client.local_model_dir(args.serving_dir, args.model, args.version)
    return args.images, client.call_local(model_dir, signature, inputs)


def _predict(args: argparse.Namespace) -> int:
    from cnnpipe.serving import client  # noqa: PLC0415

    paths, outputs = _call(args, APIS[args.api])
    print(client.format_top_classes(paths, client.top_classes(outputs, args.top_k)))
    return 0


def _search(args: argparse.Namespace) -> int:
    from cnnpipe.serving import client  # noqa: PLC0415

    paths, outputs = _call(args, SEARCH)
    print(client.format_neighbours(paths, outputs, args.top_k))
    return 0
