"""A run's report under <output>/reports/<run id>/: index.html (report/run_page.py) and, when the run was
evaluated under attack, robustness.csv and robustness.png (accuracy against ε, per attack and model)."""

import csv
import io
import os

from cnnpipe.core.names import BASELINE, CANDIDATE
from cnnpipe.report import figures, run_page
from cnnpipe.report.run_facts import RunFacts
from cnnpipe.report.summary import RobustnessPoint

CSV_NAME = "robustness.csv"
PNG_NAME = "robustness.png"
PAGE_NAME = "index.html"


def report_dir(output_dir: str, run_id: str) -> str:
    """Where a local run's report goes: <output>/reports/<run id, ':' made '-'>/."""
    return os.path.join(output_dir, "reports", run_id.replace(":", "-"))


def report_rows(points: list[RobustnessPoint]) -> list[figures.Row]:
    """(model, attack, ε, accuracy) per point and model measured."""
    return [(model, point.attack, point.epsilon, accuracy) for point in points
            for model, accuracy in ((CANDIDATE, point.candidate), (BASELINE, point.baseline)) if accuracy is not None]


def _csv(rows: list[figures.Row]) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["model", "attack", "epsilon", "accuracy"])
    writer.writerows((model, attack, epsilon, f"{accuracy:.6f}") for model, attack, epsilon, accuracy in rows)
    return text.getvalue().encode()


def _write(path: str, content: bytes) -> str:
    """Writes `content` to `path` whole or not at all; returns the path."""
    with open(path + ".tmp", "wb") as file:
        file.write(content)
    os.replace(path + ".tmp", path)
    return path


def _robustness_png(facts: RunFacts, rows: list[figures.Row]) -> bytes:
    return figures.png(figures.robustness(rows, f"{facts.pipeline_name}, run {facts.summary.run_id}")) if rows else b""


def page(facts: RunFacts) -> str:
    """The run's report as one self-contained page."""
    return run_page.render(facts, _robustness_png(facts, report_rows(facts.summary.robustness)))


def write(facts: RunFacts, directory: str) -> list[str]:
    """Writes the run's report files to `directory`; returns their paths, the page's first."""
    os.makedirs(directory, exist_ok=True)
    rows = report_rows(facts.summary.robustness)
    robustness_png = _robustness_png(facts, rows)
    paths = [_write(os.path.join(directory, PAGE_NAME), run_page.render(facts, robustness_png).encode())]
    if rows:
        paths += [_write(os.path.join(directory, CSV_NAME), _csv(rows)),
                  _write(os.path.join(directory, PNG_NAME), robustness_png)]
    return paths
