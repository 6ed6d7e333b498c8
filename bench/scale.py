"""How the cost grows with the number of clients: partition, embed, cluster-local and simulate
(FedRouter, 10 clients sampled per round, 3 rounds, the tiny random model) for 10, 100 and 1,000
clients of the built-in data, each stage through the CLI as a user runs it.

Records per stage wall time, the wall time of each round (from the saved rounds' times), the peak
resident memory of the whole process tree (sampled every 0.2 s), and the run dir's size; and the
growth from the fewest to the most clients. Target: per-round time at 1,000 clients within 1.5x of
that at 10, memory and disk no faster than linear in the clients.

    python bench/scale.py [--clients 10,100,1000] [--per-round 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import RESULTS, write_result  # noqa: E402

FEDROUTER = [str(Path(sys.executable).with_name("fedrouter"))]


class PeakMemory:
    """Peak summed RSS of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            time.sleep(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def stage(command: list[str]) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen([*FEDROUTER, *command, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    memory = PeakMemory(process.pid)
    out, err = process.communicate()
    peak = memory.stop()
    if process.returncode != 0:
        raise SystemExit(f"`fedrouter {' '.join(command)}` failed:\n{err[-3000:]}")
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": round(peak / 2**20, 1),
            "payload": json.loads(out)}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(clients: int, per_round: int, rounds: int, model: Path, root: Path) -> dict:
    run = root / f"run{clients}"
    data = ["--run-dir", str(run), "--preset", "smoke", "--clients", str(clients), "--scenario", "dual"]
    stages = {"partition": stage(["partition", *data]), "embed": stage(["embed", *data, "--model", str(model)]),
              "cluster-local": stage(["cluster-local", *data, "--model", str(model), "--n-clusters", "tasks"])}
    started = time.time()
    stages["simulate"] = stage(["simulate", *data, "--model", str(model), "--rounds", str(rounds), "--clients-per-round", str(per_round),
                                "--global-clusters", "tasks"])
    saved = sorted((run / "simulate" / "fedrouter" / "rounds").glob("r*/state.json"))
    times = [started, *(p.stat().st_mtime for p in saved)]
    per_round_seconds = [round(b - a, 2) for a, b in zip(times, times[1:])]
    return {"clients": clients, "per_round": per_round, "rounds": rounds,
            "stage_seconds": {name: s["seconds"] for name, s in stages.items()},
            "stage_peak_rss_mb": {name: s["peak_rss_mb"] for name, s in stages.items()},
            "round_seconds": per_round_seconds,
            # round 1 also holds the engine's start and the centroid query; later rounds are the steady cost
            "steady_round_seconds": round(sum(per_round_seconds[1:]) / max(1, len(per_round_seconds) - 1), 2),
            "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
            "run_dir_mb": round(folder_bytes(run) / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10,100,1000")
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replot", action="store_true", help="only redraw scale.png from scale.json")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads((RESULTS / "scale.json").read_text())["rows"])
        return
    from tiny_model import build_tiny_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny-model")
        for count in (int(c) for c in args.clients.split(",")):
            rows.append(measure(count, args.per_round, args.rounds, model, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    first, last = rows[0], rows[-1]
    growth = {"clients": last["clients"] / first["clients"],
              "steady_round_seconds": round(last["steady_round_seconds"] / first["steady_round_seconds"], 2),
              "peak_rss_mb": round(last["peak_rss_mb"] / first["peak_rss_mb"], 2),
              "run_dir_mb": round(last["run_dir_mb"] / first["run_dir_mb"], 2)}
    write_result("scale", {"command": f"python bench/scale.py --clients {args.clients} --per-round {args.per_round} "
                                      f"--rounds {args.rounds}", "rows": rows, "growth": growth,
                           "target": "steady round time growth <= 1.5; memory and disk growth <= the clients' growth"})
    plot(rows)


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = [r["clients"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, key, label in zip(axes, ("steady_round_seconds", "peak_rss_mb", "run_dir_mb"),
                              ("seconds per round", "peak RSS of the process tree (MB)", "run dir (MB)")):
        ax.plot(clients, [r[key] for r in rows], marker="o", label="rounds 2+" if key == "steady_round_seconds" else None)
        if key == "steady_round_seconds":  # round 1 also starts the engine and asks every node for its centroids
            ax.plot(clients, [r["round_seconds"][0] for r in rows], marker="s", label="round 1")
            ax.legend(fontsize=8)
        ax.set_xscale("log")
        if key == "run_dir_mb":
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel("clients (10 train per round)")
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / "scale.png", dpi=110)


if __name__ == "__main__":
    main()
