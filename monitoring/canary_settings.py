"""CanaryThresholds: when `cnnpipe canary` passes a canary; each field is also its flag. No TensorFlow here, so the CLI
starts fast."""

import dataclasses

from cnnpipe.core.options import option

GROUP = "canary"


@dataclasses.dataclass(frozen=True)
class CanaryThresholds:
    min_agreement: float = option(0.95, "the least share of images both versions give the same top class", GROUP)
    max_latency_ratio: float = option(1.5, "the canary's p99 latency over stable's, at most", GROUP)
    min_search_overlap: float = option(0.5, "the least mean share of stable's search items the canary also returns",
                                       GROUP)
    max_accuracy_drop: float = option(0.0, "on labelled images (--labels), the canary's accuracy below stable's, at "
                                      "most", GROUP)
