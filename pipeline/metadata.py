"""The ML Metadata queries every reader of a local run shares: its runs, their components' executions and outputs.

TFX records a pipeline as a context of type "pipeline", each run as a "pipeline_run" and each component as a
"node" named "<pipeline>.<component id>"; the progress printer, the summary and scheduled retraining read the
store through these functions alone.
"""

from typing import Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration.metadata import sqlite_metadata_connection_config

PIPELINE_CONTEXT, RUN_CONTEXT, NODE_CONTEXT = "pipeline", "pipeline_run", "node"  # TFX's context types
Execution = metadata_store_pb2.Execution
Artifact = metadata_store_pb2.Artifact
FINISHED = (Execution.COMPLETE, Execution.CACHED)


def store(metadata_file: str) -> metadata_store.MetadataStore:
    """The ML Metadata store of a local run (sqlite)."""
    return metadata_store.MetadataStore(sqlite_metadata_connection_config(metadata_file))


def run_ids(mlmd: metadata_store.MetadataStore) -> set[str]:
    """The ids of every run the store recorded."""
    return {context.name for context in mlmd.get_contexts_by_type(RUN_CONTEXT)}


def pipeline_names(mlmd: metadata_store.MetadataStore) -> list[str]:
    """The pipelines that ran with the store."""
    return sorted(context.name for context in mlmd.get_contexts_by_type(PIPELINE_CONTEXT))


def pipeline_executions(mlmd: metadata_store.MetadataStore, pipeline_name: str) -> list[Execution]:
    """Every execution of every run of `pipeline_name` (none when it never ran)."""
    pipeline = mlmd.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline_name)
    return mlmd.get_executions_by_context(pipeline.id) if pipeline else []


def component_of(mlmd: metadata_store.MetadataStore, execution_id: int, pipeline_name: str) -> str:
    """The id of the component an execution ran ("Trainer", "AtomicPusher", ...)."""
    node = next(c for c in mlmd.get_contexts_by_execution(execution_id) if c.type == NODE_CONTEXT)
    return node.name.removeprefix(f"{pipeline_name}.")


def run_of(mlmd: metadata_store.MetadataStore, execution_id: int) -> metadata_store_pb2.Context:
    """The run an execution belongs to."""
    return next(c for c in mlmd.get_contexts_by_execution(execution_id) if c.type == RUN_CONTEXT)


def run(mlmd: metadata_store.MetadataStore, pipeline_name: str,
        run_id: Optional[str] = None) -> metadata_store_pb2.Context:
    """The run `run_id` of `pipeline_name`, or its newest run; ValueError names what is missing."""
    executions = pipeline_executions(mlmd, pipeline_name)
    if not executions:
        raise ValueError(f"no run of pipeline '{pipeline_name}' in this metadata store")
    if run_id is None:
        return run_of(mlmd, max(execution.id for execution in executions))
    found = mlmd.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    if found is None:
        raise ValueError(f"no run '{run_id}' in this metadata store")
    return found


def runs(mlmd: metadata_store.MetadataStore, pipeline_name: str) -> list[metadata_store_pb2.Context]:
    """Every run of `pipeline_name`, oldest first (by their first execution)."""
    found: dict[int, metadata_store_pb2.Context] = {}
    for execution in sorted(pipeline_executions(mlmd, pipeline_name), key=lambda e: e.id):
        context = run_of(mlmd, execution.id)
        found.setdefault(context.id, context)
    return list(found.values())


def run_executions(mlmd: metadata_store.MetadataStore, run_id: str) -> list[Execution]:
    return mlmd.get_executions_by_context(mlmd.get_context_by_type_and_name(RUN_CONTEXT, run_id).id)


def outputs_of(mlmd: metadata_store.MetadataStore, executions: list[Execution]) -> dict[str, Artifact]:
    """The output artifacts of `executions`, by output key ("examples", "model", ...). A key two components output
    is the first one's: "examples" is ImageExampleGen's, not CatalogExampleGen's."""
    keys = {event.artifact_id: event.path.steps[0].key
            for event in mlmd.get_events_by_execution_ids([execution.id for execution in executions])
            if event.type == metadata_store_pb2.Event.OUTPUT}
    found: dict[str, Artifact] = {}
    for artifact in sorted(mlmd.get_artifacts_by_id(list(keys)), key=lambda artifact: artifact.id):
        found.setdefault(keys[artifact.id], artifact)
    return found


def run_outputs(metadata_file: str, pipeline_name: str,
                run_id: Optional[str] = None) -> tuple[str, dict[str, Artifact]]:
    """A run's id (default: the newest run's) and its output artifacts by output key."""
    mlmd = store(metadata_file)
    found = run(mlmd, pipeline_name, run_id)
    return found.name, outputs_of(mlmd, mlmd.get_executions_by_context(found.id))


def wall_times(metadata_file: str, pipeline_name: str, run_id: Optional[str] = None) -> dict[str, float]:
    """Seconds each component of a run (default: the newest) took, by its id, and "run": first start to last end."""
    mlmd = store(metadata_file)
    executions = mlmd.get_executions_by_context(run(mlmd, pipeline_name, run_id).id)
    seconds = {component_of(mlmd, execution.id, pipeline_name): seconds_of(execution) for execution in executions}
    seconds["run"] = (max(e.last_update_time_since_epoch for e in executions)
                      - min(e.create_time_since_epoch for e in executions)) / 1000
    return seconds


def seconds_of(execution: Execution) -> float:
    """An execution's wall time: from its creation to its last update."""
    return (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000


def finished_runs(mlmd: metadata_store.MetadataStore, pipeline_name: str, component: str) -> list[str]:
    """The runs of `pipeline_name` in which `component` finished (ran or was cached), oldest first."""
    finished = [execution for execution in pipeline_executions(mlmd, pipeline_name)
                if execution.last_known_state in FINISHED and component_of(mlmd, execution.id, pipeline_name) ==
                component]
    return list(dict.fromkeys(run_of(mlmd, execution.id).name for execution in sorted(finished, key=lambda e: e.id)))
