"""One object for equal values that many long-lived records hold (image texts, creation times).

At 100,000 scopes in use each copy counts; the tables are bounded (cleared when full) because the
values come from pods and from the cluster, not from a fixed set.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def shared(table: dict[T, T], value: T, limit: int) -> T:
    """`value`, or the equal one `table` already holds."""
    kept = table.get(value)
    if kept is None:
        if len(table) >= limit:
            table.clear()
        kept = table[value] = value
    return kept
