"""Wall time of the same federation on Flower's deployment engine (SuperLink + one SuperNode
process per client on 127.0.0.1) and on its simulation engine (`fedrouter simulate`).

Same run dir contents, settings and seed for both: the smoke preset's data with 3 clients,
3 rounds of 4 local steps. Per-round times come from when each round's checkpoint was written.

    python bench/deploy_vs_sim.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _common import write_result  # noqa: E402
from federation_harness import CLIENTS, Federation  # noqa: E402

from fedrouter_cli.config_file import build_config, load_config, save_config
from fedrouter_cli.presets import resolve_config
from fedrouter_cli.rundir import RunDir  # noqa: E402
from fedrouter_cli.stages.pipeline import prepare  # noqa: E402

SETTINGS = {"data": {"clients": CLIENTS}, "train": {"rounds": 3, "local_steps": 4}}


def round_times(run: RunDir, started: float) -> list[float]:
    ends = sorted(p.stat().st_mtime for p in run.simulate_dir("fedrouter").glob("rounds/r*/state.json"))
    return [round(end - start, 1) for start, end in zip([started, *ends[:-1]], ends)]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prepared = RunDir(Path(tmp) / "prepared")
        config = build_config(resolve_config(prepared.config_path, "smoke", {}), SETTINGS)
        prepare(config, prepared, "cluster-local")
        save_config(prepared.config_path, config)

        sim = RunDir(Path(tmp) / "sim")
        shutil.copytree(prepared.root, sim.root)
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "fedrouter_cli", "simulate", "-r", str(sim.root), "--json"],
                              capture_output=True, text=True, check=True)
        sim_wall = time.time() - started
        sim_out = json.loads(done.stdout)
        sim_rounds = round_times(sim, started)

        deployed = RunDir(Path(tmp) / "deploy" / "run")
        shutil.copytree(prepared.root, deployed.root)
        federation = Federation(Path(tmp) / "deploy", deployed, None)
        try:
            started = time.time()
            federation.start()
            status = federation.wait(federation.submit(), timeout=1800)
            deploy_wall = time.time() - started
        finally:
            federation.stop()
        assert status == "finished:completed", status
        summary = deployed.require("simulate", "fedrouter")["summary"]
        deploy_rounds = round_times(deployed, started)
        assert load_config(deployed.config_path).train.rounds == 3
    write_result("deploy_vs_sim", {
        "command": "python bench/deploy_vs_sim.py",
        "setting": "smoke-preset data, 3 clients, 3 rounds x 4 local steps, FedRouter",
        "simulation": {"wall_seconds": round(sim_wall, 1), "seconds_per_round": sim_rounds,
                       "clients_training_seconds": sim_out["train_seconds"]},
        "deployment": {"wall_seconds": round(deploy_wall, 1), "seconds_per_round": deploy_rounds,
                       "clients_training_seconds": summary["train_seconds"]},
        "ratio_deployment_to_simulation": round(deploy_wall / sim_wall, 2),
    })


if __name__ == "__main__":
    main()
