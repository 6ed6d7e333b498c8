"""Three nodes' own records, as three sites would keep them: each in its own format (JSONL, CSV,
Parquet) with its own column names and no task column, drawn from the built-in generator; and the
same rows as one file with a site column, the way a simulation of those sites reads them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fedrouter_cli.data.synthetic import generate_rows

# (format, instruction column, response column, the tasks the site happens to hold)
NODES = [("jsonl", "prompt", "completion", ("paraphrase", "headline")),
         ("csv", "query", "reply", ("headline", "triples_to_text")),
         ("parquet", "text_in", "text_out", ("triples_to_text", "dialogue_summary"))]
SITES = ("site-a", "site-b", "site-c")  # sorted as the nodes are numbered


def site_rows(node: int, per_task: int = 14) -> list[tuple[str, str]]:
    """(instruction, response) of one site, its tasks interleaved as a real log would hold them."""
    tasks = NODES[node][3]
    drawn = [generate_rows(task, "train", per_task, seed=100 + node) for task in tasks]
    return [(row["instruction"], row["response"]) for pair in zip(*drawn) for row in pair]


def write_node_file(folder: Path, node: int) -> tuple[Path, list[str]]:
    """The node's file, and the column options `deploy prepare-node --data` needs for it."""
    fmt, question, answer, _ = NODES[node]
    records = [{question: q, answer: a, "note": "kept by the site"} for q, a in site_rows(node)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"records.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return path, ["--instruction-column", question, "--response-column", answer]


def write_simulation_file(path: Path) -> Path:
    """Every site's rows in one JSONL with a `site` column (clients c00, c01, c02 in site order)."""
    lines = [json.dumps({"instruction": q, "response": a, "site": SITES[node]})
             for node in range(len(NODES)) for q, a in site_rows(node)]
    path.write_text("\n".join(lines) + "\n")
    return path
