"""A run's robustness report: accuracy against ε, one line per attack and model, as CSV and PNG."""

import csv
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
from matplotlib import pyplot  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cnnpipe.core.names import BASELINE, CANDIDATE, NO_ATTACK  # noqa: E402
from cnnpipe.pipeline.summary import RobustnessPoint  # noqa: E402


CSV_NAME = "robustness.csv"
PNG_NAME = "robustness.png"
MODELS = {CANDIDATE: "candidate", BASELINE: "served"}


def report_dir(output_dir: str, run_id: str) -> str:
    """Where a local run's report goes: <output>/reports/<run id, ':' made '-'>/."""
    return os.path.join(output_dir, "reports", run_id.replace(":", "-"))


def report_rows(points: list[RobustnessPoint]) -> list[tuple[str, str, float, float]]:
    """(model, attack, ε, accuracy) per point and model measured."""
    return [(model, point.attack, point.epsilon, accuracy) for point in points
            for model, accuracy in ((CANDIDATE, point.candidate), (BASELINE, point.baseline)) if accuracy is not None]


def _write_csv(rows: list[tuple[str, str, float, float]], path: str) -> None:
    with open(path + ".tmp", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["model", "attack", "epsilon", "accuracy"])
        writer.writerows((model, attack, epsilon, f"{accuracy:.6f}") for model, attack, epsilon, accuracy in rows)
    os.replace(path + ".tmp", path)


def plot(rows: list[tuple[str, str, float, float]], title: str) -> Figure:
    """Accuracy against ε, a curve per attack and model, each starting at the model's clean accuracy (ε 0); the
    served model's curves are dashed beside the candidate's in the same color. The worst case, measured at the
    gated ε only, is a line from clean to that point."""
    figure, axes = pyplot.subplots(figsize=(6.4, 4.2), dpi=120)
    clean = {model: accuracy for model, attack, _, accuracy in rows if attack == NO_ATTACK}
    for color, attack in enumerate(sorted({attack for _, attack, _, _ in rows} - {NO_ATTACK})):
        for model, label in MODELS.items():
            points = sorted((epsilon, accuracy) for m, a, epsilon, accuracy in rows if (m, a) == (model, attack))
            if points:
                points = ([(0.0, clean[model])] if model in clean else []) + points
                axes.plot(*zip(*points), marker="o", linestyle="-" if model == CANDIDATE else "--",
                          color=f"C{color}", label=f"{attack.upper()}, {label}")
    axes.set(xlabel="ε (L-inf, on the [0, 1] pixel scale)", ylabel="accuracy", ylim=(0, 1), title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def _write_png(rows: list[tuple[str, str, float, float]], path: str, title: str) -> None:
    figure = plot(rows, title)
    figure.savefig(path + ".tmp.png")
    pyplot.close(figure)
    os.replace(path + ".tmp.png", path)


def write(points: list[RobustnessPoint], directory: str, title: str) -> tuple[str, str]:
    """Writes robustness.csv and robustness.png to `directory`; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    rows = report_rows(points)
    csv_path, png_path = os.path.join(directory, CSV_NAME), os.path.join(directory, PNG_NAME)
    _write_csv(rows, csv_path)
    _write_png(rows, png_path, title)
    return csv_path, png_path
