"""How p99 grows with the configuration's size, measured in pairs like the Go reference.

The sweep measures each K in turn with a fresh serve process, the largest about a quarter of an
hour after the smallest. On this machine kind the speed of a core moves by up to half between such
moments (the Go handler alone took 176 us a request in one run and 371 us in another), and a p99
over 5 s moves by a tenth from one run to the next, so two sweep cells compare moments as much as
sizes. Here serve at the largest K and serve at the smallest (in a small control plane of its own)
run side by side and are measured alternately, the order flipped each pair; the growth is the
median over the pairs of the ratio of their p99s.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GrowthCell:
    """The pairs of runs at one concurrency: (smallest K's row, largest K's row) each."""

    concurrency: int
    small: int
    large: int
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [large["p99_ms"] / small["p99_ms"] for small, large in self.pairs]

    @property
    def growth(self) -> float:
        """The median pair's p99 growth (of an even number of pairs, the higher middle one)."""
        return statistics.median_high(self.ratios()) - 1

    def row(self) -> dict[str, Any]:
        def median(side: int, key: str) -> float:
            return round(float(statistics.median(pair[side][key] for pair in self.pairs)), 3)

        return {
            "concurrency": self.concurrency,
            "scopes": self.large,
            "reference_scopes": self.small,
            "p99_ms": median(1, "p99_ms"),
            "reference_p99_ms": median(0, "p99_ms"),
            "cpu_ms_per_1k": median(1, "cpu_ms_per_1k"),
            "reference_cpu_ms_per_1k": median(0, "cpu_ms_per_1k"),
            "p99_growth_runs": [round(r - 1, 3) for r in self.ratios()],
            "p99_growth": round(self.growth, 3),
        }
