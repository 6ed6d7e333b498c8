"""Vectors in Parquet: a matrix stored as one fixed-size-list column of float32, one row per vector,
and the embeddings files (id, embedding) made of it.

Embeddings, local centroids, node centroids and the exported router all use this one encoding, so
any of them can be read by any tool that reads Arrow (and by `read_vectors` here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from fedrouter_cli.errors import CorruptArtifactError
from fedrouter_cli.files import read_table


def vector_column(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """One Arrow column holding each row of `matrix` (float32)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    flat = pa.array(matrix.ravel(), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1] if matrix.ndim == 2 else 0)


def read_vectors(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The matrix a vector column holds, [rows, dim] float32 ([0, 0] when it has no rows)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    rows = len(column)
    if not rows:
        return np.zeros((0, 0), np.float32)
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(rows, -1)


def embeddings_table(ids: list[str], vectors: np.ndarray) -> pa.Table:
    return pa.table({"id": ids, "embedding": vector_column(vectors)})


def read_embeddings(path: Path) -> tuple[list[str], np.ndarray]:
    table = read_table(path)
    if "embedding" not in table.column_names or "id" not in table.column_names:
        raise CorruptArtifactError(f"{path} has no 'id'/'embedding' columns; rerun `fedrouter embed --force`.")
    return table.column("id").to_pylist(), read_vectors(table.column("embedding"))
