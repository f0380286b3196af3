"""The run report's figures, drawn with matplotlib (files only, no display)."""

import io
from typing import Optional

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
import numpy as np  # noqa: E402

from cnnpipe.core.names import BASELINE, CANDIDATE, NO_ATTACK  # noqa: E402

MODELS = {CANDIDATE: "candidate", BASELINE: "served"}
Row = tuple[str, str, float, float]  # (model, attack, ε, accuracy)


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()


def robustness(rows: list[Row], title: str) -> Figure:
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


def class_balance(counts: dict[str, dict[str, int]]) -> Figure:
    """Each split's share of every class, as grouped bars."""
    classes = sorted({name for per_class in counts.values() for name in per_class})
    figure, axes = pyplot.subplots(figsize=(7.2, 3.6), dpi=110)
    width = 0.8 / max(len(counts), 1)
    for i, (split, per_class) in enumerate(sorted(counts.items())):
        total = sum(per_class.values()) or 1
        axes.bar(np.arange(len(classes)) + i * width, [per_class.get(name, 0) / total for name in classes], width,
                 label=f"{split} ({total:,} images)")
    axes.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=30, ha="right", fontsize="small")
    axes.set(ylabel="share of the split", title="Class balance")
    axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def confusion(matrix: np.ndarray, class_names: list[str]) -> Figure:
    """The confusion matrix as a heat map: rows the true class, columns the predicted one, each cell's count."""
    figure, axes = pyplot.subplots(figsize=(6.4, 5.6), dpi=110)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize="small")
    axes.set_yticks(ticks, class_names, fontsize="small")
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            axes.text(column, row, str(count), ha="center", va="center", fontsize=6,
                      color="white" if shares[row, column] > 0.5 else "black")
    axes.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix (eval split)")
    figure.colorbar(image, ax=axes, label="share of the true class")
    figure.tight_layout()
    return figure


def training_curves(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> Figure:
    """One panel per metric the Trainer logged each epoch, the training and validation curves in each."""
    figure, panels = pyplot.subplots(1, len(curves), figsize=(4.0 * len(curves), 3.4), dpi=110, squeeze=False)
    for axes, (metric, logs) in zip(panels[0], sorted(curves.items())):
        for log, points in sorted(logs.items()):
            axes.plot(*zip(*points), marker=".", label=log)
        axes.set(xlabel="epoch", title=metric.replace("_", " "))
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def trend(labels: list[str], series: dict[str, list[Optional[float]]], bounds: dict[str, float]) -> Figure:
    """One panel per metric over the runs `labels` (oldest first), its threshold a dashed line where one applied;
    a run without the metric leaves a gap."""
    figure, panels = pyplot.subplots(1, len(series), figsize=(4.0 * len(series), 3.6), dpi=110, squeeze=False)
    ticks = np.arange(len(labels))
    for axes, (metric, values) in zip(panels[0], series.items()):
        axes.plot(ticks, [np.nan if value is None else value for value in values], marker="o", label="candidate")
        if metric in bounds:
            axes.axhline(bounds[metric], linestyle="--", color="C3", label=f"threshold {bounds[metric]:.3g}")
        axes.set_xticks(ticks, labels, rotation=45, ha="right", fontsize="x-small")
        axes.set(title=metric, ylim=(0, 1))
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.tight_layout()
    return figure
