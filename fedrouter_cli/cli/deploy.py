"""`fedrouter deploy ...`: Flower's deployment engine, one SuperLink and a SuperNode per client.

    fedrouter deploy prepare-node --client 3 --node-dir /data/fedrouter/c03 ...   # on client machine 3
    fedrouter deploy supernode --superlink SERVER:9093 --node-dir /data/fedrouter/c03
    fedrouter deploy superlink                                                      # on the server
    fedrouter deploy submit --run-dir /abs/RUN --superlink SERVER:9093 --wait       # from anywhere
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute, guarded, show_warnings
from fedrouter_cli.errors import FedrouterError

deploy_app = typer.Typer(help="Run across machines on Flower's deployment engine (SuperLink + one SuperNode per client).",
                         no_args_is_help=True, add_completion=False, rich_markup_mode=None)

ClientOpt = Annotated[int, typer.Option("--client", help="This machine's client number (0-based).")]
NodeDirOpt = Annotated[Path, typer.Option("--node-dir", help="The SuperNode's data folder, named for its client: "
                                                             "c03 (or node-3) for client 3, e.g. /data/fedrouter/c03.")]
SuperlinkOpt = Annotated[str, typer.Option("--superlink", help="The SuperLink's HOST:PORT.")]
CaCertOpt = Annotated[Optional[Path], typer.Option("--ca-cert", help="CA certificate for TLS; omit for insecure (trusted networks only).")]
CertOpt = Annotated[Optional[Path], typer.Option("--cert", help="The SuperLink's TLS certificate (with --ca-cert and --key).")]
KeyOpt = Annotated[Optional[Path], typer.Option("--key", help="The SuperLink's TLS private key.")]


def _existing(*paths: Path | None) -> None:
    for path in paths:
        if path is not None and not Path(path).is_file():
            raise FedrouterError(f"{path} does not exist or is not a file; pass the right path.")


def _connection_env(superlink_address: str, ca_cert: Path | None) -> dict[str, str]:
    """Write the `fedrouter` SuperLink connection to $FLWR_HOME (where Flower's CLI reads it) and
    return the environment for `flwr` commands against it."""
    from fedrouter_cli.deploy import deploy_env, write_connection

    home = Path(os.environ.get("FLWR_HOME", Path.home() / ".flwr"))
    write_connection(home, "fedrouter", superlink_address, ca_cert, default=False)
    return deploy_env(flwr_home=home)


def _exec(command: list[str]) -> None:
    """Become the Flower process (signals and exit code are then the Flower process's own)."""
    from fedrouter_cli.deploy import deploy_env

    sys.stdout.flush()
    os.execvpe(command[0], command, deploy_env())


@deploy_app.command("prepare-node")
@o.with_options(o.EMBED_OPTIONS, o.CLUSTER_OPTIONS, o.DATA_OPTIONS, {"json_out": o.JsonOpt, "debug": o.DebugOpt})
def prepare_node(client: ClientOpt, node_dir: NodeDirOpt, preset: o.PresetOpt = None,
                 data: Annotated[Optional[Path], typer.Option(
                     "--data", help="This node's own records: a JSONL, JSON, CSV or Parquet file, a folder of them, "
                                    "or a datasets save_to_disk folder (map columns with --instruction-column, "
                                    "--response-column, --input-column, --task-column). They never leave this "
                                    "machine; the server runs with --source nodes. Without --data the node takes "
                                    "its share of the shared --source.")] = None, *,
                 shared: dict[str, Any]) -> None:
    """Make this client's SuperNode folder on its own machine (its train and test rows, their
    embeddings, local clusters), with the same settings and seed as the server's run."""
    if data is not None:  # before the config, whose own check of --client-column would name the wrong fix
        with guarded(shared["debug"]):
            from fedrouter_cli.stages.prepare_node import check_own_data_options

            check_own_data_options(shared.get("source") is not None, shared.get("client_column") or "")

    def action(cfg, run, progress):
        from fedrouter_cli.stages.prepare_node import prepare_node as make

        return make(cfg, client, node_dir, progress, data)

    def render(payload: dict[str, Any], console: Console) -> None:
        purity = "" if payload["purity"] is None else f", purity {payload['purity']}"
        console.print(f"{payload['client']}: {payload['rows']} train and {payload['test_rows']} test rows, "
                      f"K={payload['k']} (sizes {payload['sizes']}){purity} -> {payload['node_dir']}", highlight=False)
        show_warnings(console, payload.get("warnings", []))

    execute(run_dir=node_dir, json_out=shared["json_out"], debug=shared["debug"], preset=preset,
            overrides=o.upstream_overrides(shared), action=action, render=render)


@deploy_app.command("node-dir")
def node_dir_command(run_dir: o.RunDirOpt, client: ClientOpt, node_dir: NodeDirOpt, debug: o.DebugOpt = False) -> None:
    """Copy one client's node files from a server run dir (when the server prepared all clients)."""
    from fedrouter_cli.deploy import prepare_node_dir
    from fedrouter_cli.rundir import RunDir, client_name

    with guarded(debug):
        print(prepare_node_dir(RunDir(run_dir), client_name(client), node_dir))


@deploy_app.command("superlink")
def superlink(host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
              port: Annotated[int, typer.Option(help="Port for SuperNodes, `flwr` and the ServerApp.")] = 9093,
              ca_cert: CaCertOpt = None, cert: CertOpt = None, key: KeyOpt = None,
              database: Annotated[Optional[Path], typer.Option(help="SQLite file for the SuperLink's state.")] = None,
              enrolled_only: Annotated[bool, typer.Option(
                  "--enrolled-only", help="Admit only SuperNodes whose public key was enrolled with `fedrouter "
                                          "deploy enroll` (Flower's SuperNode authentication; needs TLS). Without "
                                          "it, any machine that reaches the port and holds the CA certificate joins.")] = False,
              debug: o.DebugOpt = False) -> None:
    """Start the SuperLink (runs the FedRouter ServerApp of each submitted run)."""
    from fedrouter_cli.deploy import Certificates, superlink_command

    with guarded(debug):
        given = [p for p in (ca_cert, cert, key) if p is not None]
        if given and len(given) != 3:
            raise FedrouterError("TLS needs all three of --ca-cert, --cert and --key (or none of them for insecure).")
        _existing(*given)
        certificates = Certificates(ca_cert, cert, key) if given else None
        _exec(superlink_command(host, port, certificates, database, enrolled_only=enrolled_only))


@deploy_app.command("supernode")
def supernode(superlink_address: SuperlinkOpt, node_dir: NodeDirOpt, ca_cert: CaCertOpt = None,
              runtime_port: Annotated[int, typer.Option(help="Local port for the ClientApp; unique per machine.")] = 9094,
              node_key: Annotated[Optional[Path], typer.Option(
                  "--node-key", help="This node's private key, for a SuperLink started with --enrolled-only; "
                                     "without it, NODE_DIR/supernode.key is used when `fedrouter deploy node-key` "
                                     "made one.")] = None,
              debug: o.DebugOpt = False) -> None:
    """Start this client's SuperNode, reading only its own --node-dir."""
    from fedrouter_cli.deploy import NODE_KEY, supernode_command
    from fedrouter_cli.rundir import NodeDir

    with guarded(debug):
        missing = [f.name for f in NodeDir(node_dir).train_files if not f.is_file()]
        if missing:
            raise FedrouterError(f"{node_dir} lacks {', '.join(missing)}; run `fedrouter deploy prepare-node` first.")
        _existing(ca_cert, node_key)
        if node_key is None and (Path(node_dir) / NODE_KEY).is_file():
            node_key = Path(node_dir) / NODE_KEY
        if node_key is not None and ca_cert is None:
            raise FedrouterError("A node proves its key only over TLS; pass --ca-cert too.")
        _exec(supernode_command(superlink_address, node_dir, ca_cert, runtime_port, node_key=node_key))


@deploy_app.command("node-key")
def node_key_command(node_dir: NodeDirOpt, json_out: o.JsonOpt = False, debug: o.DebugOpt = False) -> None:
    """Make this node's key pair (NODE_DIR/supernode.key, private; supernode.key.pub, to give the
    server's operator for `fedrouter deploy enroll`). An existing key is kept, never replaced."""
    from fedrouter_cli.deploy import make_node_key

    with guarded(debug):
        private, public = make_node_key(node_dir)
        payload = {"private_key": str(private), "public_key": str(public)}
        print(json.dumps(payload) if json_out else f"{private} (keep it here)\n{public} (send it to the server's "
                                                   "operator to enroll)")


@deploy_app.command("enroll")
def enroll(public_keys: Annotated[list[Path], typer.Argument(help="Public key files (supernode.key.pub) of the "
                                                                   "nodes to admit.", show_default=False)],
           superlink_address: SuperlinkOpt, ca_cert: CaCertOpt = None,
           json_out: o.JsonOpt = False, debug: o.DebugOpt = False) -> None:
    """Admit nodes to a SuperLink started with --enrolled-only (Flower's `flwr supernode
    register`); a node whose key is not enrolled is refused, and the SuperLink logs the refusal."""
    import subprocess

    from fedrouter_cli.deploy import enroll_command

    with guarded(debug):
        _existing(ca_cert, *public_keys)
        if ca_cert is None:
            raise FedrouterError("Enrolled nodes need TLS; pass the SuperLink's --ca-cert.")
        env = _connection_env(superlink_address, ca_cert)
        enrolled = []
        for key in public_keys:
            done = subprocess.run(enroll_command(key, "fedrouter"), env=env,
                                  capture_output=True, text=True, timeout=120)
            reply = done.stdout[done.stdout.find("{"):] if "{" in done.stdout else ""
            node_id = json.loads(reply).get("node-id") if done.returncode == 0 and reply else None
            if node_id is None:
                raise FedrouterError(f"The SuperLink did not enroll {key}: "
                                     f"{(done.stdout + done.stderr).strip()[-300:]}")
            enrolled.append({"public_key": str(key), "node_id": int(node_id)})
        print(json.dumps(enrolled) if json_out else "\n".join(f"{e['public_key']}: node {e['node_id']}" for e in enrolled))


@deploy_app.command("submit")
def submit(run_dir: o.RunDirOpt, superlink_address: SuperlinkOpt, ca_cert: CaCertOpt = None,
           wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the run to finish.")] = False,
           num_nodes: Annotated[int, typer.Option(help="SuperNodes to wait for (0 = the run's clients).")] = 0,
           timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 24 * 3600.0,
           stage: Annotated[str, typer.Option(
               help="simulate: train the federation. evaluate: each SuperNode scores its own test set with "
                    "the saved adapters and returns per-task sums; scores land in the server's run dir.")] = "simulate",
           then_evaluate: Annotated[bool, typer.Option(
               "--evaluate/--no-evaluate", help="After training, evaluate on the nodes in the same run.")] = False,
           mode: o.ModeOpt = None, alg: o.AlgOpt = None,
           json_out: o.JsonOpt = False, debug: o.DebugOpt = False) -> None:
    """Submit the run dir's federation to the SuperLink (`flwr run`); the SuperLink machine's
    --run-dir must hold the config (run `fedrouter cluster-local` there first). With --stage
    evaluate (or --evaluate) the nodes score themselves: no test text reaches the server."""
    import subprocess

    from fedrouter_cli.deploy import (
        parse_run_id,
        parse_status,
        run_command,
        status_command,
        write_app,
    )

    with guarded(debug):
        _existing(ca_cert)
        if stage not in ("simulate", "evaluate"):
            raise FedrouterError(f"--stage must be simulate or evaluate, got {stage!r}.")
        if not run_dir.is_absolute():
            raise FedrouterError(f"--run-dir must be an absolute path on the SuperLink machine, got {run_dir}.")
        env = _connection_env(superlink_address, ca_cert)

        def flwr(command: list[str]) -> str:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise FedrouterError(f"`{' '.join(command[:3])}` failed: {(done.stdout + done.stderr).strip()[-300:]}")
            return done.stdout

        with tempfile.TemporaryDirectory() as tmp:
            run_id = parse_run_id(flwr(run_command(write_app(Path(tmp) / "app"), "fedrouter", run_dir,
                                                   num_nodes=num_nodes, stage=stage, evaluate=then_evaluate,
                                                   eval_mode=mode or "",
                                                   **({"alg" if stage == "simulate" else "eval_alg": alg} if alg else {}))))
        status, deadline = "submitted", time.monotonic() + timeout
        while wait and not status.startswith("finished") and time.monotonic() < deadline:
            time.sleep(5)
            status = parse_status(flwr(status_command("fedrouter", run_id)))
        payload = {"run_id": run_id, "status": status, "run_dir": str(run_dir)}
        print(json.dumps(payload) if json_out else f"run {run_id}: {status} (`flwr ls fedrouter --run-id {run_id}`)")
        if wait and status != "finished:completed":
            raise typer.Exit(1)
