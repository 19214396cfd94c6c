"""Names the write side puts on what it writes: its field manager and the labels of its objects."""

from __future__ import annotations

MANAGER = "chaos-registry-webhook"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
