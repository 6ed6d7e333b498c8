"""The deployment federation of tests/test_deployment.py, run as a background job of the session.

Each node brings its own data: a site's file in its own format and column names, no task column
(own_data.py), made into its node folder by `fedrouter deploy prepare-node --data`; the server's
run dir holds no rows at all (`--source nodes`). The SuperLink admits only enrolled node keys, and
a stranger's SuperNode, whose key nobody enrolled, is refused.

Most of the federation's wall time is waiting: for the SuperLink to notice a killed SuperNode
(Flower's heartbeats, ~30-60 s), for SuperNodes to reconnect to a restarted SuperLink, and for
each message's ClientApp process to start. conftest.py starts this scenario when the session
begins and runs the deployment test last, so the rest of the suite runs in those waits; the test
then checks what the scenario recorded. Under pytest-xdist the scenario runs in the controller,
which otherwise only waits for its workers, so that no worker sits in those waits either; it writes
what it saw to observed.json in its folder, where the worker that runs the test reads it
(`ScenarioElsewhere`). Everything here runs in subprocesses (the stages through the `fedrouter`
CLI), so the session's own torch settings are never touched from this thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
from federation_harness import (
    CLIENTS,
    FEDROUTER,
    Federation,
    leftovers,
    make_certificates,
)
from own_data import write_node_file
from tiny_model import build_tiny_model

from fedrouter_cli.config_file import save_config
from fedrouter_cli.files import atomic_path
from fedrouter_cli.presets import resolve_config
from fedrouter_cli.rundir import RunDir

# Long enough for a ClientApp process (torch, transformers, peft imports) to start and answer on
# 2 loaded cores shared with 3 SuperNodes and the rest of the suite; short against the default
# hour, since the round a node is killed in may close only at this timeout.
FAULT_ROUND_TIMEOUT = 90.0
ROUNDS = 2  # round 1 loses a SuperNode, the SuperLink dies after it is saved, round 2 runs on the restarted link
VICTIM = 2
STRANGER = CLIENTS  # a fourth machine that was never enrolled


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
    stranger_exit: int | None = None  # the unenrolled SuperNode's exit code
    link_log: str = ""
    stranger_log: str = ""

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "run": str(self.run.root)})

    @classmethod
    def from_record(cls, record: dict) -> Observed:
        return cls(**{**record, "run": RunDir(Path(record["run"]))})


OBSERVED = "observed.json"  # what the scenario saw, or the error that ended it


class DeploymentScenario:
    """The scenario in a thread of this process; `tiny_model` is built in its folder when not given."""

    def __init__(self, root: Path, tiny_model: str | None = None, **env: str) -> None:
        self.root, self.tiny_model = root, tiny_model
        self.env = {**os.environ, **env}  # as the session started: no test's changes leak in
        self.observed = Observed(RunDir(root / "run"))
        self.error: BaseException | None = None
        self.federation: Federation | None = None
        self._thread = threading.Thread(target=self._run, name="deployment-scenario", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def join(self, timeout: float) -> bool:
        """Wait for the scenario's thread; whether it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def result(self, timeout: float) -> Observed:
        if not self.join(timeout):
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
            if self.tiny_model is None:
                self.tiny_model = str(build_tiny_model(self.root / "tiny-model"))
            self._scenario()
        except BaseException as exc:  # re-raised in the test by result()
            self.error = exc
        finally:
            if self.federation is not None:
                self.observed.logs = self.federation.logs()
                link_log = self.federation.root / "superlink.log"
                self.observed.link_log = link_log.read_text() if link_log.exists() else ""
                self.federation.stop()
                self.observed.survivors = self.federation.survivors()
            self._publish()

    def _publish(self) -> None:
        """observed.json, for a test in another process; an error goes there as its traceback."""
        if self.error is not None:
            text = json.dumps({"error": "".join(traceback.format_exception(self.error)), "logs": self.observed.logs})
        else:
            text = self.observed.to_json()
        with atomic_path(self.root / OBSERVED) as tmp:
            tmp.write_text(text)

    def _scenario(self) -> None:
        started = time.monotonic()
        run = self.observed.run
        self._prepare_server(run)
        federation = self.federation = Federation(self.root, run, make_certificates(self.root / "certs"),
                                                  keep_link_state=True, enrolled_only=True)
        self._prepare_machines(federation)
        federation.start()
        stranger = federation.start_node(STRANGER)  # holds a key and a folder, but nobody enrolled it
        run_id = federation.submit()
        self.observed.stranger_exit = stranger.wait(timeout=120)
        self.observed.stranger_log = (self.root / f"supernode{STRANGER}.log").read_text()
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
        federation.restart_node(VICTIM)  # on its own folder and key, once the SuperLink lets go of it

        # 2. the SuperLink and the ServerApp it started die after round 1 is saved; the restarted
        # link reads the registrations from its database, and the resubmitted run resumes after
        # round 1. The kill comes within moments of the save, mostly before the SuperNodes pull
        # round 2 (a node busy with a dead run's round holds up the resumed run's first query)
        federation.wait(run_id, timeout=900, until=round_one.exists, poll=0.02)
        federation.kill(federation.link)
        assert not leftovers({federation.link.pid})
        self.observed.round_one_written = round_one.stat().st_mtime_ns
        federation.start_link()  # same address; the SuperNodes reconnect on their own
        # 3. the resubmitted run trains its last round and then has each node score its own test set
        resumed = federation.submit(evaluate=True)
        federation.wait(resumed, timeout=1200, until=run.scores_file("fedrouter", "local+nodes").exists)
        self.observed.status = federation.wait(resumed, timeout=300)  # the run ends once the scores are written
        self.observed.seconds = time.monotonic() - started

    def _prepare_server(self, run: RunDir) -> None:
        """The server's run dir: settings only (--source nodes, 3 clients, smoke preset, tiny model)."""
        config = resolve_config(run.config_path, "smoke", {
            "data": {"clients": CLIENTS, "source": "nodes"}, "model": {"model": self.tiny_model},
            "train": {"rounds": ROUNDS, "round_timeout": FAULT_ROUND_TIMEOUT}})
        save_config(run.config_path, config)
        done = subprocess.run([*FEDROUTER, "cluster-local", "--run-dir", str(run.root), "--json"], env=self.env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]

    def _prepare_machines(self, federation: Federation) -> None:
        """Each "machine" makes its folder from its own file and makes its key; the stranger too."""
        jobs = []
        for i in range(CLIENTS + 1):
            own, columns = write_node_file(self.root / f"site{i}", i % CLIENTS)
            jobs.append(subprocess.Popen(
                [*FEDROUTER, "deploy", "prepare-node", "--client", str(i), "--node-dir", str(federation.node_dir(i)),
                 "--data", str(own), *columns, "--preset", "smoke", "--json"],
                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for job in jobs:
            _, err = job.communicate(timeout=600)
            assert job.returncode == 0, err[-2000:]
        for i in range(CLIENTS + 1):
            done = subprocess.run([*FEDROUTER, "deploy", "node-key", "--node-dir", str(federation.node_dir(i))],
                                  env=self.env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]


class ScenarioElsewhere:
    """The scenario another process of the session runs (the xdist controller): its observed.json."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def result(self, timeout: float) -> Observed:
        path, deadline = self.root / OBSERVED, time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"the deployment scenario in {self.root} did not end within {timeout:.0f}s"
            time.sleep(1.0)
        record = json.loads(path.read_text())
        if "error" in record:
            raise AssertionError(f"the deployment scenario failed (its folder, kept: {self.root}):\n"
                                 f"{record['error']}\n{record['logs']}")
        return Observed.from_record(record)


def _clientapp_pids(node: subprocess.Popen) -> set[int]:
    try:
        return {c.pid for c in psutil.Process(node.pid).children(recursive=True)
                if "clientapp" in " ".join(c.cmdline())}
    except psutil.Error:
        return set()
