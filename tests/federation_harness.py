"""A Flower deployment on 127.0.0.1 for tests: a SuperLink and one SuperNode per client, each a
separate process group, with helpers to kill and restart them."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from fedrouter_cli.deploy import (
    Certificates,
    deploy_env,
    parse_run_id,
    parse_status,
    prepare_node_dir,
    run_command,
    status_command,
    write_app,
    write_connection,
)
from fedrouter_cli.rundir import RunDir, client_name

FEDROUTER = [str(Path(sys.executable).with_name("fedrouter"))]
CLIENTS = 3
# a whole smoke federation: 3 SuperNodes share 2 cores and start a ClientApp process (torch, the
# model) for every message; a 2-round TLS run took about 290 s (round 1 saved at 170 s)
RUN_TIMEOUT = 480.0
# each `flwr ls` is a fresh Python process of ~2 s CPU; polling it every second took most of a
# core from the federation, and under that load the SuperLink's SQLite reported "database is locked".
# Waits for something the run writes check that file instead, and the status only this often.
STATUS_INTERVAL = 30.0


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


class Federation:
    """A SuperLink and one SuperNode per client, each in its own process group."""

    def __init__(self, root: Path, run: RunDir, certificates: Certificates | None,
                 keep_link_state: bool = False, enrolled_only: bool = False) -> None:
        self.root, self.run, self.certificates = root, run, certificates
        self.keep_link_state, self.enrolled_only = keep_link_state, enrolled_only
        self.home = root / "flwr_home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = deploy_env({**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "HF_HUB_OFFLINE": "1"}, self.home)
        self.processes: list[subprocess.Popen] = []
        self.nodes: dict[int, subprocess.Popen] = {}
        self.link: subprocess.Popen | None = None
        self.started_elsewhere: list[psutil.Process] = []  # seen at stop(); see _descendants()
        self.port = free_port()
        self.host = "localhost" if certificates else "127.0.0.1"

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "a")
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                   start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def start_link(self) -> None:
        """`fedrouter deploy superlink`, which becomes `flower-superlink`."""
        tls = []
        if self.certificates:
            c = self.certificates
            tls = ["--ca-cert", str(c.ca_cert), "--cert", str(c.server_cert), "--key", str(c.server_key)]
        # a database file keeps the SuperNodes' registrations across a SuperLink restart
        database = ["--database", str(self.root / "link.db")] if self.keep_link_state else []
        enrolled = ["--enrolled-only"] if self.enrolled_only else []
        self.link = self._start("superlink", [*FEDROUTER, "deploy", "superlink", "--host", "127.0.0.1",
                                              "--port", str(self.port), *database, *tls, *enrolled])
        wait_for_port(self.port, self.link)

    def node_dir(self, i: int) -> Path:
        return self.root / f"machine{i}" / client_name(i)

    def start_node(self, i: int) -> subprocess.Popen:
        """`fedrouter deploy supernode` for client i on its own 'machine' folder (made once, kept on
        restart); with a node key in that folder, the node proves it (the command finds it there)."""
        if not self.node_dir(i).exists():
            prepare_node_dir(self.run, client_name(i), self.node_dir(i))
        tls = ["--ca-cert", str(self.certificates.ca_cert)] if self.certificates else []
        process = self._start(f"supernode{i}", [
            *FEDROUTER, "deploy", "supernode", "--superlink", f"{self.host}:{self.port}",
            "--node-dir", str(self.node_dir(i)), "--runtime-port", str(free_port()), *tls])
        if i < CLIENTS:
            self.nodes[i] = process
        return process

    def restart_node(self, i: int, timeout: float = 240.0) -> None:
        """Start client i's SuperNode again after a crash. Its key is enrolled under one node id,
        and the SuperLink refuses that id while it still counts the killed SuperNode as online (until
        its heartbeats are missed), so the node is started again until the SuperLink admits it."""
        log = self.root / f"supernode{i}.log"
        deadline = time.monotonic() + timeout
        while True:
            admitted = log.read_text().count("SuperNode ID:")
            process = self.start_node(i)
            while process.poll() is None and log.read_text().count("SuperNode ID:") == admitted:
                time.sleep(0.5)
            if process.poll() is None:
                return
            assert time.monotonic() < deadline, f"supernode {i} was not admitted again:\n{self.logs()}"
            time.sleep(5)

    def enroll(self, *nodes: int) -> None:
        """`fedrouter deploy enroll` of these nodes' public keys, as the server's operator would."""
        keys = [str(self.node_dir(i) / "supernode.key.pub") for i in nodes]
        done = subprocess.run([*FEDROUTER, "deploy", "enroll", *keys, "--superlink", f"{self.host}:{self.port}",
                               "--ca-cert", str(self.certificates.ca_cert), "--json"],
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def start(self) -> None:
        self.start_link()
        if self.enrolled_only:
            self.enroll(*range(CLIENTS))
        for i in range(CLIENTS):
            self.start_node(i)
        write_connection(self.home, "test", f"{self.host}:{self.port}",
                         self.certificates.ca_cert if self.certificates else None)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL a process and everything it started (a crash, not a shutdown), detached ones too."""
        started = _descendants(process)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=15)
        _kill_all(started)

    def flwr(self, command: list[str]) -> str:
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60, cwd=self.root)
        assert result.returncode == 0, f"{command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        return result.stdout

    def submit(self, **run_config: object) -> int:
        app = write_app(self.root / "app")
        return parse_run_id(self.flwr(run_command(app, "test", self.run.root, torch_threads=1,
                                                  connect_timeout=60.0, **run_config)))

    def wait(self, run_id: int, timeout: float = RUN_TIMEOUT, until=None, poll: float = 1.0) -> str:
        """Poll the run until it finishes (or `until()`, checked every `poll` seconds, is true);
        every process must stay up."""
        deadline = time.monotonic() + timeout
        status, next_status = "", 0.0
        while time.monotonic() < deadline:
            if until is not None and until():
                return status
            if time.monotonic() >= next_status:
                status = parse_status(self.flwr(status_command("test", run_id)))
                next_status = time.monotonic() + STATUS_INTERVAL
                if status.startswith("finished"):
                    return status
            for process in [self.link, *self.nodes.values()]:
                assert process.poll() is None, f"{process.args[0]} exited early:\n{self.logs()}"
            time.sleep(poll)
        raise AssertionError(f"run still {status!r} after {timeout}s:\n{self.logs()}")

    def run_app(self) -> str:
        return self.wait(self.submit())

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        """SIGTERM each process group, then SIGKILL what is left, detached descendants too; idempotent."""
        self.started_elsewhere += [child for process in self.processes for child in _descendants(process)]
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
        _kill_all(self.started_elsewhere)

    def survivors(self) -> list[int]:
        """Processes of this federation still alive after stop(), detached ones included."""
        alive = []
        for child in self.started_elsewhere:
            try:
                if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child.pid)
            except psutil.Error:
                continue
        return leftovers({p.pid for p in self.processes}) + alive


def _descendants(process: subprocess.Popen) -> list[psutil.Process]:
    """Every live process `process` started, also those in sessions of their own (the SuperLink
    detaches its SuperExec, so the ServerApp is outside the SuperLink's process group)."""
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:  # psutil checks the process is the one it saw, so a reused pid is left alone
            process.kill()
            process.wait(timeout=15)
        except psutil.Error:
            pass


def leftovers(groups: set[int]) -> list[int]:
    """Live (non-zombie) processes in the given process groups: SuperLink, SuperNodes and their children."""
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.pid) in groups and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


