"""Splitting task rows over clients by scenario (pure logic, no I/O)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from fedrouter_cli.data.sources import Row


def client_tasks(scenario: str, tasks: tuple[str, ...], clients: int, index: int) -> tuple[str, ...]:
    """The tasks client `index` holds. Clients form equal groups; group g starts at task g."""
    count = len(tasks)
    group = index * count // clients
    if scenario == "single":
        return (tasks[group],)
    if scenario == "dual":
        return (tasks[group],) if count == 1 else (tasks[group], tasks[(group + 1) % count])
    return tasks


def skewed_sizes(total: int, clients: int, alpha: float, seed: int, minimum: int) -> list[int]:
    """Quantity skew: client train sizes summing to `total`, each at least `minimum` (one batch),
    the rest split by a seeded Dirichlet(alpha) draw; largest remainders round it exactly."""
    import numpy as np

    spare = total - clients * minimum
    if spare < 0:
        from fedrouter_cli.errors import FedrouterError

        raise FedrouterError(f"--quantity-skew needs at least one batch ({minimum} rows) per client, and "
                             f"{total} train rows over {clients} clients leave less; raise --train-per-client.")
    weights = np.random.default_rng(np.random.SeedSequence([seed, 7919])).dirichlet([alpha] * clients)
    exact = weights * spare
    sizes = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - sizes), kind="stable")[: spare - int(sizes.sum())]:
        sizes[i] += 1
    return [minimum + int(s) for s in sizes]


def shares(total: int, tasks: tuple[str, ...]) -> dict[str, int]:
    """Split `total` samples over tasks as evenly as possible; earlier tasks take the remainder."""
    base, extra = divmod(total, len(tasks))
    return {task: base + (1 if i < extra else 0) for i, task in enumerate(tasks)}


@dataclass
class Draw:
    """The rows each client gets from one split, and what fell short."""

    rows: list[list[Row]]
    warnings: list[str] = field(default_factory=list)


def draw_split(pools: dict[str, list[Row]], wants: list[dict[str, int]], seed: int, split: str) -> Draw:
    """Give each client its wanted count per task from a shuffled pool.

    Clients take consecutive slices of the pool, so rows are spread over clients before any is
    reused; a row is never given twice to the same client. A client that wants more than a pool
    holds gets the whole pool, and a warning says so.
    """
    rng = random.Random(f"{seed}-{split}")
    shuffled = {task: rng.sample(rows, len(rows)) for task, rows in pools.items()}
    cursor: Counter[str] = Counter()
    result: list[list[Row]] = [[] for _ in wants]
    warnings: list[str] = []
    short: Counter[str] = Counter()
    for client, want in enumerate(wants):
        for task, n in want.items():
            pool = shuffled[task]
            take = min(n, len(pool))
            if take < n:
                short[task] += 1
            start = cursor[task] % max(len(pool), 1)
            result[client].extend(pool[(start + i) % len(pool)] for i in range(take))
            cursor[task] += take
    for task, clients in short.items():
        warnings.append(
            f"{split}: task {task} has only {len(pools[task])} rows, fewer than {clients} client(s) asked for; "
            "they got every row once."
        )
    reused = [t for t, used in cursor.items() if used > len(pools[t])]
    if reused:
        warnings.append(
            f"{split}: tasks {', '.join(sorted(reused))} have fewer rows than all clients together asked for; "
            "some rows are shared between clients (never repeated within one)."
        )
    return Draw(rows=result, warnings=warnings)


def drop_overlap(train: list[Row], test: list[Row]) -> list[Row]:
    """Remove train rows whose id or text also appears in the test split, so no test row is trained on."""
    test_ids = {r.id for r in test}
    test_text = {(r.instruction, r.response) for r in test}
    return [r for r in train if r.id not in test_ids and (r.instruction, r.response) not in test_text]
