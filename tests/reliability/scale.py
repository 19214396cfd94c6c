"""How big the reliability tests run: the CI share (`make test`) or the full run (`make reliability`).

`RELIABILITY_FULL=1` selects the full numbers. Plain functions, so that tests outside
tests/reliability (the in-process fuzz test in tests/unit) use the same switch as the fixture.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T", int, float)

ENV_VAR = "RELIABILITY_FULL"


def full_run() -> bool:
    """True under `make reliability` (RELIABILITY_FULL=1)."""
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Scale:
    """`scale.pick(ci, full)` chooses a count by the run's size."""

    full: bool

    @property
    def mode(self) -> str:
        return "full" if self.full else "ci"

    def pick(self, ci: T, full: T) -> T:
        return full if self.full else ci


def current_scale() -> Scale:
    return Scale(full_run())
