"""The charts of bench/RESULTS.md, drawn by `make bench` from the rows it writes to results.json.

- versus-go-throughput.png, versus-go-p99.png: requests/s and p99 against concurrency, ours and the
  Go reference, one line per server and body;
- scale-p99.png, scale-rss.png: p99 per concurrency and peak RSS against the configuration size K.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

CHARTS = (
    ("versus-go-throughput.png", "Requests/s against concurrency: ours and the Go reference"),
    ("versus-go-p99.png", "p99 against concurrency: ours and the Go reference"),
    ("scale-p99.png", "p99 against the configuration size K"),
    ("scale-rss.png", "Peak RSS against the configuration size K"),
)
OURS, GO = "#1f77b4", "#d62728"
MARKERS = ("o", "s", "^", "D")


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _versus(path: Path, rows: list[dict[str, Any]], ours_key: str, go_key: str, label: str) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.2))
    bodies = sorted({r["body"] for r in rows})
    for i, body in enumerate(bodies):
        mine = sorted((r for r in rows if r["body"] == body), key=lambda r: r["concurrency"])
        x = [r["concurrency"] for r in mine]
        marker = MARKERS[i % len(MARKERS)]
        axes.plot(x, [r[ours_key] for r in mine], marker=marker, color=OURS, label=f"ours, {body}")
        axes.plot(
            x,
            [r[go_key] for r in mine],
            marker=marker,
            color=GO,
            linestyle="--",
            label=f"Go reference, {body}",
        )
    axes.set_xscale("log", base=2)
    concurrencies = sorted({r["concurrency"] for r in rows})
    axes.set_xticks(concurrencies, [str(c) for c in concurrencies])
    axes.set_xlabel("concurrent keep-alive clients (TLS)")
    axes.set_ylabel(label)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(f"{label}, one server core", fontsize=10)
    _save(figure, path)


def _finish_against_k(figure: Any, axes: Any, path: Path, ylabel: str, title: str) -> None:
    axes.set_xscale("log")
    axes.set_xlabel("K (registries and bound namespaces)")
    axes.set_ylabel(ylabel)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=10)
    _save(figure, path)


def _scale_p99(path: Path, rows: list[dict[str, Any]]) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for i, concurrency in enumerate(sorted({r["concurrency"] for r in rows})):
        mine = sorted((r for r in rows if r["concurrency"] == concurrency), key=lambda r: r["scopes"])
        axes.plot(
            [r["scopes"] for r in mine],
            [r["p99_ms"] for r in mine],
            marker=MARKERS[i % len(MARKERS)],
            label=f"c={concurrency}",
        )
    _finish_against_k(figure, axes, path, "p99 ms", "Admission p99 against K (request mix, one server core)")


def _scale_rss(path: Path, rows: list[dict[str, Any]]) -> None:
    peaks = sorted({(r["scopes"], r["rss_mib"]) for r in rows})
    figure, axes = plt.subplots(figsize=(7, 4.2))
    axes.plot([k for k, _ in peaks], [m for _, m in peaks], marker="o", color=OURS, label="peak RSS (VmHWM)")
    for k, m in peaks:
        axes.annotate(f"{m:.0f}", (k, m), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    _finish_against_k(figure, axes, path, "MiB", "Peak RSS of one serve process against K")


def draw(folder: Path, scale_rows: Iterable[dict[str, Any]], versus_rows: Iterable[dict[str, Any]]) -> None:
    """Write the charts that the rows allow (a run without the Go reference draws only the K ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    scale, versus = list(scale_rows), list(versus_rows)
    if versus:
        _versus(folder / CHARTS[0][0], versus, "rps", "go_reference_rps", "requests/s")
        _versus(folder / CHARTS[1][0], versus, "p99_ms", "go_reference_p99_ms", "p99 ms")
    if scale:
        _scale_p99(folder / CHARTS[2][0], scale)
        _scale_rss(folder / CHARTS[3][0], scale)
