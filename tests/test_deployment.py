"""The same ClientApp on Flower's deployment engine: a SuperLink and 3 SuperNodes as processes."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fedrouter_cli.config import load_config, resolve_config, save_config
from fedrouter_cli.deploy import (
    Certificates,
    deploy_env,
    parse_run_id,
    parse_status,
    prepare_node_dir,
    run_command,
    status_command,
    superlink_command,
    supernode_command,
    write_app,
    write_connection,
)
from fedrouter_cli.rundir import RunDir, client_name

CLIENTS = 3
RUN_TIMEOUT = 170.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the SuperLink exited at start-up"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


def make_certificates(folder: Path) -> Certificates:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedrouter test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(start).not_valid_after(end)
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    certs = Certificates(folder / "ca.crt", folder / "server.pem", folder / "server.key")
    certs.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    certs.server_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    return certs


@pytest.fixture(scope="module")
def deploy_data(tmp_path_factory) -> Path:
    """A run dir with the data stages done on the smoke preset, with 3 clients."""
    from fedrouter_cli.pipeline import prepare

    run = RunDir(tmp_path_factory.mktemp("deploy") / "run")
    config = resolve_config(run.config_path, "smoke", {"data": {"clients": CLIENTS}})
    prepare(config, run, "cluster-local")
    save_config(run.config_path, config)
    return run.root


class Federation:
    """A SuperLink and one SuperNode per client, each in its own process group."""

    def __init__(self, root: Path, run: RunDir, certificates: Certificates | None) -> None:
        self.root, self.run, self.certificates = root, run, certificates
        self.home = root / "flwr_home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = deploy_env({**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "HF_HUB_OFFLINE": "1"}, self.home)
        self.processes: list[subprocess.Popen] = []
        self.port = free_port()

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                   start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def start(self) -> None:
        link = self._start("superlink", superlink_command("127.0.0.1", self.port, self.certificates))
        wait_for_port(self.port, link)
        host = "localhost" if self.certificates else "127.0.0.1"
        ca = self.certificates.ca_cert if self.certificates else None
        for i in range(CLIENTS):
            client = client_name(i)
            data_dir = prepare_node_dir(self.run, client, self.root / f"machine{i}" / client)
            self._start(f"supernode{i}", supernode_command(f"{host}:{self.port}", data_dir, ca,
                                                           runtime_port=free_port()))
        write_connection(self.home, "test", f"{host}:{self.port}", ca)

    def flwr(self, command: list[str]) -> str:
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60, cwd=self.root)
        assert result.returncode == 0, f"{command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        return result.stdout

    def run_app(self) -> str:
        app = write_app(self.root / "app")
        run_id = parse_run_id(self.flwr(run_command(app, "test", self.run.root, torch_threads=1,
                                                    connect_timeout=60.0)))
        deadline = time.monotonic() + RUN_TIMEOUT
        status = ""
        while time.monotonic() < deadline:
            status = parse_status(self.flwr(status_command("test", run_id)))
            if status.startswith("finished"):
                return status
            for process in self.processes:
                assert process.poll() is None, f"{process.args[0]} exited early:\n{self.logs()}"
            time.sleep(2)
        raise AssertionError(f"run still {status!r} after {RUN_TIMEOUT}s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        """SIGTERM each process group, then SIGKILL what is left; idempotent."""
        for process in reversed(self.processes):  # SuperNodes first, then the SuperLink
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever the group started (SuperExec, ServerApp, ClientApps) goes too
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=15)


def leftovers(groups: set[int]) -> list[int]:
    """Live (non-zombie) processes in the given process groups: SuperLink, SuperNodes and their children."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.pid) in groups and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


@pytest.fixture
def federation(deploy_data: Path, tmp_path: Path, request):
    run_dir = tmp_path / "run"
    shutil.copytree(deploy_data, run_dir)
    certificates = make_certificates(tmp_path / "certs") if request.param == "tls" else None
    federation = Federation(tmp_path, RunDir(run_dir), certificates)
    try:
        yield federation
    finally:
        federation.stop()
        assert all(p.poll() is not None for p in federation.processes)
        assert not leftovers({p.pid for p in federation.processes}), "Flower processes outlived the test"


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("federation", ["insecure", "tls"], indirect=True)
def test_deployment_engine_runs_fedrouter(federation: Federation) -> None:
    started = time.monotonic()
    federation.start()
    status = federation.run_app()
    assert status == "finished:completed", f"run ended {status}:\n{federation.logs()}"
    seconds = time.monotonic() - started
    federation.stop()  # free the cores for evaluate; the fixture checks nothing is left
    run = federation.run
    config = load_config(run.config_path)
    out = run.simulate_dir("fedrouter")
    manifest = run.require("simulate", "fedrouter")
    assert manifest["summary"]["rounds_completed"] == config.train.rounds == 2
    assert manifest["summary"]["failed_jobs"] == 0
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    assert {m["round"] for m in metrics} == {1, 2}
    assert {m["client"] for m in metrics} == set(range(CLIENTS)) and all(m["status"] == "ok" for m in metrics)
    adapters = sorted((out / "rounds" / "r0002" / "adapters").iterdir())
    assert adapters and all((a / "adapter_model.safetensors").exists() for a in adapters)
    # each SuperNode read only its own folder; the run dir's shared nodes/ folder was never made
    assert not run.stage_dir("nodes").exists()

    from fedrouter_cli.stages.evaluate import run_evaluate

    scores = run_evaluate(config, run)
    assert scores.summary["samples"] == CLIENTS * config.data.test_per_client
    assert 0.0 <= scores.summary["rougeL"] <= 1.0
    assert set(scores.summary["per_client"]) == {client_name(i) for i in range(CLIENTS)}
    print(f"deployment federation ({'tls' if federation.certificates else 'insecure'}): run {seconds:.1f}s, "
          f"evaluate {time.monotonic() - started - seconds:.1f}s")
