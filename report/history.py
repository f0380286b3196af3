"""A pipeline's runs side by side, read back from ML Metadata: what `cnnpipe runs` prints."""

import dataclasses
import datetime
import os
from typing import Optional

from cnnpipe.core.names import NO_ATTACK, WORST_CASE
from cnnpipe.pipeline import metadata
from cnnpipe.report.summary import RunSummary, summarize

COLUMNS = ("started", "took", "span", "accuracy", "P@10", "robust", "outcome")
# how a run ended
PUSHED, NOT_BLESSED, NOT_PUSHED, FAILED, STOPPED = "pushed", "not blessed", "not pushed", "failed", "stopped"


@dataclasses.dataclass(frozen=True)
class RunRow:
    """One run: when, how long, on which span, its candidate's figures and how it ended."""

    run_id: str
    started: datetime.datetime
    seconds: float
    span: Optional[int]
    accuracy: Optional[float]
    precision_at_10: Optional[float]
    robust_accuracy: Optional[tuple[float, float]]  # (ε, the lowest accuracy under attack at it: the worst case)
    status: str  # PUSHED, NOT_BLESSED, NOT_PUSHED, FAILED or STOPPED
    outcome: str  # the status in a few words
    failed_step: Optional[str] = None  # the step that failed or never finished

    def cells(self) -> list[str]:
        robust = f"{self.robust_accuracy[1]:.2%} at ε {self.robust_accuracy[0]:g}" if self.robust_accuracy else "-"
        return [self.started.strftime("%Y-%m-%d %H:%M"), f"{self.seconds / 60:.1f} min",
                "-" if self.span is None else str(self.span),
                "-" if self.accuracy is None else f"{self.accuracy:.2%}",
                "-" if self.precision_at_10 is None else f"{self.precision_at_10:.3f}", robust, self.outcome]


def robust_accuracy(result: RunSummary) -> Optional[tuple[float, float]]:
    """The candidate's lowest accuracy under attack at the worst case's ε (else the smallest attacked ε)."""
    attacked = [point for point in result.robustness if point.attack != NO_ATTACK]
    if not attacked:
        return None
    worst = [point.epsilon for point in attacked if point.attack == WORST_CASE]
    epsilon = worst[0] if worst else min(point.epsilon for point in attacked)
    return epsilon, min(point.candidate for point in attacked if point.epsilon == epsilon)


def outcome(result: RunSummary, unfinished: list[tuple[str, int]]) -> tuple[str, str, Optional[str]]:
    """How a run ended: its status, in a few words, and the step that failed or never finished (else its blessing
    and push tell)."""
    failed = [component for component, state in unfinished if state == metadata.Execution.FAILED]
    if failed:
        return FAILED, f"failed in {failed[0]}", failed[0]
    if unfinished:
        return STOPPED, f"stopped in {unfinished[0][0]} (killed, or still running)", unfinished[0][0]
    if result.pushed_to:
        return PUSHED, f"pushed version {os.path.basename(result.pushed_to)}", None
    if result.accuracy is not None and not result.blessed:
        return NOT_BLESSED, "not blessed: " + (result.failures[0] if result.failures else "below a threshold"), None
    return NOT_PUSHED, f"not pushed: {result.push_check_failure}" if result.push_check_failure else "not pushed", None


def history(metadata_file: str, pipeline_name: str, last: int, until: Optional[str] = None,
            known: Optional[RunSummary] = None) -> list[RunRow]:
    """The newest `last` runs of `pipeline_name` (up to run `until`, when given), oldest first; `known` is a run's
    summary the caller has already (not read again)."""
    mlmd = metadata.store(metadata_file)
    runs = metadata.runs(mlmd, pipeline_name)
    ids = [run.name for run in runs]
    rows = []
    for run in runs[:ids.index(until) + 1 if until in ids else len(runs)][-last:]:
        executions = mlmd.get_executions_by_context(run.id)
        unfinished = [(metadata.component_of(mlmd, execution.id, pipeline_name), execution.last_known_state)
                      for execution in sorted(executions, key=lambda e: e.id)
                      if execution.last_known_state not in metadata.FINISHED]
        result = known if known and known.run_id == run.name else summarize(metadata_file, pipeline_name, run.name)
        examples = metadata.outputs_of(mlmd, executions).get("examples")
        status, words, failed_step = outcome(result, unfinished)
        rows.append(RunRow(
            run_id=run.name,
            started=datetime.datetime.fromtimestamp(min(e.create_time_since_epoch for e in executions) / 1000),
            seconds=(max(e.last_update_time_since_epoch for e in executions)
                     - min(e.create_time_since_epoch for e in executions)) / 1000,
            span=examples.custom_properties["span"].int_value if examples and "span" in examples.custom_properties
            else None,
            accuracy=result.accuracy,
            precision_at_10=result.retrieval.get("precision_at_10"),
            robust_accuracy=robust_accuracy(result),
            status=status,
            outcome=words,
            failed_step=failed_step,
        ))
    return rows


def table(rows: list[RunRow]) -> str:
    """The runs as aligned columns, the outcome last (it may be long)."""
    cells = [list(COLUMNS), *(row.cells() for row in rows)]
    widths = [max(len(line[column]) for line in cells) for column in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join([*(cell.ljust(width) for cell, width in zip(line, widths)), line[-1]]).rstrip()
                     for line in cells)
