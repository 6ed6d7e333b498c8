"""The progress callback type shared by stages and by the model/embedding helpers (no Flower, no CLI)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""progress(label, done, total): stages report long work through this; the CLI draws the bar."""


def no_progress(label: str, done: int, total: int) -> None:
    return None
