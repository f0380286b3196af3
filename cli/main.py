"""The `cnnpipe` command line."""

import argparse
import contextlib
import logging
import os
import re
import sys
import time
import warnings
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import DEFAULT_OUTPUT_DIR, resolve_serving_dir
from cnnpipe.cli.flags import add_options, argparse_type, given
from cnnpipe.core.options import shape

if TYPE_CHECKING:
    from cnnpipe.pipeline.config import PipelineConfig
    from cnnpipe.report.summary import RunSummary

# Keep TensorFlow's C++ start-up chatter out of the output; set before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXIT_NOT_PUSHED = 2
EXIT_SKEW = 2  # cnnpipe skew found a version whose requests differ from its training data
# `cnnpipe index`'s settings: the catalog, and where the served model is and its run's state go.
INDEX_OPTIONS = ("catalog", "search_top_k", "output_dir", "serving_dir", "model_name", "keep_versions", "beam_args")


def add_pipeline_options(command: argparse.ArgumentParser, skip: Sequence[str] = (),
                         only: Optional[Sequence[str]] = None) -> None:
    """The flags of PipelineConfig's settings (`only` those, when given), but those in `skip`."""
    from cnnpipe.pipeline.config import PipelineConfig, flags  # noqa: PLC0415

    defaults = PipelineConfig().options()
    add_options(command, [(field, defaults[name]) for name, field in flags().items()], skip, only)


def add_kubeflow_target(command: argparse.ArgumentParser, default_package: str, default_experiment: str) -> None:
    """Where `submit` and `schedule` send the compiled pipeline."""
    command.add_argument("--host", required=True,
                         help="the Kubeflow Pipelines API, e.g. http://localhost:8080 (a port-forwarded "
                         "ml-pipeline-ui)")
    command.add_argument("--package", default=default_package,
                         help=f"the pipeline spec `cnnpipe compile` wrote (default {default_package})")
    command.add_argument("--experiment", default=default_experiment,
                         help=f"KFP experiment, created when missing (default {default_experiment})")


def build_parser() -> argparse.ArgumentParser:
    from cnnpipe.pipeline import config  # noqa: PLC0415 - keeps --help fast
    from cnnpipe.cli import serving as serving_commands  # noqa: PLC0415

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

    compile_ = commands.add_parser(
        "compile", help="compile the pipeline for Kubeflow Pipelines (a KFP v2 pipeline spec)")
    add_pipeline_options(compile_, skip=("output_dir",))
    kubeflow = compile_.add_argument_group("Kubeflow")
    kubeflow.add_argument("--pipeline-root", required=True, metavar="URI",
                          help="where the steps write their artifacts, a URI the pods can write (gs://…)")
    kubeflow.add_argument("--image", required=True, help="the image every step runs in, built from kubeflow/Dockerfile")
    kubeflow.add_argument("-o", "--package", default=config.KUBEFLOW_PACKAGE,
                          help=f"the pipeline spec file to write (default {config.KUBEFLOW_PACKAGE})")
    kubeflow.add_argument("--spec-version", choices=config.KUBEFLOW_SPEC_VERSIONS,
                          default=config.KUBEFLOW_SPEC_VERSIONS[0],
                          help=f"the KFP pipeline spec schema (default {config.KUBEFLOW_SPEC_VERSIONS[0]}, which "
                          "open-source Kubeflow Pipelines 2.x requires; Vertex AI Pipelines takes either)")
    compile_.set_defaults(func=_compile)

    submit = commands.add_parser("submit", help="run the compiled pipeline once on Kubeflow Pipelines")
    add_kubeflow_target(submit, config.KUBEFLOW_PACKAGE, config.KUBEFLOW_EXPERIMENT)
    submit.add_argument("--run-name", help="the run's name (default: the package's name and the time)")
    submit.set_defaults(func=_submit)

    schedule = commands.add_parser("schedule", help="run the compiled pipeline on Kubeflow Pipelines on a schedule")
    add_kubeflow_target(schedule, config.KUBEFLOW_PACKAGE, config.KUBEFLOW_EXPERIMENT)
    schedule.add_argument("--cron", required=True,
                          help="six fields, seconds first: '0 0 3 * * *' is 03:00 every day")
    schedule.add_argument("--name", help="the recurring run's name (default: the package's name and the cron)")
    schedule.set_defaults(func=_schedule)

    serving_commands.add_commands(commands)  # serve, predict

    report = commands.add_parser("report", help="print a finished local run's summary again and write its report "
                                 "(index.html, and robustness.csv and .png, under RUN_DIR/reports/RUN_ID/)")
    report.add_argument("run_dir", metavar="RUN_DIR", help="the run's --output directory (it holds metadata.sqlite)")
    report.add_argument("--pipeline", help="the pipeline's (served model's) name, when RUN_DIR holds several")
    report.add_argument("--run", dest="run_id", help="the run's id (default: the newest run)")
    report.set_defaults(func=_report)

    skew = commands.add_parser("skew", help="compare the images served versions received (cnnpipe serve "
                               "--log-requests) with the data each was trained on (TFDV skew comparators)")
    skew.add_argument("--requests", required=True, metavar="DIR", help="the --log-requests directory of cnnpipe serve")
    where = skew.add_mutually_exclusive_group()
    where.add_argument("--serving-dir", metavar="DIR", help="where the versions are (default cnnpipe-output/serving)")
    where.add_argument("--output", metavar="RUN_DIR", help="a run's --output directory: its serving/ subdirectory")
    loop = skew.add_mutually_exclusive_group()
    loop.add_argument("--label-sheet", metavar="DIR", help="instead of comparing: write each logged image and a "
                      "labels.csv (the served answer beside an empty class_name) to DIR, for people to label")
    loop.add_argument("--to-span", metavar="DATA", help="instead of comparing: write the images labelled in --labels "
                      "as DATA's next span (DATA/span-N), laid out as its other spans, for cnnpipe retrain")
    skew.add_argument("--labels", metavar="CSV", help="the labels.csv of --label-sheet, labelled, for --to-span")
    skew.set_defaults(func=_skew)

    models = commands.add_parser("models", help="list the model registry: input size, parameters, layers")
    models.add_argument("--input-shape", type=argparse_type(shape),
                        help="H,W,C to build the models for (default: each one's own)")
    models.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    models.add_argument("--layers", metavar="NAME", help="print one model's layers: output shape and parameters")
    models.set_defaults(func=_models)
    return parser


def _models(args: argparse.Namespace) -> int:
    from cnnpipe.models import registry  # noqa: PLC0415

    if args.layers:
        model = registry.build(args.layers, args.input_shape or registry.get(args.layers).input_shape, args.classes)
        print(f"{'layer':28} {'type':26} {'output shape':22} {'parameters':>12}")
        for layer in model.layers:
            shape = str(tuple(layer.output.shape[1:]))
            print(f"{layer.name:28} {type(layer).__name__:26} {shape:22} {layer.count_params():>12,}")
        print(f"{'total':78} {model.count_params():>12,}")
        return 0
    print(f"{'model':14} {'input':13} {'parameters':>12}  description")
    for name, entry in registry.MODELS.items():
        shape = args.input_shape or entry.input_shape
        try:
            parameters = f"{registry.build(name, shape, args.classes).count_params():,}"
        except ValueError:  # the input shrinks to nothing before the last pooling layer
            parameters = "too small"
        print(f"{name:14} {'x'.join(map(str, shape)):13} {parameters:>12}  {entry.description}")
    return 0


def pipeline_config(args: argparse.Namespace, default_beam_args: Sequence[str]) -> "PipelineConfig":
    """The PipelineConfig of the parsed options; options not given keep PipelineConfig's defaults."""
    from cnnpipe.pipeline.config import SECTIONS, PipelineConfig  # noqa: PLC0415

    options = {name: value for settings in (PipelineConfig, *SECTIONS.values())
               for name, value in given(args, settings).items()}
    return PipelineConfig.from_options(**{"beam_args": tuple(default_beam_args), **options})


def _run(args: argparse.Namespace) -> int:
    from cnnpipe.pipeline.config import PipelineConfig  # noqa: PLC0415
    from cnnpipe.pipeline.output_dir import check_metadata, output_lock  # noqa: PLC0415

    config = pipeline_config(args, PipelineConfig().beam_args)
    started = time.monotonic()
    with output_lock(config.output_dir):  # before TFX loads: a second run is refused at once
        check_metadata(config.output_dir)
        from cnnpipe.runners import local_runner  # noqa: PLC0415
        from cnnpipe.report import summary  # noqa: PLC0415

        with _reported_if_stopped(config.output_dir, config.name):
            seconds = local_runner.run(config)
    total = time.monotonic() - started
    print("\nComponent wall times: " + ", ".join(f"{name} {s:.1f}s" for name, s in seconds.items()))
    print(f"Total {total / 60:.1f} min\n")
    result = summary.summarize(local_runner.metadata_path(config.output_dir), config.name)
    _print_summary(result, config.output_dir, config.name)
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


def _print_summary(result: "RunSummary", output_dir: str, pipeline_name: str) -> None:
    """Prints a run's summary and writes its report (report/writer.py)."""
    from cnnpipe.report import run_facts, writer  # noqa: PLC0415
    from cnnpipe.pipeline.output_dir import metadata_path  # noqa: PLC0415

    print(result.format())
    facts = run_facts.read(metadata_path(output_dir), pipeline_name, result)
    paths = writer.write(facts, writer.report_dir(output_dir, result.run_id))
    print(f"Report: {paths[0]}" + (f" (robustness: {', '.join(paths[1:])})" if paths[1:] else ""))


@contextlib.contextmanager
def _reported_if_stopped(output_dir: str, pipeline_name: str) -> Iterator[None]:
    """A run that started and then failed gets its report too, the error as its verdict (then the error goes on)."""
    from cnnpipe.pipeline import metadata  # noqa: PLC0415
    from cnnpipe.pipeline.output_dir import metadata_path  # noqa: PLC0415
    from cnnpipe.report import run_facts, summary, writer  # noqa: PLC0415

    store = metadata_path(output_dir)
    runs_before = metadata.run_ids(metadata.store(store)) if os.path.isfile(store) else set()
    try:
        yield
    except Exception as error:
        result = summary.summarize(store, pipeline_name) if os.path.isfile(store) else None
        if result is not None and result.run_id not in runs_before:
            result.stopped_by = str(user_error(error) or error)
            facts = run_facts.read(store, pipeline_name, result)
            print(f"Report: {writer.write(facts, writer.report_dir(output_dir, result.run_id))[0]}")
        raise


def _retrain(args: argparse.Namespace) -> int:
    from cnnpipe.pipeline.config import PipelineConfig  # noqa: PLC0415
    from cnnpipe.pipeline.output_dir import check_metadata, output_lock  # noqa: PLC0415

    config = pipeline_config(args, PipelineConfig().beam_args)
    with output_lock(config.output_dir):  # before TFX loads: a second run is refused at once
        check_metadata(config.output_dir)
        from cnnpipe.runners import retrain  # noqa: PLC0415

        with _reported_if_stopped(config.output_dir, config.name):
            result = retrain.retrain(config)
    if result.run is None:
        return 0
    print()
    _print_summary(result.run, config.output_dir, config.name)
    return 0 if result.run.pushed_to else EXIT_NOT_PUSHED


def _skew(args: argparse.Namespace) -> int:
    """Prints each logged version's skew (exit 2 when any version's requests are skewed), or writes a label sheet of
    the logged images, or the next span of those labelled."""
    from cnnpipe.monitoring import logged_span, skew  # noqa: PLC0415 - TFDV

    if args.label_sheet:
        path = logged_span.label_sheet(args.requests, args.label_sheet)
        print(f"Label sheet: {path}; fill in class_name (the images are beside it), then: cnnpipe skew --requests "
              f"{args.requests} --labels {path} --to-span DATA")
        return 0
    if args.to_span:
        if not args.labels:
            raise CnnpipeError("--to-span needs --labels CSV: the labels.csv of --label-sheet, labelled.")
        span_dir, counts, unlabelled = logged_span.write_span(args.requests, args.labels, args.to_span)
        print(f"Span written to {span_dir}: {sum(counts.values())} images in {len(counts)} classes ("
              + ", ".join(f"{name} {count}" for name, count in counts.items())
              + f"); {unlabelled} logged images without a label left out.")
        return 0

    found = skew.find_skew(args.requests, resolve_serving_dir(args.output or DEFAULT_OUTPUT_DIR, args.serving_dir))
    for version in found:
        print(version.format())
    return EXIT_SKEW if any(version.skewed for version in found) else 0


def _report(args: argparse.Namespace) -> int:
    from cnnpipe.pipeline.output_dir import check_metadata, metadata_path  # noqa: PLC0415

    metadata = metadata_path(args.run_dir)
    if not os.path.isfile(metadata):
        raise CnnpipeError(f"{args.run_dir}: no {os.path.basename(metadata)} here; give the --output directory of a "
                           "`cnnpipe run` (default cnnpipe-output).")
    check_metadata(args.run_dir)
    from cnnpipe.pipeline.metadata import pipeline_names, store  # noqa: PLC0415
    from cnnpipe.report import summary  # noqa: PLC0415

    names = pipeline_names(store(metadata))
    if args.pipeline is None and len(names) != 1:
        raise CnnpipeError(f"{args.run_dir} holds runs of the pipelines {', '.join(names) or '(none)'}; "
                           "choose one with --pipeline NAME.")
    name = args.pipeline or names[0]
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA's readers warn of TensorFlow's deprecations
    try:
        result = summary.summarize(metadata, name, args.run_id)
    except ValueError as error:
        raise CnnpipeError(f"{args.run_dir}: {error}.") from None
    print(f"Run {result.run_id} of {name}")
    _print_summary(result, args.run_dir, name)
    return 0


def _compile(args: argparse.Namespace) -> int:
    from cnnpipe.runners import kubeflow_runner  # noqa: PLC0415
    from cnnpipe.pipeline.config import KUBEFLOW_BEAM_ARGS  # noqa: PLC0415

    config = pipeline_config(args, KUBEFLOW_BEAM_ARGS)
    spec = kubeflow_runner.compile_pipeline(config, args.pipeline_root, args.image, args.package, args.spec_version)
    serving = kubeflow_runner.for_kubeflow(config, args.pipeline_root).serving_base
    print(f"cnnpipe: pipeline '{spec.pipeline_info.name}', {len(spec.root.dag.tasks)} steps, written to {args.package} "
          f"(pipeline spec schema {spec.schema_version})")
    print(f"  image {args.image}\n  pipeline root {spec.default_pipeline_root}\n  serving {serving}")
    print(f"  Beam args {' '.join(config.beam_args)}")
    print(f"Run it with: cnnpipe submit --host URL --package {args.package}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from cnnpipe.runners import kubeflow_runner  # noqa: PLC0415

    run_id = kubeflow_runner.submit(args.host, args.package, args.experiment, args.run_name)
    print(f"cnnpipe: run {run_id} of {args.package} created at {args.host}, experiment '{args.experiment}'")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from cnnpipe.runners import kubeflow_runner  # noqa: PLC0415

    recurring_run_id = kubeflow_runner.schedule(args.host, args.cron, args.package, args.experiment, args.name)
    print(f"cnnpipe: recurring run {recurring_run_id} of {args.package} created at {args.host} on '{args.cron}'")
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
