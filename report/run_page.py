"""A run's report as one self-contained HTML page: every figure and image inline, no script, nothing fetched."""

import base64
import html
import os

from cnnpipe.components.blessing.evaluation_results import ACCURACY
from cnnpipe.core.names import WORST_CASE
from cnnpipe.models import best_epoch
from cnnpipe.report import figures, history
from cnnpipe.report.run_facts import RunFacts
from cnnpipe.report.summary import collapse_line, retrieval_lines, tuner_line

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.pass { color: #176f2c; } .fail { color: #b3261e; font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; } pre { white-space: pre-wrap; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; list-style: none; padding: 0; }
.gallery li { border: 1px solid #ddd; padding: 0.5em; font-size: 0.85em; text-align: center; width: 190px; }
.gallery img { width: 84px; height: 84px; image-rendering: pixelated; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _table(name: str, header: list[str], rows: list[list[object]], classes: list[str] = ()) -> str:
    """A table with the id `name`; `classes` gives each row's CSS class ("pass", "fail")."""
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join(f'<tr class="{_e(classes[i]) if classes else ""}">' + "".join(f"<td>{_e(cell)}</td>" for cell in row)
                   + "</tr>" for i, row in enumerate(rows))
    return f'<table id="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _data(facts: RunFacts) -> str:
    parts = ["<h2>Data</h2>"]
    if facts.class_balance:
        parts.append(_figure(figures.png(figures.class_balance(facts.class_balance)), "Class balance per split"))
        splits = sorted(facts.class_balance)
        classes = sorted({name for counts in facts.class_balance.values() for name in counts})
        counts = [[name, *(f"{facts.class_balance[split].get(name, 0):,}" for split in splits)] for name in classes]
        parts.append(_table("class-balance", ["class", *splits], counts))
    if facts.image_stats:
        parts.append(_table("image-features", ["split", "feature", "min", "mean", "max"],
                            [[split, name, f"{low:.4g}", f"{mean:.1f}", f"{high:.4g}"]
                             for split, stats in sorted(facts.image_stats.items())
                             for name, (low, mean, high) in stats.items()]))
    if facts.summary.duplicates:
        parts.append(f"<p>{_e(f'Duplicates allowed (--allow-duplicates): {facts.summary.duplicates}.')}</p>")
    if facts.drift:
        accepted = (facts.summary.drift or "").startswith("Drift accepted")
        heading = facts.summary.drift if accepted else "Drift against the served model's training data:"
        parts.append(f"<p>{_e(heading)}</p>")
        parts.append(_table("drift", ["feature", "measure", "distance", "threshold"],
                            [[feature, measure, f"{value:.4f}", f"{threshold:g}"]
                             for feature, measure, value, threshold in facts.drift],
                            ["fail" if value > threshold else "pass" for _, _, value, threshold in facts.drift]))
    elif not facts.summary.stopped_by:
        parts.append("<p>No drift check: no model was served before this run.</p>")
    return "".join(parts)


def _model(facts: RunFacts) -> str:
    summary = facts.summary
    parts = ["<h2>Model</h2>", f"<p>Eval accuracy {summary.accuracy:.2%} (loss {summary.loss:.4f})"
             + (f"; served model {summary.baseline_accuracy:.2%}" if summary.baseline_accuracy is not None else "")
             + ".</p>"]
    if facts.quality:
        quality = facts.quality
        parts.append(_table("per-class", ["class", "precision", "recall", "eval images"],
                            [[name, f"{p:.3f}", f"{r:.3f}", f"{row.sum():,}"] for name, p, r, row in
                             zip(quality.class_names, quality.precision, quality.recall, quality.confusion)]))
        parts.append(_figure(figures.png(figures.confusion(quality.confusion, quality.class_names)),
                             "Confusion matrix of the candidate on the eval split"))
    if facts.curves:
        parts.append(_figure(figures.png(figures.training_curves(facts.curves)),
                             "Training curves: the train and validation splits (TensorBoard logs)"))
    if summary.trials:
        names = [name for name in summary.trials[0] if name not in ("trial_id", "score")]
        parts += [f"<p>{_e(tuner_line(summary.trials, summary.best_epoch.get('monitor', '')))}</p>",
                  _table("trials", ["trial", "validation score", *names],
                         [[trial["trial_id"], f"{trial['score']:.4f}", *(f"{trial[name]:.3g}" for name in names)]
                          for trial in summary.trials])]
    if summary.best_epoch:
        parts.append(f"<p>{_e(best_epoch.kept_line(summary.best_epoch))}</p>")
    if summary.collapse_check:
        parts.append(f"<p>{_e(collapse_line(summary.collapse_check))}</p>")
    if summary.retrieval:
        parts.append("<h3>Visual search</h3><pre>" + _e("\n".join(retrieval_lines(summary.retrieval))) + "</pre>")
    return "".join(parts)


def _robustness(facts: RunFacts, robustness_png: bytes) -> str:
    points = facts.summary.robustness
    if not points:
        return "<h2>Robustness</h2><p>Not evaluated under attack (--attacks none).</p>"
    parts = ["<h2>Robustness</h2>", _figure(robustness_png, "Accuracy under attack against ε, candidate and served"),
             _table("robustness", ["attack", "ε", "candidate", "served"],
                    [[p.attack, f"{p.epsilon:g}", f"{p.candidate:.2%}",
                      "" if p.baseline is None else f"{p.baseline:.2%}"] for p in points])]
    if facts.flips:
        parts.append(f"<h3>Flipped by an attack at ε {facts.flips[0].epsilon:g}</h3><ul class=\"gallery\">")
        parts += [f'<li data-source="{_e(flip.source)}" data-true="{_e(flip.true_class)}" '
                  f'data-attacked="{_e(flip.attacked_class)}">{_image(flip.clean_png, "clean " + flip.source)} '
                  f'{_image(flip.attacked_png, "attacked " + flip.source)}<br>{_e(flip.true_class)} → '
                  f"<b>{_e(flip.attacked_class)}</b><br>{_e(flip.attack)}<br><small>{_e(flip.source)}</small></li>"
                  for flip in facts.flips]
        parts.append("</ul>")
    return "".join(parts)


def _blessing(facts: RunFacts) -> str:
    summary = facts.summary
    verdict = "Blessed: it passed every threshold." if summary.blessed else "Not blessed."
    parts = ["<h2>Blessing</h2>", f'<p class="{"pass" if summary.blessed else "fail"}">{_e(verdict)}</p>',
             _table("thresholds", ["threshold", "value", "bound", "margin", ""],
                    [[gate.what, f"{gate.value:.4f}", gate.bound_text, f"{gate.margin:+.4f}",
                      "passed" if gate.margin >= 0 else "failed"] for gate in facts.gates],
                    ["pass" if gate.margin >= 0 else "fail" for gate in facts.gates])]
    parts += [f'<p class="fail">{_e(failure)}</p>' for failure in summary.failures]
    if summary.push_check_failure:
        parts.append(f'<p class="fail">Push check: {_e(summary.push_check_failure)}</p>')
    return "".join(parts)


def _push(facts: RunFacts) -> str:
    pushed = facts.summary.pushed_to
    if not pushed:
        return "<h2>Push</h2><p>Not pushed.</p>"
    return (f"<h2>Push</h2><p>Version {_e(os.path.basename(pushed.rstrip('/')))} pushed to "
            f"<code>{_e(pushed)}</code>.</p>")


def _verdict(summary) -> str:
    if summary.stopped_by:
        return "Stopped by an error; nothing pushed."
    if summary.accuracy is None:
        return "Stopped before the Evaluator; nothing pushed."
    if summary.pushed_to:
        return f"Blessed and pushed as version {os.path.basename(summary.pushed_to.rstrip('/'))}."
    return "Blessed, not pushed." if summary.blessed else "Not blessed, not pushed."


# a metric and how its gate's name (run_facts.gates) starts: the clean slice is "overall" in a run without attacks
TREND_METRICS = {"accuracy": (f"{ACCURACY} on the clean images", f"{ACCURACY} overall"),
                 "search precision@10": ("search precision@10",),
                 "robust accuracy": (f"{ACCURACY} under {WORST_CASE} at",)}


def _trend(facts: RunFacts) -> str:
    """The runs up to this one: a figure of accuracy, search precision@10 and robust accuracy with the thresholds
    this run applied, and a row per run."""
    if len(facts.trend) < 2:
        return ""
    rows = facts.trend
    series = {"accuracy": [row.accuracy for row in rows],
              "search precision@10": [row.precision_at_10 for row in rows],
              "robust accuracy": [row.robust_accuracy[1] if row.robust_accuracy else None for row in rows]}
    series = {metric: values for metric, values in series.items() if any(value is not None for value in values)}
    bounds = {metric: gate.bound for metric, starts in TREND_METRICS.items() for gate in facts.gates
              if gate.what.startswith(starts) and "served" not in gate.what and gate.bound > 0}
    labels = [row.started.strftime("%m-%d %H:%M") for row in rows]
    figure = [_figure(figures.png(figures.trend(labels, series, bounds)),
                      "Accuracy, search precision@10 and robust accuracy over the last runs")] if series else []
    return "".join([f"<h2>The last {len(rows)} runs</h2>", *figure,
                    _table("runs", list(history.COLUMNS), [row.cells() for row in rows])])


def render(facts: RunFacts, robustness_png: bytes) -> str:
    """The page of a run; `robustness_png` is its robustness figure (written beside the page too)."""
    title = f"{facts.pipeline_name}, run {facts.summary.run_id}"
    sections = [f"<p><b>{_e(_verdict(facts.summary))}</b></p>"]
    if facts.summary.stopped_by:
        sections.append(f'<pre class="fail" id="error">{_e(facts.summary.stopped_by)}</pre>')
    sections.append(_data(facts))
    if facts.summary.accuracy is None and not facts.summary.stopped_by:
        sections.append("<p>The run stopped before the Evaluator: no model to report.</p>")
    elif facts.summary.accuracy is not None:
        sections += [_model(facts), _robustness(facts, robustness_png), _blessing(facts), _push(facts)]
    sections.append(_trend(facts))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>{''.join(sections)}</body></html>\n")
