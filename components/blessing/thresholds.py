"""Thresholds: what a candidate must reach on the Evaluator's slices to be blessed.

Each bound's default and `cnnpipe` flag are declared here once (core/options.py). No TFMA here: the CLI builds
its options from these fields and stays fast to start.
"""

import dataclasses
from typing import Optional

from cnnpipe.core.options import option


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """What a candidate must reach to be blessed. Drops are in accuracy (0.01 is one point) below the
    served model's on the same slice; None compares nothing."""

    min_accuracy: float = option(0.85, "lowest clean eval accuracy to bless", "blessing")
    max_accuracy_drop: Optional[float] = option(
        0.0, "how far below the served model's accuracy a model may be and still be blessed", "blessing")
    compare_with_baseline: bool = option(
        True, "do not compare with the served model: bless on --min-accuracy alone, with no baseline step",
        "blessing", flag="--no-baseline")
    robust_epsilon: float = option(0.1, "the ε whose attacked slices the bounds below gate", "robustness")
    min_fgsm_accuracy: float = option(0.0, "lowest accuracy under FGSM at --robust-epsilon to bless", "robustness")
    min_pgd_accuracy: float = option(0.0, "lowest accuracy under PGD at --robust-epsilon to bless", "robustness")
    min_robust_accuracy: float = option(0.0, "lowest accuracy at --robust-epsilon under every attack at once (the "
                                        "worst-case slice: an image counts if no attack broke it) to bless",
                                        "robustness")
    max_robust_accuracy_drop: Optional[float] = option(
        None, "how far below the served model's accuracy under each attack at --robust-epsilon a model may "
        "be and still be blessed", "robustness", metavar="DROP", default_help="not compared")
    min_retrieval_precision: float = option(
        0.0, "lowest precision@10 of visual search (the eval images as queries) to bless", "visual search")
    min_instance_recall: float = option(
        0.0, "lowest instance recall@10 of visual search to bless: 1,000 catalog items photographed again (moved one "
        "pixel, a tenth brighter or darker) as queries, each item among the first ten results of its second photo",
        "visual search")
    max_retrieval_precision_drop: Optional[float] = option(
        None, "how far below the served model's search precision@10 a model may be and still be blessed",
        "visual search", metavar="DROP", default_help="not compared")

    def without_baseline(self) -> "Thresholds":
        return dataclasses.replace(self, max_accuracy_drop=None, max_robust_accuracy_drop=None,
                                   max_retrieval_precision_drop=None)
