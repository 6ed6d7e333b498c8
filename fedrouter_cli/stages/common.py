"""What every stage shares: fingerprint-based caching and manifests (from fedrouter_cli.manifests),
progress callbacks, and staged (atomic) output folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fedrouter_cli.files import atomic_dir
from fedrouter_cli.manifests import StageResult, cache_hit, manifest, package_versions
from fedrouter_cli.progress import Progress, no_progress
from fedrouter_cli.rundir import RunDir

__all__ = ["Progress", "StageResult", "cache_hit", "manifest", "no_progress", "package_versions", "staged_outputs"]


@contextmanager
def staged_outputs(run: RunDir, stage: str, *sub: str) -> Iterator[Callable[[Path], Path]]:
    """Build a stage's whole output folder aside and swap it in at the end.

    Yields `at(final_path) -> staging_path`. If the stage fails, the previous outputs and manifest
    are untouched.
    """
    final = run.stage_dir(stage, *sub)
    with atomic_dir(final) as tmp:
        def at(path: Path) -> Path:
            target = tmp / Path(path).relative_to(final)
            target.parent.mkdir(parents=True, exist_ok=True)
            return target

        yield at


