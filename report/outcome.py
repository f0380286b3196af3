"""How a run ended, for whoever watches scheduled runs: `outcome.json` beside the run's report, and the same JSON
posted to a webhook (`--notify-url`, e.g. a chat channel's incoming webhook).

Every run gets one, a failed run included: pushed (the version), not blessed (each failing threshold with its
margin), not pushed (the push check's reason) or failed (the step and its error); with the candidate's accuracy,
search precision@10, worst-case robust accuracy and the drift check's verdict, where the run got that far.
"""

import dataclasses
import json
import os
import time
import urllib.error
import urllib.request
from typing import Optional

from cnnpipe.report import history
from cnnpipe.report.summary import RunSummary

FILE_NAME = "outcome.json"
ATTEMPTS = 3  # a webhook that fails (no answer, or a 5xx or 429) is tried again, this many times in all
TIMEOUT = 10.0  # seconds for each attempt
BACKOFF = 2.0  # seconds before the second attempt, doubling


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A run's outcome; `status` is history's PUSHED, NOT_BLESSED, NOT_PUSHED, FAILED or STOPPED, `summary` the outcome
    in words (as `cnnpipe runs`)."""

    pipeline: str
    run_id: str
    status: str
    summary: str
    started: Optional[str] = None  # ISO 8601, local time (a local run's; on Kubeflow the orchestrator has it)
    seconds: Optional[float] = None
    span: Optional[int] = None
    version: Optional[str] = None  # the version pushed
    accuracy: Optional[float] = None
    precision_at_10: Optional[float] = None
    robust_accuracy: Optional[dict] = None  # {"epsilon": ε, "accuracy": the lowest under attack at ε}
    failures: list[str] = dataclasses.field(default_factory=list)  # the thresholds missed, each with its margin
    drift: Optional[str] = None
    failed_step: Optional[str] = None
    error: Optional[str] = None
    report: Optional[str] = None  # the run's HTML report

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)


def of_run(metadata_file: str, pipeline_name: str, result: RunSummary, report: Optional[str] = None) -> Outcome:
    """The outcome of the local run `result` summarizes, as ML Metadata recorded it; its `stopped_by` is the error
    that stopped it, if one did."""
    (row,) = history.history(metadata_file, pipeline_name, last=1, until=result.run_id, known=result)
    error = result.stopped_by
    status = history.FAILED if error and row.status not in (history.FAILED, history.STOPPED) else row.status
    return _outcome(pipeline_name, result, status, row.outcome if status == row.status else f"failed: {error}",
                    started=row.started.isoformat(timespec="seconds"), seconds=round(row.seconds, 1), span=row.span,
                    failed_step=row.failed_step, report=report)


def of_summary(pipeline_name: str, result: RunSummary, failed_step: Optional[str] = None,
               report: Optional[str] = None) -> Outcome:
    """The outcome of a run known by its summary alone (a Kubeflow run's, whose times the orchestrator keeps); a run
    that failed has the error in `result.stopped_by` and, where known, the step that failed."""
    if result.stopped_by:
        where = f"failed in {failed_step}" if failed_step else "failed"
        return _outcome(pipeline_name, result, history.FAILED, f"{where}: {result.stopped_by}",
                        failed_step=failed_step, report=report)
    status, words, _ = history.outcome(result, unfinished=[])
    return _outcome(pipeline_name, result, status, words, report=report)


def _outcome(pipeline_name: str, result: RunSummary, status: str, summary: str, **known) -> Outcome:
    robust = history.robust_accuracy(result)
    return Outcome(
        pipeline=pipeline_name, run_id=result.run_id, status=status, summary=summary,
        version=os.path.basename(result.pushed_to) if result.pushed_to else None,
        accuracy=_rounded(result.accuracy), precision_at_10=_rounded(result.retrieval.get("precision_at_10")),
        robust_accuracy={"epsilon": robust[0], "accuracy": _rounded(robust[1])} if robust else None,
        failures=result.failures if result.accuracy is not None and not result.blessed else [],
        drift=result.drift, error=result.stopped_by, **known)


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 4)


def write(outcome: Outcome, directory: str) -> str:
    """Writes `outcome` as `directory`/outcome.json, whole or not at all; returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, FILE_NAME)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(outcome.to_json())
    os.replace(path + ".tmp", path)
    return path


def notify(url: str, outcome: Outcome, attempts: int = ATTEMPTS, timeout: float = TIMEOUT,
           backoff: float = BACKOFF) -> str:
    """POSTs `outcome` as JSON to `url`, trying again after a failure; never raises. Says how it went, in a line."""
    request = urllib.request.Request(url, data=outcome.to_json().encode(), method="POST",
                                      headers={"Content-Type": "application/json"})
    problem = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return f"Notified {url}: {answer.status}."
        except urllib.error.HTTPError as error:
            problem = f"{error.code} {error.reason}"
            if error.code < 500 and error.code != 429:  # the webhook refuses the post: trying again will not help
                break
        except (urllib.error.URLError, OSError) as error:
            problem = str(getattr(error, "reason", None) or error)
    return f"Could not notify {url} ({problem}); the run's outcome is in its {FILE_NAME}."
