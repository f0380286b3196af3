"""AttackSettings: which adversarial copies of the eval examples to make, checked before any work starts.

The defaults and `cnnpipe` flags of the settings a user chooses are declared here once (core/options.py). No
TensorFlow here: the CLI builds its options from these fields and stays fast to start.
"""

import dataclasses
import json
from typing import Optional, Sequence

from cnnpipe.core.errors import RobustnessError
from cnnpipe.core.names import ATTACKS, DEFAULT_ATTACKS, NO_ATTACK, WORST_CASE
from cnnpipe.core.options import names, numbers, option


def attack_names(text: str) -> tuple[str, ...]:
    """--attacks: comma-separated attack names, or "none"."""
    return () if text.strip() == NO_ATTACK else names(text)


def with_worst_case(attacks: Sequence[str]) -> list[str]:
    """The attacks, and their worst case where there is more than one to take it over."""
    return [*attacks, WORST_CASE] if len(attacks) > 1 else list(attacks)


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """Which copies to make; no `attacks` makes none. `max_examples` 0 attacks every source example."""

    attacks: tuple[str, ...] = option(DEFAULT_ATTACKS, "attacks on the eval images, each model with its own "
                                      "gradients, of fgsm, pgd, apgd-ce, apgd-dlr; none: clean images only",
                                      "robustness", parse=attack_names, metavar="fgsm,pgd|none")
    epsilons: tuple[float, ...] = option((0.05, 0.1, 0.2, 0.3), "L-inf bounds on the [0, 1] pixel scale; the clean "
                                         "images are ε 0", "robustness", parse=numbers, metavar="E,...")
    pgd_steps: int = option(10, "PGD's steps", "robustness")
    pgd_step_fraction: float = 0.25  # PGD's step size, a fraction of ε
    apgd_steps: int = option(20, "Auto-PGD's steps, with either loss (AutoAttack runs 100)", "robustness")
    worst_case_epsilon: Optional[float] = None  # the ε whose worst case of the attacks is written (the gated one)
    max_examples: int = 0
    batch_size: int = 256
    seed: int = 0  # PGD's and APGD's random starts

    def __post_init__(self) -> None:
        unknown = [name for name in self.attacks if name not in ATTACKS]
        if unknown:
            raise RobustnessError(f"attacks {list(self.attacks)}: choose one or more of {', '.join(ATTACKS)}, "
                                  f"or {NO_ATTACK}.")
        if (not self.epsilons or any(not 0 < e <= 1 for e in self.epsilons)
                or len(set(self.epsilons)) < len(self.epsilons)):
            raise RobustnessError(
                f"epsilons {list(self.epsilons)}: give distinct values in (0, 1], on the [0, 1] pixel scale "
                "(e.g. 0.1 for 25.5 of 255 levels); the clean copy (ε = 0) is always written."
            )
        if self.pgd_steps < 1 or self.pgd_step_fraction <= 0 or self.apgd_steps < 1:
            raise RobustnessError(
                f"PGD and Auto-PGD need at least one step (got --pgd-steps {self.pgd_steps}, --apgd-steps "
                f"{self.apgd_steps}) and PGD a positive step size (got {self.pgd_step_fraction} of ε; the default is "
                "0.25)."
            )
        if self.max_examples < 0 or self.batch_size < 1:
            raise RobustnessError(
                f"max_examples ({self.max_examples}) must be 0 (all) or more, batch_size ({self.batch_size}) at "
                "least 1."
            )

    def to_json(self) -> str:
        """The settings as one JSON text: how AdversarialExamples takes them, as one parameter."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "AttackSettings":
        fields = json.loads(text)
        return cls(**{**fields, "attacks": tuple(fields["attacks"]), "epsilons": tuple(fields["epsilons"])})

    @property
    def worst_case(self) -> bool:
        """Whether the copies include the worst case of the attacks at `worst_case_epsilon`: with more than one."""
        return WORST_CASE in with_worst_case(self.attacks) and self.worst_case_epsilon in self.epsilons

    @property
    def copies_per_model(self) -> int:
        return len(self.attacks) * len(self.epsilons) + self.worst_case
