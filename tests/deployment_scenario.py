"""The deployment federation of tests/test_deployment.py, run as a background job of the session.

Most of the federation's wall time is waiting: for the SuperLink to notice a killed SuperNode
(Flower's heartbeats, ~30-60 s), for SuperNodes to reconnect to a restarted SuperLink, and for
each message's ClientApp process to start. conftest.py starts this scenario when the session
begins and runs the deployment test last, so the rest of the suite runs in those waits; the test
then checks what the scenario recorded. Everything here runs in subprocesses (the stages through
the `fedrouter` CLI), so the session's own torch settings are never touched from this thread.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from federation_harness import (
    CLIENTS,
    FEDROUTER,
    Federation,
    leftovers,
    make_certificates,
)

from fedrouter_cli.config import save_config
from fedrouter_cli.presets import resolve_config
from fedrouter_cli.rundir import RunDir, client_name
from fedrouter_cli.stages.cluster_local import read_centroids

# Long enough for a ClientApp process (torch, transformers, peft imports) to start and answer on
# 2 loaded cores shared with 3 SuperNodes and the rest of the suite; short against the default
# hour, since the round a node is killed in may close only at this timeout.
FAULT_ROUND_TIMEOUT = 90.0
ROUNDS = 2  # round 1 loses a SuperNode, the SuperLink dies after it is saved, round 2 runs on the restarted link
VICTIM = 2


@dataclass
class Observed:
    """What the scenario saw, for the test to check once it has ended."""

    run: RunDir
    killed_at: float = 0.0            # when the SuperNode was killed (time.time())
    round_one_written: int = 0        # round 1's state.json mtime when the SuperLink was killed
    status: str = ""                  # the resubmitted run's final status
    seconds: float = 0.0
    survivors: list[int] = field(default_factory=list)
    logs: str = ""


class DeploymentScenario:
    def __init__(self, root: Path, tiny_model: str) -> None:
        self.root, self.tiny_model = root, tiny_model
        self.env = dict(os.environ)  # as the session started: no test's changes leak in
        self.observed = Observed(RunDir(root / "run"))
        self.error: BaseException | None = None
        self.federation: Federation | None = None
        self._thread = threading.Thread(target=self._run, name="deployment-scenario", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def result(self, timeout: float) -> Observed:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.stop()
            raise AssertionError(f"the deployment scenario did not end within {timeout:.0f}s:\n{self.observed.logs}")
        if self.error is not None:
            raise self.error
        return self.observed

    def stop(self) -> None:
        if self.federation is not None:
            self.federation.stop()

    def _run(self) -> None:
        try:
            self._scenario()
        except BaseException as exc:  # re-raised in the test by result()
            self.error = exc
        finally:
            if self.federation is not None:
                self.observed.logs = self.federation.logs()
                self.federation.stop()
                self.observed.survivors = self.federation.survivors()

    def _scenario(self) -> None:
        started = time.monotonic()
        run = self.observed.run
        self._prepare_server(run)
        federation = self.federation = Federation(self.root, run, make_certificates(self.root / "certs"),
                                                  keep_link_state=True)
        self._prepare_machines(federation)
        federation.start()
        run_id = federation.submit()
        seen: set[int] = set()

        def training_started() -> bool:  # the node's first ClientApp answers the centroid query, the second trains
            seen.update(_clientapp_pids(federation.nodes[VICTIM]))
            return len(seen) >= 2

        # 1. a SuperNode dies mid-round and comes back on the same machine folder under a new node id
        federation.wait(run_id, timeout=600, until=training_started)
        round_one = run.round_dir("fedrouter", 1) / "state.json"
        assert not round_one.exists(), "the kill came after round 1 ended; the test needs it mid-round"
        federation.kill(federation.nodes[VICTIM])
        self.observed.killed_at = time.time()
        federation.start_node(VICTIM)

        # 2. the SuperLink and the ServerApp it started die after round 1 is saved; the restarted
        # link reads the registrations from its database, and the resubmitted run resumes after
        # round 1. The kill comes within moments of the save, mostly before the SuperNodes pull
        # round 2 (a node busy with a dead run's round holds up the resumed run's first query)
        federation.wait(run_id, timeout=900, until=round_one.exists, poll=0.02)
        federation.kill(federation.link)
        assert not leftovers({federation.link.pid})
        self.observed.round_one_written = round_one.stat().st_mtime_ns
        # 3. meanwhile the server forgets every test row and test embedding: the resubmitted run
        # trains its last round and then has each node score its own test set (evaluate=true)
        held = [*run.stage_dir("partition").rglob("test*.parquet"), *run.stage_dir("embed").rglob("test*.parquet")]
        assert held
        for path in held:
            path.unlink()
        federation.start_link()  # same address; the SuperNodes reconnect on their own
        resumed = federation.submit(evaluate=True)
        federation.wait(resumed, timeout=1200, until=run.scores_file("fedrouter", "local+nodes").exists)
        self.observed.status = federation.wait(resumed, timeout=300)  # the run ends once the scores are written
        self.observed.seconds = time.monotonic() - started

    def _prepare_server(self, run: RunDir) -> None:
        """The server's run dir: the data stages on the smoke preset, 3 clients, the tiny model."""
        config = resolve_config(run.config_path, "smoke", {
            "data": {"clients": CLIENTS}, "model": {"model": self.tiny_model},
            "train": {"rounds": ROUNDS, "round_timeout": FAULT_ROUND_TIMEOUT}})
        save_config(run.config_path, config)
        done = subprocess.run([*FEDROUTER, "cluster-local", "--run-dir", str(run.root), "--json"], env=self.env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]

    def _prepare_machines(self, federation: Federation) -> None:
        """Each "machine" makes its own folder from its share of the source, as the README says."""
        jobs = [subprocess.Popen([*FEDROUTER, "deploy", "prepare-node", "--client", str(i), "--node-dir",
                                  str(federation.node_dir(i)), "--preset", "smoke", "--clients", str(CLIENTS),
                                  "--json"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i in range(CLIENTS)]
        for i, job in enumerate(jobs):
            _, err = job.communicate(timeout=600)
            assert job.returncode == 0, err[-2000:]
            made = read_centroids(federation.node_dir(i) / "centroids.parquet")[0]
            server = read_centroids(federation.run.centroids_file(client_name(i)))[0]
            assert made.shape == server.shape and np.allclose(made, server, atol=1e-4)


def _clientapp_pids(node: subprocess.Popen) -> set[int]:
    try:
        return {c.pid for c in psutil.Process(node.pid).children(recursive=True)
                if "clientapp" in " ".join(c.cmdline())}
    except psutil.Error:
        return set()
