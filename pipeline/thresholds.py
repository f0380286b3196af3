"""Thresholds: what a candidate must reach on the Evaluator's slices to be blessed.

No TFMA here: the CLI builds its options from these defaults and stays fast to start.
"""

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """What a candidate must reach to be blessed. Drops are in accuracy (0.01 is one point) below the
    last blessed model's on the same slice; None compares nothing."""

    min_accuracy: float = 0.85  # clean
    max_accuracy_drop: Optional[float] = 0.0  # clean
    robust_epsilon: float = 0.1  # the ε whose FGSM and PGD slices are gated
    min_fgsm_accuracy: float = 0.0
    min_pgd_accuracy: float = 0.0
    max_robust_accuracy_drop: Optional[float] = None  # each attack's slice at robust_epsilon

    def without_baseline(self) -> "Thresholds":
        return dataclasses.replace(self, max_accuracy_drop=None, max_robust_accuracy_drop=None)
