"""What each Kubeflow step asks the cluster for: `--resources STEP=cpu:8,memory:32Gi,gpu:1[:TYPE]`, written into the
compiled spec's container resources as the KFP SDK writes them (`PipelineTask.set_cpu_limit` and the rest).

The values are both the request and the limit (a pod of Guaranteed quality of service). A GPU is written as the
accelerator the orchestrator names: open-source Kubeflow Pipelines a Kubernetes resource (`nvidia.com/gpu`, its type a
GKE node selector in the platform spec), Vertex AI Pipelines its own machine type (`NVIDIA_TESLA_T4`).
"""

import dataclasses
import re
from typing import TYPE_CHECKING, Iterable, Optional

from google.protobuf import json_format

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.models import registry
from cnnpipe.runners import exit_step

if TYPE_CHECKING:
    from kfp.pipeline_spec import pipeline_spec_pb2

    ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec

KUBERNETES_GPU = "nvidia.com/gpu"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
CPU = re.compile(r"([0-9]*[.])?[0-9]+m?$")  # as kfp's PipelineTask validates them
MEMORY = re.compile(r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
LARGE_IMAGES = 224  # a model whose inputs are at least this many pixels high trains on a GPU by default
EXAMPLE = "Trainer=cpu:8,memory:32Gi,gpu:1:nvidia-tesla-t4"


@dataclasses.dataclass(frozen=True)
class StepResources:
    """One step's CPUs (Kubernetes quantity, "8" or "500m"), memory ("32Gi") and GPUs (with their type, if given)."""

    cpu: Optional[str] = None
    memory: Optional[str] = None
    gpus: int = 0
    gpu_type: Optional[str] = None


SMALL_MODEL = {"Transform": "cpu:4,memory:8Gi", "Tuner": "cpu:4,memory:8Gi", "Trainer": "cpu:4,memory:8Gi",
               "AdversarialExamples": "cpu:4,memory:8Gi", "Evaluator": "cpu:4,memory:8Gi"}
LARGE_MODEL = {"Transform": "cpu:8,memory:16Gi", "Tuner": "cpu:8,memory:32Gi,gpu:1",
               "Trainer": "cpu:8,memory:32Gi,gpu:1", "AdversarialExamples": "cpu:8,memory:32Gi,gpu:1",
               "Evaluator": "cpu:8,memory:32Gi"}


def parse(text: str) -> tuple[str, StepResources]:
    """`STEP=cpu:8,memory:32Gi,gpu:1[:TYPE]` as the step and its resources; CnnpipeError naming what is wrong."""
    step, equals, spec = text.partition("=")
    if not equals or not step.strip() or not spec.strip():
        raise CnnpipeError(f"--resources {text!r}: expected STEP=cpu:N,memory:SIZE,gpu:N[:TYPE], e.g. {EXAMPLE}")
    fields: dict = {}
    for part in spec.split(","):
        key, _, value = part.strip().partition(":")
        if key == "cpu" and CPU.match(value):
            fields["cpu"] = value
        elif key == "memory" and MEMORY.match(value):
            fields["memory"] = value
        elif key == "gpu" and re.match(r"[0-9]+(:[A-Za-z0-9._-]+)?$", value):
            count, _, gpu_type = value.partition(":")
            fields.update(gpus=int(count), gpu_type=gpu_type or None)
        else:
            raise CnnpipeError(
                f"--resources {text!r}: cannot read {part.strip()!r}; give cpu:N (cores, or millicores as 500m), "
                f"memory:SIZE (a Kubernetes quantity: 512Mi, 32Gi) or gpu:N[:TYPE], e.g. {EXAMPLE}")
    return step.strip(), StepResources(**fields)


def defaults(model: str) -> dict[str, StepResources]:
    """The steps' resources for a registry model: larger pods, and a GPU where the model's gradients are computed,
    for models of ImageNet-sized inputs."""
    large = registry.get(model).input_shape[0] >= LARGE_IMAGES
    return dict(parse(f"{step}={spec}") for step, spec in (LARGE_MODEL if large else SMALL_MODEL).items())


def resolve(model: str, given: Iterable[str], steps: Iterable[str]) -> dict[str, StepResources]:
    """The defaults for `model` with the `--resources` given over them, for the steps the spec has; a given step
    it lacks is refused, naming the steps there are."""
    steps = list(steps)
    chosen = {step: resources for step, resources in defaults(model).items() if step in steps}
    for text in given:
        step, resources = parse(text)
        if step not in steps:
            raise CnnpipeError(f"--resources {text!r}: this pipeline has no step {step!r}; its steps are "
                               f"{', '.join(sorted(steps))}.")
        chosen[step] = resources
    return chosen


def accelerator_type(resources: StepResources, target: str) -> str:
    """The accelerator's name as `target` reads it."""
    if target == "kfp":
        return KUBERNETES_GPU
    if not resources.gpu_type:
        raise CnnpipeError(f"gpu:{resources.gpus}: Vertex AI Pipelines needs the GPU's type, e.g. "
                           f"gpu:{resources.gpus}:nvidia-tesla-t4.")
    return resources.gpu_type.upper().replace("-", "_")


def resource_spec(resources: StepResources, target: str) -> "ResourceSpec":
    """The container's ResourceSpec, for TFX's `with_platform_config`: KFP 2.x's string fields and the numeric ones
    older backends read, as the KFP SDK fills both."""
    from kfp.compiler.compiler_utils import _cpu_to_float, _memory_to_float  # noqa: PLC0415 - the SDK's conversions
    from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: PLC0415

    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    if resources.cpu:
        spec.resource_cpu_request = spec.resource_cpu_limit = resources.cpu
        spec.cpu_request = spec.cpu_limit = _cpu_to_float(resources.cpu)
    if resources.memory:
        spec.resource_memory_request = spec.resource_memory_limit = resources.memory
        spec.memory_request = spec.memory_limit = _memory_to_float(resources.memory)
    if resources.gpus:
        spec.accelerator.type = spec.accelerator.resource_type = accelerator_type(resources, target)
        spec.accelerator.count = resources.gpus
        spec.accelerator.resource_count = str(resources.gpus)
    return spec


def platform_spec(spec: "pipeline_spec_pb2.PipelineSpec", chosen: dict[str, StepResources],
                  target: str) -> "pipeline_spec_pb2.PlatformSpec":
    """The Kubernetes platform spec of the compiled `spec`: under KFP, a node selector for each typed GPU (as
    kfp-kubernetes writes one)."""
    from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: PLC0415

    platform = pipeline_spec_pb2.PlatformSpec()
    for step, resources in chosen.items():
        if target == "kfp" and resources.gpus and resources.gpu_type:
            label = spec.components[exit_step.pipeline_tasks(spec)[step].component_ref.name].executor_label
            platform.platforms["kubernetes"].deployment_spec.executors[label].update(
                {"nodeSelector": {"labels": {GKE_ACCELERATOR_LABEL: resources.gpu_type}}})
    return platform


def written(spec: "pipeline_spec_pb2.PipelineSpec") -> dict[str, str]:
    """Each step's resources as the spec holds them, in words ("cpu 8, memory 32Gi, 1 nvidia.com/gpu")."""
    deployment = json_format.MessageToDict(spec.deployment_spec)["executors"]
    described = {}
    for step, task in exit_step.pipeline_tasks(spec).items():
        fields = deployment[spec.components[task.component_ref.name].executor_label]["container"].get("resources")
        if fields:
            accelerator = fields.get("accelerator", {})
            parts = [f"cpu {fields.get('resourceCpuLimit', '-')}", f"memory {fields.get('resourceMemoryLimit', '-')}",
                     f"{accelerator['resourceCount']} {accelerator['resourceType']}" if accelerator else ""]
            described[step] = ", ".join(part for part in parts if part)
    return dict(sorted(described.items()))
