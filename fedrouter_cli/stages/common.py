"""What every stage shares: fingerprint-based caching and manifests (from fedrouter_cli.manifests),
progress callbacks, and staged (atomic) output folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import atomic_dir, write_json
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


def record_on_nodes(run: RunDir, stage: str, fp: str, config_slice: dict, summary: dict) -> StageResult:
    """--source nodes: a deployment server's data stage holds no rows (each node made its own with
    `deploy prepare-node --data`); its manifest records the settings, so the stages after it (the
    federation, evaluation on the nodes) find what they check, and nothing else is written."""
    summary = {**summary, "on_nodes": True}
    with staged_outputs(run, stage) as at:
        write_json(at(run.manifest_path(stage)), manifest(stage, fp, config_slice, {}, 0.0, summary, []))
    return StageResult(stage, False, 0.0, summary)


def refuse_on_nodes(config, what: str) -> None:
    """Stages that need the clients' rows cannot run on a server whose nodes keep them."""
    if config.data.on_nodes:
        raise FedrouterError(f"This run dir's data lives on its nodes (--source nodes), so {what} cannot run here; "
                             "run the federation with `fedrouter deploy submit` (add --evaluate to score on the nodes).")
