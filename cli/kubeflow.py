"""The `compile`, `submit` and `schedule` subcommands: the pipeline for Kubeflow Pipelines, and runs of it there."""

import argparse
import dataclasses
from typing import Callable, Optional

from cnnpipe.cli.flags import add_options, fields_of, given, pipeline_config
from cnnpipe.core.options import option
from cnnpipe.pipeline.config import KUBEFLOW_EXPERIMENT, KUBEFLOW_PACKAGE, KUBEFLOW_SPEC_VERSIONS

GROUP = "Kubeflow"
TARGETS = ("kfp", "vertex")  # runners/resources.py names GPUs as each does


@dataclasses.dataclass(frozen=True)
class CompileOptions:
    pipeline_root: str = option("", "where the steps write their artifacts, a URI the pods can write (gs://…)", GROUP,
                                metavar="URI", required=True)
    image: str = option("", "the image every step runs in, built from kubeflow/Dockerfile", GROUP, required=True)
    package: str = option(KUBEFLOW_PACKAGE, "the pipeline spec file to write", GROUP, short="-o")
    spec_version: str = option(KUBEFLOW_SPEC_VERSIONS[0], "the KFP pipeline spec schema (the default is the one "
                               "open-source Kubeflow Pipelines 2.x requires; Vertex AI Pipelines takes either)", GROUP,
                               choices=KUBEFLOW_SPEC_VERSIONS)
    resources: tuple[str, ...] = option((), "what a step asks the cluster for, repeatable, e.g. "
                                        "Trainer=cpu:8,memory:32Gi,gpu:1:nvidia-tesla-t4 (Transform, Tuner, "
                                        "Evaluator, any step the same way)", GROUP, repeat=tuple,
                                        metavar="STEP=RESOURCES",
                                        default_help="per model, in kubeflow/README.md")
    target: str = option("kfp", "the orchestrator, which names GPUs its own way: open-source Kubeflow Pipelines "
                         "(nvidia.com/gpu) or Vertex AI Pipelines (NVIDIA_TESLA_T4)", GROUP, choices=TARGETS)


@dataclasses.dataclass(frozen=True)
class KubeflowTarget:
    """Where `submit` and `schedule` send the compiled pipeline."""

    host: str = option("", "the Kubeflow Pipelines API, e.g. http://localhost:8080 (a port-forwarded "
                       "ml-pipeline-ui)", GROUP, required=True)
    package: str = option(KUBEFLOW_PACKAGE, "the pipeline spec `cnnpipe compile` wrote", GROUP)
    experiment: str = option(KUBEFLOW_EXPERIMENT, "KFP experiment, created when missing", GROUP)
    param: tuple[str, ...] = option((), "a pipeline parameter's value, repeatable, e.g. --param epochs=40 --param "
                                    "min_accuracy=0.9 (the spec's parameters are the settings of the same name)",
                                    GROUP, repeat=tuple, metavar="NAME=VALUE", default_help="as compiled")


@dataclasses.dataclass(frozen=True)
class SubmitOptions(KubeflowTarget):
    run_name: Optional[str] = option(None, "the run's name", GROUP, default_help="the package's name and the time")


@dataclasses.dataclass(frozen=True)
class ScheduleOptions(KubeflowTarget):
    cron: str = option("", "six fields, seconds first: '0 0 3 * * *' is 03:00 every day", GROUP, required=True)
    name: Optional[str] = option(None, "the recurring run's name", GROUP,
                                 default_help="the package's name and the cron")


def add_commands(commands: argparse._SubParsersAction,
                 add_pipeline_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Adds `compile` (with the pipeline's flags, by `add_pipeline_options`), `submit` and `schedule`."""
    compile_ = commands.add_parser(
        "compile", help="compile the pipeline for Kubeflow Pipelines (a KFP v2 pipeline spec)")
    add_pipeline_options(compile_)
    add_options(compile_, fields_of(CompileOptions))
    compile_.set_defaults(func=_compile)

    submit = commands.add_parser("submit", help="run the compiled pipeline once on Kubeflow Pipelines")
    add_options(submit, fields_of(SubmitOptions))
    submit.set_defaults(func=_submit)

    schedule = commands.add_parser("schedule", help="run the compiled pipeline on Kubeflow Pipelines on a schedule")
    add_options(schedule, fields_of(ScheduleOptions))
    schedule.set_defaults(func=_schedule)


def _compile(args: argparse.Namespace) -> int:
    from cnnpipe.pipeline.config import KUBEFLOW_BEAM_ARGS  # noqa: PLC0415
    from cnnpipe.runners import exit_step, kubeflow_runner, resources  # noqa: PLC0415

    target = CompileOptions(**given(args, CompileOptions))
    config = pipeline_config(args, KUBEFLOW_BEAM_ARGS)
    spec = kubeflow_runner.compile_pipeline(config, target.pipeline_root, target.image, target.package,
                                            target.spec_version, target.resources, target.target)
    serving = kubeflow_runner.for_kubeflow(config, target.pipeline_root).serving_base
    print(f"cnnpipe: pipeline '{spec.pipeline_info.name}', {len(exit_step.pipeline_tasks(spec))} steps and "
          f"the exit step {exit_step.ID}, written to "
          f"{target.package} (pipeline spec schema {spec.schema_version})")
    print(f"  image {target.image}\n  pipeline root {spec.default_pipeline_root}\n  serving {serving}")
    print(f"  Beam args {' '.join(config.beam_args)}")
    for step, asked in resources.written(spec).items():
        print(f"  {step}: {asked}")
    print(f"Run it with: cnnpipe submit --host URL --package {target.package}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from cnnpipe.runners import kubeflow_runner  # noqa: PLC0415

    target = SubmitOptions(**given(args, SubmitOptions))
    run_id = kubeflow_runner.submit(target.host, target.package, target.experiment, target.run_name, target.param)
    print(f"cnnpipe: run {run_id} of {target.package} created at {target.host}, experiment '{target.experiment}'")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from cnnpipe.runners import kubeflow_runner  # noqa: PLC0415

    target = ScheduleOptions(**given(args, ScheduleOptions))
    recurring_run_id = kubeflow_runner.schedule(target.host, target.cron, target.package, target.experiment,
                                                target.name, target.param)
    print(f"cnnpipe: recurring run {recurring_run_id} of {target.package} created at {target.host} on "
          f"'{target.cron}'")
    return 0
