"""The run directory: every path a stage reads or writes, atomic writes and stage manifests.

A stage's outputs count only once its manifest exists; the manifest is written last, so a killed
stage leaves nothing that a later run would mistake for a result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fedrouter_cli.errors import CorruptArtifactError, FedrouterError, MissingInputError

STAGES = ("partition", "embed", "cluster-local", "select-k", "simulate", "evaluate")


def client_name(index: int) -> str:
    return f"c{index:02d}"


def client_index(name: str) -> int | None:
    """The client a name stands for: the number it holds ('c03', a node folder 'c03' or 'node-3'),
    None when it holds none. The inverse of client_name, and how a node knows its client."""
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else None


def round_dir(simulate_dir: Path, round_number: int) -> Path:
    """One saved round of a simulate folder: its state.json and adapters/."""
    return simulate_dir / "rounds" / f"r{round_number:04d}"


def saved_rounds(simulate_dir: Path) -> list[int]:
    """The rounds a simulate folder has saved, in order: a round counts once its state.json is in place."""
    return sorted(int(state.parent.name[1:]) for state in simulate_dir.glob("rounds/r*/state.json"))


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (config slices, upstream fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success it replaces `final` in one rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it takes `final`'s place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    if not path.exists():
        raise MissingInputError(f"{path} does not exist; run the stage that writes it first.")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptArtifactError(
            f"{path} is not valid JSON ({exc.__class__.__name__}); rerun its stage with --force."
        ) from None


def write_table(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


PARTITION_TEXT = ("id", "task", "instruction", "response")  # partition files' text columns


def read_table(path: Path, text_columns: tuple[str, ...] = ()) -> pa.Table:
    """A Parquet table, checked before any stage works on it: valid UTF-8 text, and the named
    columns present as text (a binary or numeric column would fail deep inside a stage)."""
    if not path.exists():
        raise MissingInputError(f"{path} does not exist; run the stage that writes it first.")
    try:
        table = pq.read_table(path)
        table.validate(full=True)  # Parquet does not check that text is UTF-8; catch it here, not mid-stage
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptArtifactError(
            f"{path} is not a readable Parquet file ({_reason(exc)}); rerun its stage with --force."
        ) from None
    for name in text_columns:
        kind = table.schema.field(name).type if name in table.column_names else None
        if kind is None or not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            found = "missing" if kind is None else f"of type {kind}"
            raise CorruptArtifactError(f"{path} has no text column {name!r} (it is {found}); "
                                       "rerun its stage with --force.")
    return table


def _reason(exc: Exception) -> str:
    """Arrow's first sentence, without the path it repeats ("Could not open ... '<path>': ...")."""
    first = str(exc).splitlines()[0].rsplit("': ", 1)[-1]
    return first.split(". ")[0].rstrip(".")[:100]


def file_in_the_way(folder: Path) -> Path | None:
    """The file among `folder`'s existing ancestors that would stop it from being created, if any."""
    nearest = next((p for p in folder.parents if p.exists()), None)
    return nearest if nearest is not None and not nearest.is_dir() else None


@dataclass(frozen=True)
class RunDir:
    """Owns the layout of one run directory; stages ask it for paths, never build them."""

    root: Path

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "root", Path(self.root).expanduser().resolve())
        except (RuntimeError, OSError):  # a symlink loop; Python < 3.13 raises RuntimeError
            raise FedrouterError(f"--run-dir {self.root} is a symlink loop; pass a real folder path.") from None
        if self.root.exists() and not self.root.is_dir():
            raise FedrouterError(f"--run-dir {self.root} is a file, not a folder; pass a folder path.")
        # A file higher up would only fail at the first write, after the stage did its work.
        if blocker := file_in_the_way(self.root):
            raise FedrouterError(f"--run-dir {self.root} lies inside the file {blocker}; pass a folder path.")

    # -- config and manifests -------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    def stage_dir(self, stage: str, *sub: str) -> Path:
        return self.root.joinpath(stage, *sub)

    def manifest_path(self, stage: str, *sub: str) -> Path:
        return self.stage_dir(stage, *sub) / "manifest.json"

    def manifest(self, stage: str, *sub: str) -> dict[str, Any] | None:
        path = self.manifest_path(stage, *sub)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError:
            return None  # a damaged manifest means "not done"; the stage simply reruns

    def require(self, stage: str, *sub: str, hint: str | None = None) -> dict[str, Any]:
        found = self.manifest(stage, *sub)
        if found is None:
            name = " ".join((stage, *sub))
            raise MissingInputError(
                f"The run dir {self.root} has no completed '{name}' stage; "
                f"{hint or f'run `fedrouter {stage}` first'}."
            )
        return found

    def write_manifest(self, stage: str, manifest: dict[str, Any], *sub: str) -> None:
        write_json(self.manifest_path(stage, *sub), manifest)

    def invalidate(self, stage: str, *sub: str) -> None:
        """Drop a stage's manifest before rewriting its outputs, so a crash can't leave a stale 'done'."""
        path = self.manifest_path(stage, *sub)
        if path.exists():
            path.unlink()

    # -- per-client artifacts ------------------------------------------------------------
    def partition_file(self, client: str, split: str) -> Path:
        return self.stage_dir("partition", "clients", client, f"{split}.parquet")

    def embedding_file(self, client: str, split: str) -> Path:
        return self.stage_dir("embed", "clients", client, f"{split}.parquet")

    def centroids_file(self, client: str) -> Path:
        return self.stage_dir("cluster-local", "clients", client, "centroids.parquet")

    def assignments_file(self, client: str) -> Path:
        return self.stage_dir("cluster-local", "clients", client, "assignments.parquet")

    def client_dir(self, client: str) -> Path:
        """Everything one client owns, gathered for its Flower node (its 'own folder')."""
        return self.stage_dir("nodes", client)

    # -- federation and evaluation -------------------------------------------------------
    def simulate_dir(self, alg: str) -> Path:
        return self.stage_dir("simulate", alg)

    def round_dir(self, alg: str, round_number: int) -> Path:
        return round_dir(self.simulate_dir(alg), round_number)

    def evaluate_dir(self, alg: str, name: str) -> Path:
        """One evaluation of `alg`; `name` comes from `evaluation_name`."""
        return self.stage_dir("evaluate", alg, name)
