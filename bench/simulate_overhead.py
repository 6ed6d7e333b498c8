"""simulate's overhead: wall time of a cpu-preset run against the clients' pure training time.

Pure training time is what the clients measured around their training loops in the same run
(`train_seconds` in metrics.parquet). Peak memory is sampled over the whole process tree
(the CLI, Ray's processes and workers) every 0.5 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def rss_per_round(rounds_dir: Path, timeline: list[tuple[float, int]]) -> dict[str, float]:
    """Peak tree RSS between consecutive round ends (a round ends when its state.json is written),
    to show that memory stays flat over rounds."""
    ends = sorted((int(p.parent.name[1:]), p.stat().st_mtime) for p in rounds_dir.glob("r*/state.json"))
    peaks, start = {}, 0.0
    for number, end in ends:
        window = [rss for t, rss in timeline if start < t <= end]
        if window:
            peaks[str(number)] = round(max(window) / 2**30, 2)
        start = end
    return peaks


def main() -> None:
    extra = sys.argv[1:]  # e.g. --source ../shared/data/flan --tasks ...
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        prepare = [sys.executable, "-m", "fedrouter_cli", "cluster-local", "--run-dir", str(run_dir), "--preset", "cpu", *extra]
        subprocess.run(prepare, check=True, capture_output=True)
        command = [sys.executable, "-m", "fedrouter_cli", "simulate", "--run-dir", str(run_dir), "--preset", "cpu", "--json"]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        peak, watcher, timeline = [0], psutil.Process(process.pid), []

        def sample() -> None:
            while process.poll() is None:
                rss = tree_rss(watcher)
                peak[0] = max(peak[0], rss)
                timeline.append((time.time(), rss))
                time.sleep(0.5)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        stdout, _ = process.communicate()
        wall = time.perf_counter() - started
        thread.join()
        out = json.loads(stdout)
        metrics = pq.read_table(out["metrics_path"]).to_pylist()
        training = sum(m["train_seconds"] for m in metrics)
        per_round = {}
        for m in metrics:
            per_round[m["round"]] = per_round.get(m["round"], 0.0) + m["train_seconds"]
        peak_per_round = rss_per_round(Path(out["metrics_path"]).parent / "rounds", timeline)
    write_result("simulate_overhead", {
        "command": " ".join(["fedrouter simulate --preset cpu", *extra]),
        "wall_seconds_cli": round(wall, 1), "stage_seconds": out["seconds"],
        "clients_training_seconds": round(training, 1),
        "ratio_cli_wall_to_training": round(wall / training, 3),
        "ratio_stage_to_training": round(out["seconds"] / training, 3),
        "training_seconds_per_round": {str(k): round(v, 1) for k, v in sorted(per_round.items())},
        "load_average_1min": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "global_clusters": out["global_clusters"], "global_purity": out["global_purity"],
        "loss_by_round": out["loss_by_round"],
        "client_peak_rss_mb_by_round": out.get("client_peak_rss_mb_by_round"),
        "peak_rss_gib": round(peak[0] / 2**30, 2),
        "peak_rss_gib_per_round": peak_per_round, "rounds": out["rounds_completed"], "jobs": len(metrics),
    })


if __name__ == "__main__":
    main()
