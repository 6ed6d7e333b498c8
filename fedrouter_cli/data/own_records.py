"""Naturally federated data: one client per value of a column of one's own records (a user, a
site, a hospital), each client's rows split into its own seeded train and test sets. Pure logic,
no I/O; the partition stage reads the records (fedrouter_cli.data.records) and writes the splits."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from fedrouter_cli.data.records import Record
from fedrouter_cli.data.sources import Row
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.names import client_name


@dataclass
class ClientSplits:
    values: list[str]                 # the client column's value of client i
    train: list[list[Row]]
    test: list[list[Row]]
    test_all: list[list[Row]]         # every client's test rows (a sample of them), for --test-tasks all
    warnings: list[str] = field(default_factory=list)


def split_by_client(records: list[Record], column: str, clients: int, train_cap: int, test_cap: int,
                    test_fraction: float, seed: int) -> ClientSplits:
    """Client i holds the rows of the i-th value of `column` (sorted); each client's rows, exact
    duplicates dropped (and counted), are shuffled with the seed and split (split_client):
    round(fraction x n) (at least 1) for test, the rest for train, each capped at its per-client size."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.client, []).append(record)
    values = sorted(groups)
    if len(values) < 2:
        raise FedrouterError(f"--client-column {column!r} has {len(values)} value(s) ({', '.join(values) or 'none'}); "
                             "a federation needs two or more clients, so name a column that tells them apart.")
    if len(values) != clients:
        raise FedrouterError(f"--client-column {column!r} has {len(values)} values, one client each; "
                             f"pass --clients {len(values)}.")
    out = ClientSplits(values=values, train=[], test=[], test_all=[])
    for index, value in enumerate(values):
        train, test, warning = split_client(groups[value], index, f"client {value!r} of --client-column {column!r}",
                                            train_cap, test_cap, test_fraction, seed)
        out.train.append(train)
        out.test.append(test)
        out.warnings.extend([warning] if warning else [])
    everyone = [row for rows in out.test for row in rows]
    for index in range(clients):
        picks = random.Random(f"{seed}-test_all-{index}").sample(everyone, min(test_cap, len(everyone)))
        out.test_all.append(picks)
    return out


def split_client(records: list[Record], index: int, label: str, train_cap: int, test_cap: int,
                 test_fraction: float, seed: int) -> tuple[list[Row], list[Row], str | None]:
    """One client's train and test rows, and a warning when duplicates were dropped. The shuffle is
    seeded by the seed and the client's number, so a node preparing its own file (`deploy
    prepare-node --data`) draws exactly the split a simulation of the same rows gives that client."""
    unique: dict[tuple[str, str], Record] = {}
    for record in records:
        unique.setdefault((record.instruction, record.response), record)
    dropped = len(records) - len(unique)
    warning = (f"{label}: dropped {dropped} duplicate row(s) (same instruction and response), kept {len(unique)} "
               f"of {len(records)}.") if dropped else None
    rows = list(unique.values())
    if len(rows) < 2:
        raise FedrouterError(f"{label} has {len(rows)} distinct row(s); each client needs at least two "
                             "(one to train on, one to test).")
    random.Random(f"{seed}-{client_name(index)}").shuffle(rows)
    n_test = min(max(1, round(test_fraction * len(rows))), len(rows) - 1)
    test, train = rows[:n_test][:test_cap], rows[n_test:][:train_cap]
    return ([_row(index, "train", i, r) for i, r in enumerate(train)],
            [_row(index, "test", i, r) for i, r in enumerate(test)], warning)


def _row(client: int, split: str, index: int, record: Record) -> Row:
    return Row(id=f"{client_name(client)}-{split}-{index:06d}", task=record.task, instruction=record.instruction,
               response=record.response)
