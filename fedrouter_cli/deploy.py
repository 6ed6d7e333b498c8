"""Flower deployment engine: commands to start a SuperLink, one SuperNode per client, and the run.

The simulation engine (`fedrouter simulate`) runs every client inside one process tree. The
deployment engine runs the same ClientApp on real, separate SuperNodes (one per client, each
with its own data-dir holding only that client's files) connected to one SuperLink, which runs
the ServerApp `fedrouter_cli.stages.server_app:app`. The server writes its rounds to
<run-dir>/simulate/<alg>/ exactly like `fedrouter simulate`, so `fedrouter evaluate` works after.

These are plain functions returning argv lists and environments; the caller starts the
processes (a shell, systemd, or subprocess.Popen in tests). Every machine needs this package
installed: apps are run from the installed package, never installed at run time.

    python -m fedrouter_cli.deploy app DIR                      # write the Flower app folder
    python -m fedrouter_cli.deploy node-dir RUN_DIR CLIENT DEST # copy one client's node files
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import copy_files
from fedrouter_cli.rundir import TEST_SPLITS, NodeDir, RunDir, client_index

SERVER_APP = "fedrouter_cli.stages.server_app:app"
CLIENT_APP = "fedrouter_cli.federation.client_app:app"
APP_NAME = "fedrouter-deploy"
DEFAULT_SUPERLINK_PORT = 9093
DEFAULT_SUPERNODE_PORT = 9094  # each SuperNode's local runtime API (ClientApp <-> SuperNode)

# run_config keys of the app (all overridable with `flwr run -c 'key=value'`)
RUN_CONFIG_DEFAULTS: dict[str, object] = {
    "run-dir": "",            # the server's run directory (absolute path on the SuperLink machine)
    "alg": "",                # algorithm; "" = the run dir's config.toml
    "num-nodes": 0,           # SuperNodes to wait for; 0 = the run's number of clients
    "connect-timeout": 600.0,  # seconds to wait for all SuperNodes
    "torch-threads": 0,       # torch threads per ClientApp; 0 = torch's default
    "force": False,           # start over even if this run already finished
    "stage": "simulate",      # simulate (train), or evaluate: each SuperNode scores its own test set
    "evaluate": False,        # after training, evaluate on the nodes in the same run
    "eval-mode": "",          # router mode of that evaluation; "" = the run dir's config.toml
    "eval-alg": "",           # what to evaluate (an algorithm or 'base'); "" = the trained one
}


@dataclass(frozen=True)
class Certificates:
    """TLS files: the CA certificate (given to SuperNodes and `flwr`), the SuperLink's cert and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _bin(name: str) -> str:
    """A Flower executable next to this Python (the venv's), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def deploy_env(base: dict[str, str] | None = None, flwr_home: Path | None = None) -> dict[str, str]:
    """Environment for every Flower process: no telemetry, no dependency install, offline hub.

    PATH starts with this Python's bin folder, because the SuperLink starts `flower-superexec`
    and the SuperNodes start `flwr-clientapp` by name.
    """
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


def superlink_command(host: str = "0.0.0.0", port: int = DEFAULT_SUPERLINK_PORT,
                      certificates: Certificates | None = None, database: Path | None = None,
                      log_file: Path | None = None, enrolled_only: bool = False) -> list[str]:
    """`flower-superlink`: one HTTP port serves SuperNodes (Fleet API), `flwr` (Control API) and
    the ServerApp it starts itself (subprocess isolation). Without certificates it runs insecure.
    enrolled_only: Flower's SuperNode authentication; only nodes whose public key was enrolled
    (enroll_command) may connect, each proving its key by signing its requests (needs TLS)."""
    if enrolled_only and certificates is None:
        raise FedrouterError("Admitting only enrolled nodes needs TLS (a node proves its key over it); "
                             "pass --ca-cert, --cert and --key.")
    cmd = [_bin("flower-superlink"), "--host", host, "--port", str(port),
           "--disable-runtime-dependency-installation"]
    if certificates is None:
        cmd.append("--insecure")
    else:
        cmd += ["--ssl-ca-certfile", str(certificates.ca_cert), "--ssl-certfile", str(certificates.server_cert),
                "--ssl-keyfile", str(certificates.server_key)]
    if database is not None:
        cmd += ["--database", str(database)]
    if log_file is not None:
        cmd += ["--log-file", str(log_file)]
    if enrolled_only:
        cmd.append("--enable-supernode-auth")
    return cmd


def supernode_command(superlink: str, data_dir: Path, ca_cert: Path | None = None,
                      runtime_port: int = DEFAULT_SUPERNODE_PORT, max_retries: int | None = None,
                      node_key: Path | None = None) -> list[str]:
    """`flower-supernode` for one client. `superlink` is HOST:PORT; `data_dir` is the folder
    written by `prepare_node_dir` (its name ends in the client's number, e.g. .../c03).
    `runtime_port` must differ between SuperNodes on the same machine. `node_key`: the node's
    private key (make_node_key), for a SuperLink that admits only enrolled nodes."""
    cmd = [_bin("flower-supernode"), "--superlink", superlink,
           "--node-config", f"data-dir={json.dumps(str(Path(data_dir).resolve()))}",
           "--port", str(runtime_port)]
    cmd += ["--root-certificates", str(ca_cert)] if ca_cert is not None else ["--insecure"]
    if max_retries is not None:
        cmd += ["--max-retries", str(max_retries)]
    if node_key is not None:
        cmd += ["--auth-supernode-private-key", str(Path(node_key).resolve())]
    return cmd


NODE_KEY = "supernode.key"  # beside it, NODE_KEY + ".pub": the public half the server enrolls


def make_node_key(folder: Path) -> tuple[Path, Path]:
    """A SuperNode's identity: an EC P-384 key pair in OpenSSH format (what Flower reads), the
    private half readable by its owner only. An existing key is never replaced."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = Path(folder)
    private, public = folder / NODE_KEY, folder / (NODE_KEY + ".pub")
    if private.exists() or public.exists():
        raise FedrouterError(f"{folder} already holds a node key ({NODE_KEY}); a node keeps its key, since the "
                             "server enrolled its public half. Delete it first to make a new identity.")
    key = ec.generate_private_key(ec.SECP384R1())
    folder.mkdir(parents=True, exist_ok=True)
    opener = lambda path, flags: os.open(path, flags, 0o600)  # noqa: E731 (private from its first byte)
    with open(private, "wb", opener=opener) as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public


def enroll_command(public_key: Path, connection: str) -> list[str]:
    """`flwr supernode register`: the SuperLink (through its connection in $FLWR_HOME) admits the
    node holding this public key's private half."""
    return [_bin("flwr"), "supernode", "register", str(Path(public_key).resolve()), connection, "--format", "json"]


def prepare_node_dir(run: RunDir, client: str, dest: Path) -> Path:
    """Copy one client's node files (train rows, local clusters, centroids, and the test rows with
    the embeddings `evaluate --on nodes` needs) into `dest`.

    The ClientApp learns its client index from the folder name, so `dest` must be named for it
    (e.g. /data/fedrouter/c03 for client c03; rundir.client_index).
    """
    dest = Path(dest)
    node = NodeDir(dest)
    if node.client is None or node.client != client_index(client):
        raise FedrouterError(f"The node folder for {client} must be named after it (e.g. .../{client}), got {dest}.")
    needed = run.node_files(client, node)
    for source in needed.values():
        if not source.exists():
            raise FedrouterError(f"{source} is missing; run `fedrouter cluster-local` on {run.root} first.")
    # and, where the server still holds them, what the node needs to score itself
    scoring = {target: source for target, source in run.node_files(client, node, TEST_SPLITS).items()
               if target not in needed and source.exists()}
    copy_files({**needed, **scoring})
    return dest


def write_app(dest: Path) -> Path:
    """Write the Flower app folder `flwr run` submits: only a pyproject.toml naming the installed
    ServerApp and ClientApp (the code itself comes from this package on each machine)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    project = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {"name": APP_NAME, "version": "1.0.0", "description": "FedRouter on the Flower deployment engine",
                    "license": "Apache-2.0", "dependencies": ["fedrouter"]},
        "tool": {"flwr": {"app": {"publisher": "fedrouter",
                                  "components": {"serverapp": SERVER_APP, "clientapp": CLIENT_APP},
                                  "config": dict(RUN_CONFIG_DEFAULTS)}}},
    }
    (dest / "pyproject.toml").write_text(tomli_w.dumps(project))
    return dest


def write_connection(flwr_home: Path, name: str, address: str, ca_cert: Path | None = None,
                     default: bool = True) -> Path:
    """Add (or replace) a SuperLink connection `name` in $FLWR_HOME/config.toml for `flwr run/ls/stop`."""
    path = Path(flwr_home) / "config.toml"
    data = tomllib.loads(path.read_text()) if path.exists() else {}
    links = data.setdefault("superlink", {})
    entry: dict[str, object] = {"address": address}
    if ca_cert is None:
        entry["insecure"] = True
    else:
        entry["root-certificates"] = str(Path(ca_cert).resolve())
    links[name] = entry
    if default or "default" not in links:
        links["default"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data))
    return path


def _toml_value(value: object) -> str:
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def run_command(app_dir: Path, connection: str, run_dir: Path, **overrides: object) -> list[str]:
    """`flwr run` of the app against a SuperLink connection; prints JSON with the run id.

    `overrides` are run_config keys with '_' for '-', e.g. num_nodes=3, torch_threads=1.
    """
    config = {"run-dir": str(Path(run_dir).resolve())}
    for key, value in overrides.items():
        name = key.replace("_", "-")
        if name not in RUN_CONFIG_DEFAULTS:
            raise FedrouterError(f"Unknown run config key {name!r}; known: {', '.join(RUN_CONFIG_DEFAULTS)}.")
        config[name] = value
    pairs = " ".join(f"{k}={_toml_value(v)}" for k, v in config.items())
    return [_bin("flwr"), "run", str(app_dir), connection, "--run-config", pairs, "--format", "json"]


def status_command(connection: str, run_id: int | str) -> list[str]:
    """`flwr ls` of one run, as JSON (status: pending, starting, running, finished:<result>)."""
    return [_bin("flwr"), "ls", connection, "--run-id", str(run_id), "--format", "json"]


def parse_run_id(stdout: str) -> int:
    """The run id in `flwr run --format json` output."""
    data = json.loads(stdout[stdout.index("{"):])
    if not data.get("success") or not data.get("run-id"):
        raise FedrouterError(f"flwr run did not start a run: {stdout.strip()[-500:]}")
    return int(data["run-id"])


def parse_status(stdout: str) -> str:
    """The status of the (single) run in `flwr ls --run-id N --format json` output."""
    data = json.loads(stdout[stdout.index("{"):])
    runs = data.get("runs") or []
    if not runs:
        raise FedrouterError(f"flwr ls returned no run: {stdout.strip()[-500:]}")
    return str(runs[0].get("status", ""))


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fedrouter_cli.deploy", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    app = sub.add_parser("app", help="write the Flower app folder for `flwr run`")
    app.add_argument("dest", type=Path)
    node = sub.add_parser("node-dir", help="copy one client's node files into its SuperNode data-dir")
    node.add_argument("run_dir", type=Path)
    node.add_argument("client", help="client name, e.g. c03")
    node.add_argument("dest", type=Path, help="folder named after the client, e.g. /data/fedrouter/c03")
    args = parser.parse_args(argv)
    if args.cmd == "app":
        print(write_app(args.dest))
    else:
        print(prepare_node_dir(RunDir(args.run_dir), args.client, args.dest))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
