"""A content-addressed store of embeddings, shared by every run on the machine.

Keyed by (embedder settings, sha256 of the text), so a rerun after a changed partition or a new
run dir over the same data embeds only texts it has never seen. SQLite keeps it one file and
safe under concurrent runs.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedrouter_cli.model.loading import cache_root


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingCache:
    def __init__(self, space: str, path: Path | None = None) -> None:
        self.space = hashlib.sha256(space.encode()).hexdigest()[:16]
        self.path = path or cache_root() / "embeddings.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS vectors (space TEXT, key TEXT, vector BLOB, "
                       "PRIMARY KEY (space, key))")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def embed(self, texts: list[str], compute: Callable[[list[str]], np.ndarray]) -> tuple[np.ndarray, int]:
        """Vectors for `texts` (in order) and how many had to be computed."""
        keys = [_text_key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                rows = db.execute(f"SELECT key, vector FROM vectors WHERE space = ? AND key IN ({','.join('?' * len(chunk))})",
                                  [self.space, *chunk]).fetchall()
                found.update({k: np.frombuffer(v, dtype=np.float32) for k, v in rows})
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            fresh = compute([texts[i] for i in missing]).astype(np.float32)
            with self._connect() as db:
                db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                               [(self.space, keys[i], fresh[j].tobytes()) for j, i in enumerate(missing)])
            for j, i in enumerate(missing):
                found[keys[i]] = fresh[j]
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), 0
        return np.stack([found[k] for k in keys]), len(missing)
