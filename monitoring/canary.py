"""Canary analysis on real traffic: the images the `stable` version was sent (`cnnpipe serve --log-requests`) replayed
through it and through the `canary`, side by side, one image a call.

It reports how often the two agree on the top class, which classes flip to which, how far their `search` answers
overlap (when both have it), each version's latency (p50 and p99 of the same calls, alternating) and, for logged
images labelled on the label sheet (`cnnpipe skew --label-sheet`), each version's accuracy; `passed` holds when the
canary is within the thresholds given, so that a schedule can promote it.
"""

import collections
import dataclasses
import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import CLASS_NAMES, NEIGHBOR_IDS, PREDICT_IMAGE, SEARCH
from cnnpipe.monitoring import logged_span
from cnnpipe.monitoring.canary_settings import CanaryThresholds
from cnnpipe.serving import model_config, rollout


@dataclasses.dataclass
class CanaryReport:
    model: str
    stable: int
    canary: int
    images: int
    agreement: float
    flips: dict[tuple[str, str], int]  # (stable's class, canary's class) -> images, where they disagree
    latency_ms: dict[str, tuple[float, float]]  # "stable"/"canary" -> (p50, p99)
    search_overlap: Optional[float] = None
    labelled: int = 0
    accuracy: dict[str, float] = dataclasses.field(default_factory=dict)  # "stable"/"canary" -> on labelled images
    failures: list[str] = dataclasses.field(default_factory=list)
    seconds: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # each call's, by version

    @property
    def passed(self) -> bool:
        return not self.failures

    def format(self) -> str:
        lines = [f"Canary {self.model} version {self.canary} against stable version {self.stable}, on {self.images} "
                 "logged images:",
                 f"  top-1 agreement {self.agreement:.2%}"]
        lines += [f"  {stable} -> {canary}: {count}" for (stable, canary), count in
                  sorted(self.flips.items(), key=lambda item: -item[1])]
        if self.search_overlap is not None:
            lines.append(f"  search: {self.search_overlap:.2%} of stable's items also in the canary's")
        lines += [f"  latency {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms" for name, (p50, p99) in
                  self.latency_ms.items()]
        if self.labelled:
            lines.append(f"  accuracy on {self.labelled} labelled images: stable {self.accuracy['stable']:.2%}, "
                         f"canary {self.accuracy['canary']:.2%}")
        lines.append("Passed." if self.passed else "Failed: " + " ".join(self.failures))
        return "\n".join(lines)


def labelled_versions(serving_dir: str, model: str) -> tuple[int, int]:
    """The `stable` and `canary` versions models.config labels."""
    entry = model_config.entry(serving_dir, model)
    labels = dict(entry.version_labels) if entry is not None else {}
    if rollout.STABLE not in labels or rollout.CANARY not in labels:
        path = os.path.join(serving_dir, model_config.MODELS_CONFIG)
        raise CnnpipeError(f"{path}: model '{model}' has no stable and canary labels (it has "
                           f"{', '.join(sorted(labels)) or 'none'}); cnnpipe promote a version, then push a canary.")
    return labels[rollout.STABLE], labels[rollout.CANARY]


def _timed(function, images: tf.Tensor) -> tuple[dict, float]:
    start = time.perf_counter()
    outputs = {key: value.numpy() for key, value in function(images=images).items()}
    return outputs, time.perf_counter() - start


def compare(requests_dir: str, serving_dir: str, model: str, thresholds: CanaryThresholds = CanaryThresholds(),
            labels_csv: Optional[str] = None) -> CanaryReport:
    """Replays the images logged for the stable version through both versions and checks the canary."""
    stable, canary = labelled_versions(serving_dir, model)
    logged = {key: image for key, (image, name, version, _) in logged_span.logged(requests_dir).items()
              if name == model and version == stable}
    if not logged:
        raise CnnpipeError(f"{requests_dir}: no logged requests of {model} version {stable} (stable); serve it with "
                           "--log-requests DIR and let it take traffic first.")
    labels = logged_span.labels(labels_csv, logged) if labels_csv else {}
    signatures = {name: tf.saved_model.load(os.path.join(serving_dir, model, str(version))).signatures
                  for name, version in (("stable", stable), ("canary", canary))}
    answers: dict[str, dict[str, str]] = collections.defaultdict(dict)  # version -> image id -> its class
    seconds: dict[str, list[float]] = collections.defaultdict(list)
    overlaps = []
    for key, image in logged.items():
        images = tf.constant([image])
        found = {}
        for name, served in signatures.items():
            outputs, took = _timed(served[PREDICT_IMAGE], images)
            answers[name][key] = outputs[CLASS_NAMES][0].decode()
            seconds[name].append(took)
            if SEARCH in served:
                found[name] = set(served[SEARCH](images=images)[NEIGHBOR_IDS].numpy()[0].tolist())
        if len(found) == 2:
            overlaps.append(len(found["stable"] & found["canary"]) / max(len(found["stable"]), 1))
    pairs = [(answers["stable"][key], answers["canary"][key]) for key in logged]
    report = CanaryReport(
        model, stable, canary, len(pairs), agreement=sum(a == b for a, b in pairs) / len(pairs),
        flips=dict(collections.Counter((a, b) for a, b in pairs if a != b)),
        latency_ms={name: (float(np.percentile(values, 50)) * 1000, float(np.percentile(values, 99)) * 1000)
                    for name, values in seconds.items()},
        search_overlap=float(np.mean(overlaps)) if overlaps else None, labelled=len(labels), seconds=dict(seconds))
    if labels:
        report.accuracy = {name: sum(answers[name][key] == label for key, label in labels.items()) / len(labels)
                           for name in ("stable", "canary")}
    report.failures = _failures(report, thresholds)
    return report


def _failures(report: CanaryReport, thresholds: CanaryThresholds) -> list[str]:
    failures = []
    if report.agreement < thresholds.min_agreement:
        failures.append(f"top-1 agreement {report.agreement:.2%} is below {thresholds.min_agreement:.2%}.")
    ratio = report.latency_ms["canary"][1] / report.latency_ms["stable"][1]
    if ratio > thresholds.max_latency_ratio:
        failures.append(f"the canary's p99 is {ratio:.2f}x stable's (allowed: {thresholds.max_latency_ratio:g}x).")
    if report.search_overlap is not None and report.search_overlap < thresholds.min_search_overlap:
        failures.append(f"search overlap {report.search_overlap:.2%} is below {thresholds.min_search_overlap:.2%}.")
    if report.accuracy and report.accuracy["stable"] - report.accuracy["canary"] > thresholds.max_accuracy_drop:
        failures.append(f"accuracy on labelled images {report.accuracy['canary']:.2%} is below stable's "
                        f"{report.accuracy['stable']:.2%} (allowed drop: {thresholds.max_accuracy_drop:.2%}).")
    return failures
