"""Results on disk: JSON with where and when it was measured, and PNG charts (Agg)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.run import CellResult
    from benchmarks.side_by_side import Comparison

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def provenance() -> dict:
    """The machine, the time and the checkout's commit (with `+dirty` for local edits)."""
    root = Path(__file__).resolve().parents[1]
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty=+dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_1m": os.getloadavg()[0],
    }


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**payload, "provenance": provenance()}, indent=2) + "\n")
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns; a Markdown table that reads as plain text too."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return (
            "| " + " | ".join(cell.rjust(w) for cell, w in zip(cells, widths, strict=True)) + " |"
        )

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def run_chart(cells: Sequence[CellResult], path: Path) -> Path:
    """Per load level: throughput, TTFT, ITL and stall percentiles."""
    plt = _pyplot()
    labels = [f"{c.model}\n{c.load.label}" for c in cells]
    x = range(len(cells))
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))
    axes[0][0].bar(x, [c.summary.requests_per_s for c in cells])
    axes[0][0].set_title("requests/s")
    axes[0][1].bar(x, [c.summary.output_tokens_per_s for c in cells])
    axes[0][1].set_title("output tokens/s")
    for axis, title, attribute in (
        (axes[1][0], "TTFT (ms)", "ttft"),
        (axes[1][1], "ITL and stall (ms)", "itl"),
    ):
        for key, style in (("p50_ms", "o-"), ("p90_ms", "s--"), ("p99_ms", "^:")):
            values = [_value(getattr(c.summary, attribute), key) for c in cells]
            axis.plot(x, values, style, label=f"{attribute.upper()} {key[:-3]}")
        if attribute == "itl":
            stall = [_value(c.summary.stall, "p99_ms") for c in cells]
            axis.plot(x, stall, "x-", label="stall p99")
        axis.set_title(title)
        axis.legend()
    for axis in axes.flat:
        axis.set_xticks(list(x))
        axis.set_xticklabels(labels, fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _value(distribution, key: str) -> float:
    return float("nan") if distribution is None else getattr(distribution, key)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def side_by_side_chart(comparisons: Sequence[Comparison], path: Path, title: str) -> Path:
    """Ratio of requests/s, added TTFT, added ITL, and memory, per concurrency."""
    plt = _pyplot()
    labels = [str(c.concurrency) for c in comparisons]
    x = list(range(len(comparisons)))
    width = 0.38
    left = [i - width / 2 for i in x]
    right = [i + width / 2 for i in x]
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))

    ratio = axes[0][0]
    percents = [_nan(c.requests_ratio) * 100 for c in comparisons]
    bars = ratio.bar(x, percents, color="tab:blue")
    ratio.bar_label(bars, fmt="%.1f")
    ratio.axhline(100, color="black", linewidth=0.8)
    ratio.set_title("requests/s: BLS / engine alone (%)")
    ratio.set_ylim(0, max([115.0, *(p + 10 for p in percents if p == p)]))  # p == p: not NaN

    for axis, name, p50, p99 in (
        (axes[0][1], "TTFT", "added_ttft_p50_ms", "added_ttft_p99_ms"),
        (axes[1][0], "ITL", "added_itl_p50_ms", "added_itl_p99_ms"),
    ):
        axis.bar(left, [_nan(getattr(c, p50)) for c in comparisons], width, label="p50")
        axis.bar(right, [_nan(getattr(c, p99)) for c in comparisons], width, label="p99")
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_title(f"{name} added by the BLS (ms)")
        axis.legend()

    memory = axes[1][1]
    memory.bar(left, [c.engine.rss_max_mib for c in comparisons], width, label="engine alone")
    memory.bar(right, [c.bls.rss_max_mib for c in comparisons], width, label="BLS")
    memory.set_title("RSS of all model processes, max per cell (MiB)")
    memory.legend()

    for axis in axes.flat:
        axis.set_xticks(x)
        axis.set_xticklabels(labels)
        axis.set_xlabel("concurrent streams")
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
