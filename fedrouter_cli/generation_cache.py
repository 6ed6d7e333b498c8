"""Predictions by content: a greedy answer is computed once for what determines it.

A generated answer depends on the base model (its identity, 4-bit or not, the dtype it ran in),
the adapter's weights and LoRA scale (or none), the formatted prompt with its truncation length,
and greedy decoding; nothing else. The key is a hash of exactly those, so a second evaluation that
routes a sample to the same adapter, the base model's row of another scenario, or a method whose
adapter is byte-identical reads the answer instead of generating it. There are no special cases
for methods or modes: equal inputs, equal outputs.

The token limit is not in the key. Greedy decoding makes a shorter limit's answer a prefix of a
longer one's, so an entry keeps its token ids and whether it ended at EOS: an answer that ended
within the asked limit is the answer, a longer one cut to the limit is the answer, and only an
answer that was cut short of the asked limit is a miss.

(Answers computed in other batches can differ in the last bits of their floats, as they do
between two batch sizes of one run; the cache returns one of those valid greedy answers.)
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_FILE = "generations.sqlite"


def adapter_digest(weights: Mapping[str, np.ndarray], lora_scale: tuple[int, int]) -> str:
    """Content hash of an adapter: every key, dtype, shape and byte, and its LoRA (rank, alpha)."""
    digest = hashlib.sha256(json.dumps(list(lora_scale)).encode())
    for key in sorted(weights):
        value = np.ascontiguousarray(weights[key])
        digest.update(f"{key}|{value.dtype.str}|{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Answer:
    tokens: tuple[int, ...]  # generated ids, without EOS and padding
    finished: bool           # ended at EOS (else cut at its limit)
    text: str                # the decoded, stripped answer

    def serves(self, limit: int) -> bool:
        """Whether this entry gives the answer under a limit of `limit` new tokens."""
        return len(self.tokens) >= limit or self.finished


class GenerationCache:
    """SQLite store of answers by content key; safe for runs that share it (the bench's cells)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, tokens BLOB, finished INTEGER, "
                       "text TEXT)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    @staticmethod
    def key(model: str, adapter: str, prompt: str, max_length: int) -> str:
        """model: the base model's identity and numerics; adapter: adapter_digest or 'base';
        prompt: the formatted prompt; max_length: where the prompt is cut from the left."""
        blob = json.dumps({"model": model, "adapter": adapter, "prompt": prompt, "max_length": max_length,
                           "decoding": "greedy"}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, keys: list[str]) -> dict[str, Answer]:
        found: dict[str, Answer] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                rows = db.execute(f"SELECT key, tokens, finished, text FROM answers WHERE key IN "
                                  f"({','.join('?' * len(chunk))})", chunk).fetchall()
                found.update({k: Answer(tuple(np.frombuffer(t, dtype=np.int32).tolist()), bool(f), text)
                              for k, t, f, text in rows})
        return found

    def put(self, entries: dict[str, Answer]) -> None:
        """Store answers; a longer finished-or-cut answer never gives way to a shorter cut one."""
        with self._connect() as db:
            old = self.get(list(entries))
            rows = [(k, np.asarray(a.tokens, dtype=np.int32).tobytes(), int(a.finished), a.text)
                    for k, a in entries.items() if k not in old or _better(a, old[k])]
            db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)", rows)


def _better(new: Answer, old: Answer) -> bool:
    return not old.finished and (new.finished or len(new.tokens) > len(old.tokens))


def answer_for(entry: Answer, limit: int, decode: Callable[[list[int]], str]) -> str:
    """The answer under `limit` from an entry that serves it (decode cuts a longer one)."""
    if len(entry.tokens) <= limit:
        return entry.text
    return decode(list(entry.tokens[:limit]))
