"""Figures collected by the reliability tests, written at the end of the session and printed.

Tests call `record(section, name, value)` (or `add` to accumulate); the session-finish hook of
tests/reliability/conftest.py writes everything to `.cache/reliability/figures.json` (full run) or
`figures-ci.json` (CI share), and `python -m tests.reliability.figures` prints the table that
`make reliability` shows.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / ".cache" / "reliability"

# Totals summed over every section, under these names.
TOTALS = {
    "inputs_tried": "inputs tried",
    "pods_created": "pods created (admitted through the apiserver)",
    "faults_injected": "faults injected",
    "pods_wrong": "pods wrong",
}

_figures: dict[str, dict[str, Any]] = {}
_started = time.time()


def record(section: str, name: str, value: Any) -> None:
    """Set one figure of `section` (one per test)."""
    _figures.setdefault(section, {})[name] = value


def add(section: str, name: str, value: float) -> None:
    """Add `value` to a figure (counters shared by several tests of one section)."""
    figures = _figures.setdefault(section, {})
    figures[name] = figures.get(name, 0) + value


def collected() -> dict[str, dict[str, Any]]:
    return _figures


def totals(sections: dict[str, dict[str, Any]]) -> dict[str, float]:
    result = dict.fromkeys(TOTALS, 0.0)
    for figures in sections.values():
        for key in TOTALS:
            value = figures.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                result[key] += value
    return result


def path_for(mode: str) -> Path:
    return FOLDER / ("figures.json" if mode == "full" else f"figures-{mode}.json")


def write(mode: str, outcome: dict[str, int]) -> Path | None:
    """Write the session's figures (nothing when no test recorded any)."""
    if not _figures:
        return None
    document = {
        "mode": mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(_started)),
        "duration_seconds": round(time.time() - _started, 1),
        "tests": outcome,
        "totals": totals(_figures),
        "sections": _figures,
    }
    target = path_for(mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    return target


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:,.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(document: dict[str, Any]) -> str:
    """The figures as a plain-text table: one block per section, then the totals."""
    lines = [
        f"reliability figures ({document['mode']} run, started {document['started']}, "
        f"{document['duration_seconds']:.0f} s; tests {document['tests']})",
        "",
    ]
    width = max(
        [len(name) for figures in document["sections"].values() for name in figures]
        + [len(v) for v in TOTALS.values()]
    )
    for section in sorted(document["sections"]):
        lines.append(section)
        for name, value in sorted(document["sections"][section].items()):
            lines.append(f"  {name:<{width}}  {_format(value):>14}")
    lines.append("")
    lines.append("totals")
    for key, label in TOTALS.items():
        lines.append(f"  {label:<{width}}  {_format(document['totals'][key]):>14}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else "full"
    target = path_for(mode)
    try:
        document = json.loads(target.read_text())
    except FileNotFoundError:
        print(f"no figures at {target}: run `make reliability` first", file=sys.stderr)
        return 1
    print(table(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
