"""PNG plots (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def silhouette_plot(path: Path, curves: dict[str, dict[int, float]], title: str) -> None:
    """One line per curve (a client, or 'global'), silhouette against K."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, scores in curves.items():
        ks = sorted(scores)
        ax.plot(ks, [scores[k] for k in ks], marker="o", label=name, alpha=0.8)
    ax.set_xlabel("K")
    ax.set_ylabel("silhouette")
    ax.set_title(title)
    if len(curves) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def bar_chart(path: Path, labels: list[str], means: list[float], stds: list[float], title: str,
              ylabel: str = "ROUGE-1 F1") -> None:
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(labels)), 4))
    ax.bar(range(len(labels)), means, yerr=stds, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
