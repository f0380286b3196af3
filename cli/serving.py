"""The `serve`, `predict` and `search` subcommands: `serve`'s flags are ServerOptions' and BatchingOptions' fields,
the clients' are CallOptions'."""

import argparse
import dataclasses
from typing import Optional

from cnnpipe.cli.flags import add_options, argparse_type, fields_of, given
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import CLASSIFY, DEFAULT_DATASET, DEFAULT_SERVING_DIR, PREDICT_IMAGE, SEARCH
from cnnpipe.core.options import count, host_port, option

APIS = {"predict": PREDICT_IMAGE, "classify": CLASSIFY}  # `predict --api`: TF Serving's API, and the signature it calls
GROUP = "calling"


@dataclasses.dataclass(frozen=True)
class CallOptions:
    """Where the model answering `predict` and `search` is: a server, or the newest pushed version in-process."""

    server: Optional[str] = option(None, "a TF Serving compatible server; without it the newest pushed version "
                                   "runs in-process", GROUP, parse=host_port, metavar="HOST:PORT")
    grpc: bool = option(False, "call the server by gRPC", GROUP)
    rest: bool = option(False, "call the server by REST (the default)", GROUP)
    model: str = option(DEFAULT_DATASET, "model name", GROUP)  # a run names its model after its data set
    version: Optional[int] = option(None, "model version", GROUP, default_help="the newest")
    serving_dir: str = option(DEFAULT_SERVING_DIR, "where pushed models are, without --server", GROUP)


@dataclasses.dataclass(frozen=True)
class RolloutOptions:
    """The model whose `stable` label `promote` and `rollback` move."""

    serving_dir: str = option(DEFAULT_SERVING_DIR, "where the model's versions and models.config are", "rollout")
    model_name: str = option(DEFAULT_DATASET, "the model", "rollout")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds `serve`, `predict`, `search`, `promote` and `rollback` to the CLI's subcommands."""
    from cnnpipe.serving.batching import BatchingOptions  # noqa: PLC0415 - keeps --help fast
    from cnnpipe.serving.options import ServerOptions  # noqa: PLC0415

    serve = commands.add_parser("serve", help="serve pushed models over TF Serving's REST and gRPC APIs")
    add_options(serve, fields_of(ServerOptions) + fields_of(BatchingOptions))
    serve.set_defaults(func=_serve)

    predict = commands.add_parser("predict", help="the top classes of image files, from a server or in-process")
    _client_arguments(predict, top_k=3, top_k_help="classes to show per image")
    predict.add_argument("--api", choices=APIS, default="predict",
                         help="predict: the images to the predict_image signature (the default); classify: the images "
                         "as tf.Examples to the classify signature, through TF Serving's Classify API")
    predict.set_defaults(func=_predict)
    search = commands.add_parser("search", help="the catalog items most like image files (visual search), from a "
                                 "server or in-process")
    _client_arguments(search, top_k=10, top_k_help="items to show per image (at most what the model's search "
                      "signature returns)")
    search.set_defaults(func=_search)

    promote = commands.add_parser("promote", help="point the model's `stable` label at a version (or at the canary's) "
                                  "in models.config; the version it replaces stays loaded for a rollback, and each "
                                  "later push becomes the `canary` beside it")
    promote.add_argument("version", metavar="VERSION|canary", help="a pushed version's number, or canary")
    add_options(promote, fields_of(RolloutOptions))
    promote.set_defaults(func=_promote)
    rollback = commands.add_parser("rollback", help="point `stable` back at the version it replaced (still loaded)")
    add_options(rollback, fields_of(RolloutOptions))
    rollback.set_defaults(func=_rollback)


def _client_arguments(parser: argparse.ArgumentParser, top_k: int, top_k_help: str) -> None:
    """The images, how many answers to show, and CallOptions' flags."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files of any size and colour mode")
    parser.add_argument("--top-k", type=argparse_type(count), default=top_k, metavar="K",
                        help=f"{top_k_help} (default {top_k})")
    add_options(parser, fields_of(CallOptions))


def _serve(args: argparse.Namespace) -> int:
    from cnnpipe.serving.batching import BatchingOptions  # noqa: PLC0415
    from cnnpipe.serving.options import ServerOptions  # noqa: PLC0415
    from cnnpipe.serving.server import serve  # noqa: PLC0415

    serve(ServerOptions(**given(args, ServerOptions), batching=BatchingOptions(**given(args, BatchingOptions))))
    return 0


def _call(args: argparse.Namespace, signature: str) -> tuple[list[str], dict]:
    """The images' outputs of `signature` (`classify`: the images sent as tf.Examples), from the server or the pushed
    model that `args` name."""
    from cnnpipe.serving import client  # noqa: PLC0415

    call = CallOptions(**given(args, CallOptions))
    if call.grpc and call.rest:
        raise CnnpipeError("--grpc and --rest: choose one way to call the server.")
    if (call.grpc or call.rest) and not call.server:
        raise CnnpipeError(f"--{'grpc' if call.grpc else 'rest'} calls a server: add --server HOST:PORT, or drop it to "
                           "run in-process.")
    inputs = client.read_images(args.images)
    if signature == CLASSIFY:
        inputs = client.tf_examples(inputs)
    if call.server and call.grpc:
        return args.images, client.call_grpc(call.server, call.model, call.version, signature, inputs)
    if call.server:
        return args.images, client.call_rest(call.server, call.model, call.version, signature, inputs)
    model_dir = client.local_model_dir(call.serving_dir, call.model, call.version)
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


def _promote(args: argparse.Namespace) -> int:
    from cnnpipe.serving import rollout  # noqa: PLC0415 - TensorFlow

    where = RolloutOptions(**given(args, RolloutOptions))
    if args.version != rollout.CANARY and not args.version.isdigit():
        raise CnnpipeError(f"promote {args.version}: give a version number or {rollout.CANARY}.")
    target = args.version if args.version == rollout.CANARY else int(args.version)
    new, old = rollout.promote(where.serving_dir, where.model_name, target)
    print(f"cnnpipe: {where.model_name} stable is version {new}" + (f" (was {old}, still loaded: cnnpipe rollback "
                                                                     "goes back to it)" if old else ""))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from cnnpipe.serving import rollout  # noqa: PLC0415 - TensorFlow

    where = RolloutOptions(**given(args, RolloutOptions))
    new, old = rollout.rollback(where.serving_dir, where.model_name)
    print(f"cnnpipe: {where.model_name} stable is version {new} again (was {old}, still loaded)")
    return 0
