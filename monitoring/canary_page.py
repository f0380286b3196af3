"""The canary check as a page: the verdict, the figures of `monitoring/canary.py`'s report in tables, and the two
versions' latencies on the same calls as a figure (matplotlib, embedded), in one self-contained HTML file."""

import base64
import html
import io
import os

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402
import numpy as np  # noqa: E402

from cnnpipe.monitoring.canary import CanaryReport  # noqa: E402

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .8em;text-align:right}
th:first-child,td:first-child{text-align:left}.passed{color:#1a7f37}.failed{color:#b42318}img{max-width:100%}"""


def latency_figure(report: CanaryReport) -> bytes:
    """Each version's latency on the same calls, as cumulative shares, as PNG bytes."""
    figure, axes = pyplot.subplots(figsize=(6.4, 3.6), dpi=110)
    for name, seconds in report.seconds.items():
        milliseconds = np.sort(np.asarray(seconds) * 1000)
        axes.plot(milliseconds, np.arange(1, len(milliseconds) + 1) / len(milliseconds), label=name)
    axes.set(xlabel="latency of one image, ms (in-process)", ylabel="share of calls", ylim=(0, 1.02),
             title="Latency, stable and canary")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()


def _rows(rows: list[tuple]) -> str:
    return "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)


def _table(table_id: str, header: tuple, rows: list[tuple]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{_rows(rows)}</tbody></table>'


def page(report: CanaryReport) -> str:
    """The report as a self-contained HTML page."""
    title = f"Canary {report.model} version {report.canary} against stable version {report.stable}"
    verdict = "Passed." if report.passed else "Failed: " + " ".join(report.failures)
    summary = [("logged images", report.images), ("top-1 agreement", f"{report.agreement:.2%}")]
    if report.search_overlap is not None:
        summary.append(("search overlap", f"{report.search_overlap:.2%}"))
    summary += [(f"accuracy of {name} on {report.labelled} labelled images", f"{value:.2%}")
                for name, value in report.accuracy.items()]
    latency = [(name, f"{p50:.2f}", f"{p99:.2f}") for name, (p50, p99) in report.latency_ms.items()]
    flips = [(stable, canary, count) for (stable, canary), count in
             sorted(report.flips.items(), key=lambda item: -item[1])]
    figure = base64.b64encode(latency_figure(report)).decode()
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p id="verdict" class="{"passed" if report.passed else "failed"}">{html.escape(verdict)}</p>'
            + _table("summary", ("measure", "value"), summary)
            + "<h2>Latency, ms</h2>" + _table("latency", ("version", "p50", "p99"), latency)
            + f'<img alt="Latency, stable and canary" src="data:image/png;base64,{figure}">'
            + "<h2>Flips: stable's class to the canary's</h2>"
            + _table("flips", ("stable", "canary", "images"), flips) + "</body></html>")


def write(report: CanaryReport, path: str) -> str:
    """Writes the page to `path` (atomically); returns it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        file.write(page(report))
    os.replace(path + ".tmp", path)
    return path
