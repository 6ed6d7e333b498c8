"""What crosses the wire: adapters and centroids as arrays, settings and metrics as numbers.

Helpers to pack dicts of numpy arrays into Flower records and back, and to count bytes.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: record[k].numpy() for k in record.keys()}


def nbytes(arrays: dict[str, np.ndarray]) -> int:
    return int(sum(v.nbytes for v in arrays.values()))
