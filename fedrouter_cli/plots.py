"""PNG plots (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def silhouette_plot(path: Path, curves: dict[str, dict[int, float]], title: str, marked: int | None = None,
                    marked_label: str = "") -> None:
    """One line per curve (a client, or 'global'), silhouette against K; `marked` draws a dashed
    vertical line at that K (the K a rule chose), labelled `marked_label`."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, scores in curves.items():
        ks = sorted(scores)
        ax.plot(ks, [scores[k] for k in ks], marker="o", label=name, alpha=0.8)
    if marked is not None:
        ax.axvline(marked, color="black", linestyle="--", linewidth=1, label=marked_label or f"K = {marked}")
    ax.set_xlabel("K")
    ax.set_ylabel("silhouette")
    ax.set_title(title)
    if len(curves) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def bar_chart(path: Path, labels: list[str], means: list[float], intervals: list[tuple[float, float] | None],
              title: str, ylabel: str = "ROUGE-1 F1") -> list[tuple[float, float] | None]:
    """Bars at `means`, each with an error bar spanning its interval (low, high) exactly as given
    (asymmetric, as bootstrap intervals are), none where the interval is None. Returns the spans
    as drawn, read back from the figure, so a caller can check that the plot shows its table."""
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(labels)), 4))
    ax.bar(range(len(labels)), means, color="#4c72b0")
    with_bars = [i for i, span in enumerate(intervals) if span is not None]
    drawn: list[tuple[float, float] | None] = [None] * len(labels)
    if with_bars:
        lows, highs = [intervals[i][0] for i in with_bars], [intervals[i][1] for i in with_bars]
        bars = ax.vlines(with_bars, lows, highs, color="black", linewidth=1.2)
        ax.hlines(lows + highs, [i - 0.12 for i in with_bars] * 2, [i + 0.12 for i in with_bars] * 2,
                  color="black", linewidth=1.2)
        for i, segment in zip(with_bars, bars.get_segments()):
            drawn[i] = (float(segment[0][1]), float(segment[1][1]))
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return drawn


def line_chart(path: Path, curves: dict[str, dict[int, float]], xlabel: str, ylabel: str, title: str) -> None:
    """One line per named curve of {x: y}."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def embedding_map(path: Path, xy, tasks: list[str], owners: list[str], title: str) -> None:
    """2-D points coloured by task and marked by owner (client)."""
    markers = "os^vD<>PXh*p"
    colours = {task: plt.cm.tab10(i % 10) for i, task in enumerate(sorted(set(tasks)))}
    owner_marks = {owner: markers[i % len(markers)] for i, owner in enumerate(sorted(set(owners)))}
    fig, ax = plt.subplots(figsize=(7, 5))
    for owner, mark in owner_marks.items():
        for task, colour in colours.items():
            chosen = [i for i, (o, t) in enumerate(zip(owners, tasks)) if o == owner and t == task]
            if chosen:
                ax.scatter(xy[chosen, 0], xy[chosen, 1], s=14, marker=mark, color=colour, alpha=0.7)
    for task, colour in colours.items():
        ax.scatter([], [], color=colour, label=task)
    for owner, mark in owner_marks.items():
        ax.scatter([], [], color="grey", marker=mark, label=owner)
    ax.legend(fontsize=6, ncol=2, loc="best")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
