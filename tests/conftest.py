"""Test-wide pytest setup; deliberately light so unit tests start instantly.

Fixtures that need a control plane live in tests/e2e/conftest.py and only load for those tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `controlplane` and `tests.helpers` are not installed packages: make them importable however
# pytest was launched (`python -m pytest` adds the cwd to sys.path, the `pytest` script does not).
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)
