"""Bounded memo tables, and one object for equal values that many long-lived records hold (image
texts, creation times).

At 100,000 scopes in use each copy counts; the tables are bounded (cleared when full) because the
keys come from pods and from the cluster, not from a fixed set.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

T = TypeVar("T", bound=Hashable)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def remember(table: dict[K, V], key: K, value: V, limit: int) -> V:
    """Put `value` in `table` under `key`, emptying the table first when it holds `limit` entries."""
    if len(table) >= limit:
        table.clear()
    table[key] = value
    return value


def shared(table: dict[T, T], value: T, limit: int) -> T:
    """`value`, or the equal one `table` already holds."""
    kept = table.get(value)
    return remember(table, value, value, limit) if kept is None else kept
