"""Differential privacy's price on FLAN: routing accuracy under noisy centroids, ROUGE-1 under
noisy adapter updates (FedRouter, dual scenario, cpu preset).

Centroid noise only changes the clustering, so those runs train 1 round of 1 step and generate
1 token: routing accuracy and global purity are all they measure. Adapter noise needs the full
cpu-preset training and 32-token answers for ROUGE-1.

    python bench/dp_tradeoff.py --source ../shared/data/flan --tasks glue_qqp,web_nlg_en,gigaword,trec
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import write_result  # noqa: E402


def fedrouter(*args: str) -> dict:
    command = [sys.executable, "-m", "fedrouter_cli", *args, "--json"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)


def one_run(prepared: Path, work: Path, name: str, simulate: list[str], evaluate: list[str],
            modes: tuple[str, ...]) -> dict:
    run = work / name
    shutil.copytree(prepared, run, ignore=shutil.ignore_patterns("simulate", "evaluate", "nodes"))
    started = time.perf_counter()
    sim = fedrouter("simulate", "-r", str(run), "--preset", "cpu", *simulate)
    result = {"global_clusters": sim["global_clusters"], "global_purity": sim["global_purity"],
              "loss_by_round": sim["loss_by_round"]}
    for mode in modes:
        scores = fedrouter("evaluate", "-r", str(run), "--mode", mode, *evaluate)
        result |= {f"routing_accuracy_{mode}": scores["routing_accuracy"], f"rouge1_{mode}": scores["rouge1"]}
    return result | {"seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--centroid-epsilons", default="0,0.25,1,4,16")
    parser.add_argument("--update-epsilons", default="0,1000,100000")
    parser.add_argument("--dp-clip", default="1.0")
    parser.add_argument("--merge", action="store_true", help="add to the epsilons already in results/dp_tradeoff.json")
    args = parser.parse_args()
    results: dict = {"centroids": {}, "updates": {}}
    previous = HERE / "results" / "dp_tradeoff.json"
    if args.merge and previous.exists():
        results = {k: json.loads(previous.read_text())[k] for k in results}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared"
        fedrouter("cluster-local", "-r", str(prepared), "--preset", "cpu", "--source", args.source,
                  "--tasks", args.tasks, "--scenario", "dual")
        for eps in filter(None, args.centroid_epsilons.split(",")):
            results["centroids"][eps] = one_run(prepared, Path(tmp), f"c{eps}",
                                                ["--rounds", "1", "--local-steps", "1", "--centroid-epsilon", eps],
                                                ["--max-new-tokens", "1"], ("local", "global"))
            print("centroid epsilon", eps, results["centroids"][eps], flush=True)
        for eps in filter(None, args.update_epsilons.split(",")):
            results["updates"][eps] = one_run(prepared, Path(tmp), f"u{eps}",
                                              ["--dp-epsilon", eps, "--dp-clip", args.dp_clip], [], ("local",))
            print("update epsilon", eps, results["updates"][eps], flush=True)
    write_result("dp_tradeoff", {
        "command": f"python bench/dp_tradeoff.py --source {args.source} --tasks {args.tasks}",
        "setting": "FedRouter, dual scenario, cpu preset; delta 1e-5; epsilon 0 = no noise",
        "update_epsilon_is": "per update a client sends (local DP); 5 rounds compose to 5x under basic composition",
        "dp_clip": float(args.dp_clip), **results})


if __name__ == "__main__":
    main()
