"""Where a bench cell's time goes, read from the manifests of a bench's run dirs (nothing is rerun).

Per finished cell: embedding, the simulation's wall time split into training (the clients' own
train seconds over the parallel workers) and the rest (Ray and model start-up, the server's work),
and each evaluation's generation time and samples/s; then the totals over the cells that ran here.

    python bench/cell_cost.py /work/bench_raw [--out bench/results/raw_cpu/cost.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def cell_cost(cell: Path) -> dict | None:
    def manifest(*parts: str) -> dict | None:
        path = cell.joinpath(*parts, "manifest.json")
        return json.loads(path.read_text()) if path.exists() else None

    embed = manifest("embed")
    if embed is None:
        return None
    figures: dict = {"cell": f"{cell.parent.name}/{cell.name}", "embed_s": round(embed["seconds"], 1)}
    for sim in sorted(cell.glob("simulate/*/manifest.json")):
        summary = json.loads(sim.read_text())
        workers = max(1, int(summary["summary"].get("parallel_clients", 1)))
        train = summary["summary"]["train_seconds"] / workers
        figures |= {"simulate_s": round(summary["seconds"], 1), "training_s": round(train, 1),
                    "startup_and_server_s": round(summary["seconds"] - train, 1)}
    evaluations = []
    for path in sorted(cell.glob("evaluate/*/*/manifest.json")):
        s = json.loads(path.read_text())["summary"]
        evaluations.append({"evaluation": path.parent.name, "samples": s["samples"], "seconds": round(s["seconds"], 1),
                            "generation_s": s["generation_seconds"], "samples_per_s": s["samples_per_second"]})
    figures["evaluations"] = evaluations
    figures["total_s"] = round(figures["embed_s"] + figures.get("simulate_s", 0.0)
                               + sum(e["seconds"] for e in evaluations), 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # a cell carried over from bench.json has its data stages here but never ran: leave it out
    cells = [c for c in (cell_cost(p) for p in sorted(args.bench_dir.glob("cells/*/*")))
             if c and (c["evaluations"] or "simulate_s" in c)]
    generation = [e for c in cells for e in c["evaluations"]]
    result = {
        "command": f"python bench/cell_cost.py {args.bench_dir}",
        "cells": cells,
        "totals": {
            "cells": len(cells), "seconds": round(sum(c["total_s"] for c in cells), 1),
            "training_s": round(sum(c.get("training_s", 0.0) for c in cells), 1),
            "startup_and_server_s": round(sum(c.get("startup_and_server_s", 0.0) for c in cells), 1),
            "embed_s": round(sum(c["embed_s"] for c in cells), 1),
            "generation_s": round(sum(e["generation_s"] for e in generation), 1),
            "generation_samples_per_s": round(sum(e["samples"] for e in generation)
                                              / max(1e-9, sum(e["generation_s"] for e in generation)), 3),
        },
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
