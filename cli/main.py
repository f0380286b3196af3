"""The `cnnpipe` command line."""

import argparse
import contextlib
import dataclasses
import logging
import os
import re
import sys
import time
import warnings
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import DEFAULT_DATASET, DEFAULT_OUTPUT_DIR, DEFAULT_SERVING_DIR, resolve_serving_dir
from cnnpipe.cli.flags import add_options, add_pipeline_options, fields_of, given, pipeline_config
from cnnpipe.core.options import count, option, shape
from cnnpipe.monitoring.canary_settings import CanaryThresholds

if TYPE_CHECKING:
    from cnnpipe.report.summary import RunSummary

# Keep TensorFlow's C++ start-up chatter out of the output; set before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXIT_NOT_PUSHED = 2
EXIT_SKEW = 2  # cnnpipe skew found a version whose requests differ from its training data
EXIT_CANARY = 2  # cnnpipe canary found the canary outside its thresholds
# `cnnpipe index`'s settings: the catalog, and where the served model is and its run's state go.
INDEX_OPTIONS = ("catalog", "search_top_k", "output_dir", "serving_dir", "model_name", "keep_versions", "beam_args")


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    pipeline: Optional[str] = option(None, "the pipeline's (served model's) name, when RUN_DIR holds several", "run")
    run_id: Optional[str] = option(None, "the run's id", "run", flag="--run", default_help="the newest run")


@dataclasses.dataclass(frozen=True)
class RunsOptions:
    output_dir: str = option(DEFAULT_OUTPUT_DIR, "the runs' --output directory (it holds metadata.sqlite)", "runs",
                             flag="--output", metavar="RUN_DIR")
    pipeline: Optional[str] = option(None, "the pipeline's (served model's) name, when RUN_DIR holds several", "runs")
    last: int = option(20, "the newest N runs", "runs", metavar="N")


@dataclasses.dataclass(frozen=True)
class SkewOptions:
    requests: str = option("", "the --log-requests directory of cnnpipe serve", "skew", metavar="DIR", required=True)
    serving_dir: Optional[str] = option(None, "where the versions are", "skew", metavar="DIR",
                                        default_help=DEFAULT_SERVING_DIR)
    output: Optional[str] = option(None, "instead of --serving-dir: a run's --output directory, its serving/ "
                                   "subdirectory", "skew", metavar="RUN_DIR")
    label_sheet: Optional[str] = option(None, "instead of comparing: write each logged image and a labels.csv (the "
                                        "served answer beside an empty class_name) to DIR, for people to label",
                                        "skew", metavar="DIR")
    to_span: Optional[str] = option(None, "instead of comparing: write the images labelled in --labels as DATA's "
                                    "next span (DATA/span-N), laid out as its other spans, for cnnpipe retrain",
                                    "skew", metavar="DATA")
    labels: Optional[str] = option(None, "the labels.csv of --label-sheet, labelled, for --to-span", "skew",
                                   metavar="CSV")


@dataclasses.dataclass(frozen=True)
class CanaryOptions:
    requests: str = option("", "the --log-requests directory of cnnpipe serve, where stable took traffic", "canary",
                           metavar="DIR", required=True)
    serving_dir: str = option(DEFAULT_SERVING_DIR, "where the versions and models.config (its labels) are", "canary",
                              metavar="DIR")
    model_name: str = option(DEFAULT_DATASET, "the model", "canary")
    labels: Optional[str] = option(None, "the labels.csv of --label-sheet, labelled: both versions' accuracy on those "
                                   "images", "canary", metavar="CSV")
    page: Optional[str] = option(None, "the HTML page of the check", "canary", metavar="FILE",
                                 default_help="REQUESTS/canary-MODEL-STABLE-CANARY.html")


@dataclasses.dataclass(frozen=True)
class ModelsOptions:
    input_shape: Optional[tuple[int, int, int]] = option(None, "H,W,C to build the models for", "models",
                                                         parse=shape, metavar="H,W,C", default_help="each one's own")
    classes: int = option(10, "number of classes", "models", parse=count, metavar="N")
    layers: Optional[str] = option(None, "print one model's layers: output shape and parameters", "models",
                                   metavar="NAME")


def build_parser() -> argparse.ArgumentParser:
    from cnnpipe.cli import kubeflow as kubeflow_commands, serving as serving_commands  # noqa: PLC0415 - a fast --help

    parser = argparse.ArgumentParser(prog="cnnpipe", description="TFX pipeline: labelled images in, a served CNN out.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline locally (LocalDagRunner, Beam DirectRunner)")
    add_pipeline_options(run)
    run.set_defaults(func=_run)

    retrain = commands.add_parser(
        "retrain", help="run locally on the newest span (DATA/span-N/) unless it was trained already, warm-started "
        "from the served model; push only when blessed against it (safe from cron)")
    add_pipeline_options(retrain)
    retrain.set_defaults(func=_retrain)

    index = commands.add_parser(
        "index", help="index the served model anew over --catalog PATH and push it as a new version (the same "
        "weights, the new catalog's search and item table), atomically")
    add_pipeline_options(index, only=INDEX_OPTIONS)
    index.set_defaults(func=_index)

    kubeflow_commands.add_commands(commands, lambda command: add_pipeline_options(command, skip=("output_dir",)))
    serving_commands.add_commands(commands)  # serve, predict, search

    report = commands.add_parser("report", help="print a finished local run's summary again and write its report "
                                 "(index.html, and robustness.csv and .png, under RUN_DIR/reports/RUN_ID/)")
    report.add_argument("run_dir", metavar="RUN_DIR", help="the run's --output directory (it holds metadata.sqlite)")
    add_options(report, fields_of(ReportOptions))
    report.set_defaults(func=_report)

    runs = commands.add_parser("runs", help="list a local output's runs, oldest first: start, duration, span, "
                               "accuracy, precision@10, robust accuracy and how each ended")
    add_options(runs, fields_of(RunsOptions))
    runs.set_defaults(func=_runs)

    skew = commands.add_parser("skew", help="compare the images served versions received (cnnpipe serve "
                               "--log-requests) with the data each was trained on (TFDV skew comparators)")
    add_options(skew, fields_of(SkewOptions))
    skew.set_defaults(func=_skew)

    canary = commands.add_parser("canary", help="replay the images the stable version was sent through it and the "
                                 "canary (models.config's labels): top-1 agreement, flips, search overlap, latency, "
                                 "accuracy on labelled images; exit 2 when the canary is outside the thresholds")
    add_options(canary, fields_of(CanaryOptions) + fields_of(CanaryThresholds))
    canary.set_defaults(func=_canary)

    models = commands.add_parser("models", help="list the model registry: input size, parameters, layers")
    add_options(models, fields_of(ModelsOptions))
    models.set_defaults(func=_models)
    return parser


def _models(args: argparse.Namespace) -> int:
    from cnnpipe.models import registry  # noqa: PLC0415

    options = ModelsOptions(**given(args, ModelsOptions))
    if options.layers:
        shape = options.input_shape or registry.get(options.layers).input_shape
        model = registry.build(options.layers, shape, options.classes)
        print(f"{'layer':28} {'type':26} {'output shape':22} {'parameters':>12}")
        for layer in model.layers:
            shape = str(tuple(layer.output.shape[1:]))
            print(f"{layer.name:28} {type(layer).__name__:26} {shape:22} {layer.count_params():>12,}")
        print(f"{'total':78} {model.count_params():>12,}")
        return 0
    print(f"{'model':14} {'input':13} {'parameters':>12}  description")
    for name, entry in registry.MODELS.items():
        shape = options.input_shape or entry.input_shape
        try:
            parameters = f"{registry.build(name, shape, options.classes).count_params():,}"
        except ValueError:  # the input shrinks to nothing before the last pooling layer
            parameters = "too small"
        print(f"{name:14} {'x'.join(map(str, shape)):13} {parameters:>12}  {entry.description}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from cnnpipe.pipeline.config import PipelineConfig  # noqa: PLC0415
    from cnnpipe.pipeline.output_dir import check_metadata, output_lock  # noqa: PLC0415

    config = pipeline_config(args, PipelineConfig().beam_args)
    started = time.monotonic()
    with output_lock(config.output_dir):  # before TFX loads: a second run is refused at once
        check_metadata(config.output_dir)
        from cnnpipe.runners import local_runner  # noqa: PLC0415
        from cnnpipe.report import summary  # noqa: PLC0415

        with _reported_if_stopped(config.output_dir, config.name, config.notify_url):
            seconds = local_runner.run(config)
    total = time.monotonic() - started
    print("\nComponent wall times: " + ", ".join(f"{name} {s:.1f}s" for name, s in seconds.items()))
    print(f"Total {total / 60:.1f} min\n")
    result = summary.summarize(local_runner.metadata_path(config.output_dir), config.name)
    _print_summary(result, config.output_dir, config.name, config.notify_url)
    return 0 if result.pushed_to else EXIT_NOT_PUSHED


def _index(args: argparse.Namespace) -> int:
    from cnnpipe.pipeline.config import PipelineConfig  # noqa: PLC0415
    from cnnpipe.pipeline.output_dir import check_metadata, output_lock  # noqa: PLC0415

    config = pipeline_config(args, PipelineConfig().beam_args)
    with output_lock(config.output_dir):
        check_metadata(config.output_dir)
        from cnnpipe.runners import local_runner  # noqa: PLC0415
        from cnnpipe.report import summary  # noqa: PLC0415

        pipeline = local_runner.build_index_pipeline(config)
        seconds = local_runner.run(config, pipeline=pipeline)
    print("\nComponent wall times: " + ", ".join(f"{name} {s:.1f}s" for name, s in seconds.items()) + "\n")
    lines = summary.index_lines(local_runner.metadata_path(config.output_dir), pipeline.pipeline_info.pipeline_name)
    print("\n".join(lines))
    return 0 if lines[-1].startswith("Pushed to") else EXIT_NOT_PUSHED


def _quiet_readers() -> None:
    """Keeps TensorFlow's deprecation notices, which TFMA's metric readers set off, out of the output; after a run
    (its own log has them) or instead of one."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _print_summary(result: "RunSummary", output_dir: str, pipeline_name: str, notify_url: Optional[str]) -> None:
    """Prints the summary of a run that has just ended, writes its report (report/writer.py) and its outcome
    (report/outcome.py)."""
    _quiet_readers()
    print(result.format())
    _conclude(result, output_dir, pipeline_name, notify_url)


def _write_report(result: "RunSummary", output_dir: str, pipeline_name: str) -> str:
    """Writes the run's report and says where; returns its page's path."""
    from cnnpipe.pipeline.output_dir import metadata_path  # noqa: PLC0415
    from cnnpipe.report import run_facts, writer  # noqa: PLC0415

    facts = run_facts.read(metadata_path(output_dir), pipeline_name, result)
    paths = writer.write(facts, writer.report_dir(output_dir, result.run_id))
    print(f"Report: {paths[0]}" + (f" (robustness: {', '.join(paths[1:])})" if paths[1:] else ""))
    return paths[0]


def _conclude(result: "RunSummary", output_dir: str, pipeline_name: str, notify_url: Optional[str]) -> None:
    """Writes the report of a run that has just ended and its outcome.json beside it, and posts the outcome to
    `notify_url`, if given."""
    from cnnpipe.pipeline.output_dir import metadata_path  # noqa: PLC0415
    from cnnpipe.report import outcome  # noqa: PLC0415

    page = _write_report(result, output_dir, pipeline_name)
    ended = outcome.of_run(metadata_path(output_dir), pipeline_name, result, os.path.abspath(page))
    print(f"Outcome: {ended.summary} ({outcome.write(ended, os.path.dirname(page))})")
    if notify_url:
        print(outcome.notify(notify_url, ended))


@contextlib.contextmanager
def _reported_if_stopped(output_dir: str, pipeline_name: str, notify_url: Optional[str]) -> Iterator[None]:
    """A run that started and then failed gets its report and outcome too, the error as its verdict (then the error
    goes on)."""
    from cnnpipe.pipeline import metadata  # noqa: PLC0415
    from cnnpipe.pipeline.output_dir import metadata_path  # noqa: PLC0415
    from cnnpipe.report import summary  # noqa: PLC0415

    store = metadata_path(output_dir)
    runs_before = metadata.run_ids(metadata.store(store)) if os.path.isfile(store) else set()
    try:
        yield
    except Exception as error:
        _quiet_readers()
        result = summary.summarize(store, pipeline_name) if os.path.isfile(store) else None
        if result is not None and result.run_id not in runs_before:
            result.stopped_by = str(user_error(error) or error)
            _conclude(result, output_dir, pipeline_name, notify_url)
        raise


def _retrain(args: argparse.Namespace) -> int:
    from cnnpipe.pipeline.config import PipelineConfig  # noqa: PLC0415
    from cnnpipe.pipeline.output_dir import check_metadata, output_lock  # noqa: PLC0415

    config = pipeline_config(args, PipelineConfig().beam_args)
    with output_lock(config.output_dir):  # before TFX loads: a second run is refused at once
        check_metadata(config.output_dir)
        from cnnpipe.runners import retrain  # noqa: PLC0415

        with _reported_if_stopped(config.output_dir, config.name, config.notify_url):
            result = retrain.retrain(config)
    if result.run is None:
        return 0
    print()
    _print_summary(result.run, config.output_dir, config.name, config.notify_url)
    return 0 if result.run.pushed_to else EXIT_NOT_PUSHED


def _skew(args: argparse.Namespace) -> int:
    """Prints each logged version's skew (exit 2 when any version's requests are skewed), or writes a label sheet of
    the logged images, or the next span of those labelled."""
    from cnnpipe.monitoring import logged_span, skew  # noqa: PLC0415 - TFDV

    options = SkewOptions(**given(args, SkewOptions))
    if options.serving_dir and options.output:
        raise CnnpipeError("--serving-dir and --output both say where the versions are: give one.")
    if options.label_sheet and options.to_span:
        raise CnnpipeError("--label-sheet and --to-span are two steps: write the sheet, label it, then --to-span.")

    if options.label_sheet:
        path = logged_span.label_sheet(options.requests, options.label_sheet)
        print(f"Label sheet: {path}; fill in class_name (the images are beside it), then: cnnpipe skew --requests "
              f"{options.requests} --labels {path} --to-span DATA")
        return 0
    if options.to_span:
        if not options.labels:
            raise CnnpipeError("--to-span needs --labels CSV: the labels.csv of --label-sheet, labelled.")
        span_dir, counts, unlabelled = logged_span.write_span(options.requests, options.labels, options.to_span)
        print(f"Span written to {span_dir}: {sum(counts.values())} images in {len(counts)} classes ("
              + ", ".join(f"{name} {count}" for name, count in counts.items())
              + f"); {unlabelled} logged images without a label left out.")
        return 0

    serving_dir = resolve_serving_dir(options.output or DEFAULT_OUTPUT_DIR, options.serving_dir)
    found = skew.find_skew(options.requests, serving_dir)
    for version in found:
        print(version.format())
    return EXIT_SKEW if any(version.skewed for version in found) else 0


def _canary(args: argparse.Namespace) -> int:
    """Prints the canary's comparison with stable on logged traffic; exit 2 when it fails a threshold."""
    from cnnpipe.monitoring import canary, canary_page  # noqa: PLC0415 - TensorFlow, matplotlib

    options = CanaryOptions(**given(args, CanaryOptions))
    thresholds = CanaryThresholds(**given(args, CanaryThresholds))
    report = canary.compare(options.requests, options.serving_dir, options.model_name, thresholds, options.labels)
    print(report.format())
    page = options.page or os.path.join(options.requests,
                                        f"canary-{report.model}-{report.stable}-{report.canary}.html")
    print(f"Page: {canary_page.write(report, page)}")
    return 0 if report.passed else EXIT_CANARY


def _recorded_pipeline(run_dir: str, pipeline: Optional[str]) -> tuple[str, str]:
    """The metadata file of a local output and the pipeline to read in it (`pipeline`, or the only one)."""
    from cnnpipe.pipeline.output_dir import check_metadata, metadata_path  # noqa: PLC0415

    metadata = metadata_path(run_dir)
    if not os.path.isfile(metadata):
        raise CnnpipeError(f"{run_dir}: no {os.path.basename(metadata)} here; give the --output directory of a "
                           "`cnnpipe run` (default cnnpipe-output).")
    check_metadata(run_dir)
    from cnnpipe.pipeline.metadata import pipeline_names, store  # noqa: PLC0415

    names = pipeline_names(store(metadata))
    if pipeline is None and len(names) != 1:
        raise CnnpipeError(f"{run_dir} holds runs of the pipelines {', '.join(names) or '(none)'}; "
                           "choose one with --pipeline NAME.")
    _quiet_readers()
    return metadata, pipeline or names[0]


def _report(args: argparse.Namespace) -> int:
    from cnnpipe.report import summary  # noqa: PLC0415

    options = ReportOptions(**given(args, ReportOptions))
    metadata, name = _recorded_pipeline(args.run_dir, options.pipeline)
    try:
        result = summary.summarize(metadata, name, options.run_id)
    except ValueError as error:
        raise CnnpipeError(f"{args.run_dir}: {error}.") from None
    print(f"Run {result.run_id} of {name}")
    print(result.format())
    _write_report(result, args.run_dir, name)  # outcome.json stays as the run wrote it (a failed run's error in it)
    return 0


def _runs(args: argparse.Namespace) -> int:
    from cnnpipe.report import history  # noqa: PLC0415

    options = RunsOptions(**given(args, RunsOptions))
    if options.last < 1:
        raise CnnpipeError(f"--last {options.last}: give the number of runs to list, 1 or more.")
    metadata, name = _recorded_pipeline(options.output_dir, options.pipeline)
    rows = history.history(metadata, name, options.last)
    print(f"{len(rows)} run(s) of {name}, oldest first:\n{history.table(rows)}")
    return 0


def user_error(error: BaseException) -> Optional[BaseException]:
    """The CnnpipeError behind `error` (Beam and TFX wrap them), if there is one."""

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CnnpipeError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    warnings.simplefilter("ignore", FutureWarning)  # libraries' notices about their own future
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ncnnpipe: interrupted; run the same command again to resume (finished components are cached).",
              file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place errors become messages
        cause = user_error(error)
        if cause is None:
            where = "\nThe full log named above has the traceback." if args.command == "run" else ""
            print(f"cnnpipe: {args.command} failed: {type(error).__name__}: {error}{where}", file=sys.stderr)
        else:  # Beam appends the step it ran; the message itself says what to do
            print("cnnpipe: " + re.sub(r" \[while running '[^']*'\]", "", str(cause)), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
