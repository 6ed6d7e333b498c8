"""Files written whole or not at all (a temporary beside the target, swapped in by one rename), and
read back with one-sentence errors that name the file and the fix."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedrouter_cli.errors import CorruptArtifactError, MissingInputError

if TYPE_CHECKING:  # pyarrow is imported where a table is read or written, so the CLI starts fast
    import pyarrow as pa


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


def copy_files(copies: dict[Path, Path]) -> None:
    """Copy each source onto its target ({target: source}), each file atomically."""
    for target, source in copies.items():
        if source.resolve() != target.resolve():
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)


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
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: Path, text_columns: tuple[str, ...] = ()) -> pa.Table:
    """A Parquet table, checked before any stage works on it: valid UTF-8 text, and the named
    columns present as text (a binary or numeric column would fail deep inside a stage)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

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
