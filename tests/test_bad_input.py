"""A bad-input sweep over every subcommand: exit 2, one `Error: ...` sentence naming the problem,
no traceback, and nothing written: the run dir (and everything beside it) stays as it was.

Each case is a command line, what the run dir holds beforehand (`base`), how the input is
spoiled, and words the error must contain. Cases run in-process through Typer's CliRunner and
none starts a Flower simulation or loads a language model. The ones that need a finished
FedRouter run get the files generate, export and evaluate check before loading any model
(`_finished_simulation`) instead of a real simulation, which takes minutes on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fedrouter_cli.cli.app import app
from fedrouter_cli.files import write_json
from fedrouter_cli.rundir import RunDir, client_name

Spoil = Callable[[Path], None]  # gets the sandbox: <tmp>/run is the run dir


@dataclass(frozen=True)
class Case:
    args: str            # split on spaces after filling {run}, {tmp}, {src}
    message: str         # must appear in the `Error:` line
    base: str = "smoke"  # the run dir: smoke (data stages done), empty, simulated (+ a finished FedRouter run)
    spoil: Spoil | None = None
    prompt: str | None = None  # a last argument that may hold spaces or surrogates


# -- spoilers ---------------------------------------------------------------------------------
def _write(relative: str, data: bytes) -> Spoil:
    def spoil(tmp: Path) -> None:
        path = tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return spoil


def _source(tmp: Path) -> None:
    """A good JSONL source at <tmp>/src (tasks a and b) for the partition cases to spoil."""
    for task in ("a", "b"):
        for split in ("train", "test"):
            rows = [json.dumps({"instruction": f"{task} {split} {i}", "response": "ok"}) for i in range(6)]
            _write(f"src/{task}/{split}.jsonl", ("\n".join(rows) + "\n").encode())(tmp)


def _source_with(relative: str, data: bytes) -> Spoil:
    return lambda tmp: (_source(tmp), _write(f"src/{relative}", data)(tmp))


def _config_line(old: str, new: str) -> Spoil:
    """Edit one line of the run's config.toml, as a user (or a later command) would."""
    def spoil(tmp: Path) -> None:
        path = tmp / "run" / "config.toml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return spoil


def _symlink(name: str, target: str) -> Spoil:
    return lambda tmp: (tmp / name).symlink_to(target.format(tmp=tmp))


def _remove(relative: str) -> Spoil:
    return lambda tmp: (tmp / relative).unlink()


def _non_utf8_parquet(tmp: Path) -> None:
    """c00's train partition with instructions that are not UTF-8 (Parquet does not check)."""
    path = tmp / "run" / "partition" / "clients" / "c00" / "train.parquet"
    table = pq.read_table(path)
    rows = len(table)
    offsets = pa.array(range(0, 2 * rows + 1, 2), pa.int32()).buffers()[1]
    junk = pa.StringArray.from_buffers(rows, offsets, pa.py_buffer(b"\xff\xfe" * rows))
    pq.write_table(table.set_column(table.column_names.index("instruction"), "instruction", junk), path)


def _binary_instructions(tmp: Path, split: str = "train") -> None:
    """c00's train (or test) partition with the instruction column stored as bytes instead of text."""
    path = tmp / "run" / "partition" / "clients" / "c00" / f"{split}.parquet"
    table = pq.read_table(path)
    raw = pa.array([text.encode() for text in table.column("instruction").to_pylist()], pa.binary())
    pq.write_table(table.set_column(table.column_names.index("instruction"), "instruction", raw), path)


def _other_model(tmp: Path) -> None:
    """A later command given another --model: cached stages, but config.toml now names that model."""
    result = CliRunner().invoke(app, ["cluster-local", "--run-dir", str(tmp / "run"),
                                      "--model", "no-such-org/other-model"])
    assert result.exit_code == 0, result.output


def _finished_simulation(run_dir: Path) -> None:
    """What `simulate --alg fedrouter` leaves for generate/export/evaluate to check before they load
    a model: its manifest (this config's fingerprint) and the last round's state and adapters folder."""
    from fedrouter_cli.config_file import load_config
    from fedrouter_cli.fingerprints import simulate_fingerprint
    from fedrouter_cli.stages.cluster_local import read_centroids
    from fedrouter_cli.stages.common import manifest

    run = RunDir(run_dir)
    config = load_config(run.config_path)
    centroids = read_centroids(run.centroids_file(client_name(0)))[0]
    round_dir = run.round_dir("fedrouter", config.train.rounds)
    (round_dir / "adapters" / "g00").mkdir(parents=True)
    write_json(round_dir / "state.json", {"round": config.train.rounds, "algorithm": "fedrouter", "adapters": ["g00"],
                                          "extra": {"global_centroids": centroids[:1].tolist(), "routes": {}}})
    run.write_manifest("simulate", manifest("simulate", simulate_fingerprint(config), asdict(config.train), {},
                                            0.0, {}, []), "fedrouter")


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8  # binary, yet valid UTF-8
LATIN1_TOML = '[data]\nsource = "caf\xe9"\n'.encode("latin-1")
# Known gaps in files being edited elsewhere; strict, so a fix turns them into failures to unmark.

CASES: dict[str, Case | tuple[Case, pytest.MarkDecorator]] = {
    # run
    "run/clients-not-a-number": Case("run --run-dir {run} --clients abc", "Invalid value for '--clients'"),
    "run/unknown-alg-before-data-stages": Case("run --run-dir {run} --alg fedmagic", "Unknown algorithm 'fedmagic'"),
    "run/unknown-preset": Case("run --run-dir {run} --preset huge", "--preset must be one of"),
    "run/zero-rounds": Case("run --run-dir {run} --rounds 0", "train.rounds must be positive"),
    "run/unknown-option": Case("run --run-dir {run} --frob", "No such option '--frob'"),
    # partition
    "partition/empty-jsonl": Case("partition --run-dir {run} --source {src}", "train.jsonl holds no rows",
                                  spoil=_source_with("a/train.jsonl", b"")),
    "partition/binary-jsonl": Case("partition --run-dir {run} --source {src}", "test.jsonl line 1 is not valid JSON",
                                   spoil=_source_with("b/test.jsonl", ELF)),
    "partition/jsonl-line-not-object": Case("partition --run-dir {run} --source {src}", "line 1 is not a JSON object",
                                            spoil=_source_with("a/train.jsonl", b"[1, 2]\n")),
    "partition/tasks-escape-source": Case("partition --run-dir {run} --source {src} --tasks ../../etc",
                                          "Unknown task(s) ../../etc for --source", spoil=_source),
    "partition/task-folder-symlinked-to-etc": Case("partition --run-dir {run} --source {src} --tasks etc",
                                                   "Unknown task(s) etc for --source",
                                                   spoil=lambda tmp: (_source(tmp), _symlink("src/etc", "/etc")(tmp))),
    "partition/source-is-a-file": Case("partition --run-dir {run} --source {src}/a/train.jsonl",
                                       "nor an existing folder", spoil=_source),
    "partition/empty-source-folder": Case("partition --run-dir {run} --source {src}",
                                          "holds no <task>/train.jsonl files",
                                          spoil=lambda tmp: (tmp / "src").mkdir()),
    "partition/zero-test-per-client": Case("partition --run-dir {run} --test-per-client 0",
                                           "data.test_per_client must be positive"),
    "partition/config-binary-junk": Case("partition --run-dir {run}", "config.toml is not valid TOML",
                                         spoil=_write("run/config.toml", PNG)),
    "partition/run-dir-symlink-loop": Case("partition --run-dir {tmp}/loop", "is a symlink loop", base="empty",
                                           spoil=_symlink("loop", "{tmp}/loop")),
    "partition/run-dir-symlink-to-file": Case("partition --run-dir {tmp}/link", "is a file, not a folder", base="empty",
                                              spoil=lambda tmp: (_write("notes.txt", b"x")(tmp),
                                                                 _symlink("link", "{tmp}/notes.txt")(tmp))),
    "partition/run-dir-inside-a-file": Case("partition --run-dir {tmp}/notes.txt/run", "lies inside the file",
                                            base="empty", spoil=_write("notes.txt", b"x")),
    "partition/config-float-clients": Case("partition --run-dir {run}", "clients must be an integer, got 2.5",
                                           spoil=_config_line("clients = 4", "clients = 2.5")),
    "partition/train-per-client-huge": Case("partition --run-dir {run} --train-per-client 100000000",
                                            "at most 100000 samples per client"),
    # embed
    "embed/config-not-utf8": Case("embed --run-dir {run}", "config.toml is not valid TOML",
                                  spoil=_write("run/config.toml", LATIN1_TOML)),
    "embed/missing-local-model-folder": Case("embed --run-dir {run} --model {tmp}/models/none",
                                             "Could not load model"),
    "embed/model-folder-without-config": Case("embed --run-dir {run} --model {tmp}/models",
                                              "folder without config.json",
                                              spoil=_write("models/README.md", b"weights go here")),
    "embed/zero-batch-size": Case("embed --run-dir {run} --embed-batch-size 0", "embed.batch_size must be positive"),
    "embed/non-utf8-parquet": Case("embed --run-dir {run} --force", "Invalid UTF8", spoil=_non_utf8_parquet),
    "embed/binary-instruction-column": Case("embed --run-dir {run} --force", "has no text column 'instruction'",
                                            spoil=_binary_instructions),
    "simulate/binary-instruction-column": Case("simulate --run-dir {run}", "has no text column 'instruction'",
                                               spoil=_binary_instructions),
    "evaluate/binary-test-instruction-column": Case("evaluate --run-dir {run} --alg base",
                                                    "has no text column 'instruction'",
                                                    spoil=lambda tmp: _binary_instructions(tmp, "test")),
    "cluster-local/binary-instruction-column": Case("cluster-local --run-dir {run} --force",
                                                    "has no text column 'instruction'", spoil=_binary_instructions),
    # cluster-local
    "cluster-local/k-min-zero": Case("cluster-local --run-dir {run} --k-min 0", "need 2 <= --k-min <= --k-max"),
    "cluster-local/negative-n-clusters": Case("cluster-local --run-dir {run} --n-clusters -1",
                                              "--n-clusters must be 'auto', 'tasks' or a positive integer"),
    "cluster-local/config-wrong-type": Case("cluster-local --run-dir {run}", "Bad value in [data]",
                                            spoil=_config_line("clients = 4", 'clients = "abc"')),
    "cluster-local/empty-embeddings-file": Case("cluster-local --run-dir {run} --force",
                                                "is not a readable Parquet file",
                                                spoil=_write("run/embed/clients/c01/train.parquet", b"")),
    # select-k
    "select-k/unknown-level": Case("select-k --run-dir {run} --level middle", "--level must be local or global"),
    "select-k/k-max-below-k-min": Case("select-k --run-dir {run} --k-min 5 --k-max 3", "need 2 <= --k-min <= --k-max"),
    "select-k/binary-junk-centroids": Case("select-k --run-dir {run} --level global", "is not a readable Parquet file",
                                           spoil=_write("run/cluster-local/clients/c01/centroids.parquet", PNG)),
    # simulate: every case must stop before Flower starts
    "simulate/lr-not-a-number": Case("simulate --run-dir {run} --lr x", "Invalid value for '--lr'"),
    "simulate/negative-workers": Case("simulate --run-dir {run} --workers -1", "Invalid value for '--workers'"),
    "simulate/rounds-huge": Case("simulate --run-dir {run} --rounds 10000000", "implausibly large"),
    "simulate/unknown-variant": Case("simulate --run-dir {run} --variant turbo", "--variant must be one of"),
    "simulate/global-clusters-word": Case("simulate --run-dir {run} --global-clusters many",
                                          "--global-clusters must be 'auto', 'tasks' or a positive integer"),
    "simulate/unknown-alg-on-new-data": Case("simulate --run-dir {run} --alg fedmagic --clients 3",
                                             "Unknown algorithm 'fedmagic'"),
    # --alg fedmagic stops it before Flower if nan gets through
    "simulate/lr-nan": Case("simulate --run-dir {run} --lr nan --alg fedmagic", "must be a finite number, got nan"),
    "simulate/negative-dp-epsilon": Case("simulate --run-dir {run} --dp-epsilon -1", "must be 0 (off) or positive"),
    "simulate/centroid-dp-on-raw-embeddings": Case("simulate --run-dir {run} --centroid-epsilon 1 --embedder base",
                                                   "needs unit-norm embeddings"),
    # evaluate
    "evaluate/unknown-mode": Case("evaluate --run-dir {run} --mode both", "--mode must be one of local, global"),
    "evaluate/max-new-tokens-huge": Case("evaluate --run-dir {run} --max-new-tokens 999999", "pass at most 4096"),
    "evaluate/alg-path-escape": Case("evaluate --run-dir {run} --alg ../../etc", "Unknown algorithm '../../etc'"),
    "evaluate/before-embed": Case("evaluate --run-dir {run} --alg base", "has no completed 'embed' stage",
                                  spoil=_remove("run/embed/manifest.json")),
    "evaluate/other-model-than-simulated": Case("evaluate --run-dir {run}", "simulation used other settings",
                                                base="simulated", spoil=_other_model),
    # generate
    "generate/without-simulation": Case("generate --run-dir {run}", "no completed 'simulate fedrouter' stage",
                                        prompt="Write a headline."),
    "generate/missing-prompt": Case("generate --run-dir {run}", "Missing argument 'PROMPT'"),
    "generate/blank-prompt": Case("generate --run-dir {run}", "The prompt is empty", prompt="  "),
    "generate/non-utf8-prompt": Case("generate --run-dir {run}", "not UTF-8 text", prompt="caf\udce9"),
    "generate/max-new-tokens-huge": Case("generate --run-dir {run} --max-new-tokens 999999", "pass at most 4096",
                                         prompt="hello"),
    "generate/round-not-run": Case("generate --run-dir {run} --round 9", "Round 9 of fedrouter does not exist",
                                   base="simulated", prompt="hello"),
    "generate/other-model-than-simulated": Case("generate --run-dir {run}", "trained with other settings",
                                                base="simulated", spoil=_other_model, prompt="hello"),
    # export
    "export/without-simulation": Case("export --run-dir {run} --out {tmp}/export",
                                      "no completed 'simulate fedrouter' stage"),
    "export/out-inside-run-dir": Case("export --run-dir {run} --out {run}/export", "is inside the run dir"),
    "export/out-symlinked-into-run-dir": Case("export --run-dir {run} --out {tmp}/shortcut/export",
                                              "is inside the run dir",
                                              spoil=_symlink("shortcut", "{tmp}/run/partition")),
    "export/out-is-a-file": Case("export --run-dir {run} --out {tmp}/notes.txt", "is a file, not a folder",
                                 spoil=_write("notes.txt", b"x")),
    "export/out-inside-a-file": Case("export --run-dir {run} --out {tmp}/notes.txt/export", "lies inside the file",
                                     spoil=_write("notes.txt", b"x")),
    "export/out-not-writable": Case("export --run-dir {run} --out /proc/fedrouter-export", "Could not write the export",
                                    base="simulated"),
    "export/negative-round": Case("export --run-dir {run} --out {tmp}/export --round -1", "--round must be 0"),
    "export/other-model-than-simulated": Case("export --run-dir {run} --out {tmp}/export",
                                              "trained with other settings",
                                              base="simulated", spoil=_other_model),
    # report
    "report/empty-run-dir": Case("report --run-dir {run}", "No evaluated methods", base="empty"),
    "report/second-run-dir-missing": Case("report --run-dir {run} --run-dir {tmp}/seed1", "seed1 does not exist"),
    "report/binary-junk-scores": Case("report --run-dir {run}", "scores.json is not valid JSON",
                                      spoil=_write("run/evaluate/fedrouter/local/scores.json", PNG)),
    # bench
    "bench/unknown-method": Case("bench --run-dir {run} --methods fedmagic", "Unknown method 'fedmagic'", base="empty"),
    "bench/seeds-not-numbers": Case("bench --run-dir {run} --seeds x", "--seeds must be comma-separated integers",
                                    base="empty"),
    "bench/unknown-scenario": Case("bench --run-dir {run} --scenarios triple", "Unknown scenario 'triple'",
                                   base="empty"),
    "bench/negative-clients": Case("bench --run-dir {run} --clients -3", "data.clients must be positive", base="empty"),
    "bench/report-only-before-any-cell": Case("bench --run-dir {run} --preset smoke --report-only",
                                              "No finished bench cells", base="empty"),
    # deploy (the Flower processes are never started: each case fails before)
    "deploy/prepare-node-no-such-client": Case("deploy prepare-node --client 9 --node-dir {tmp}/c09 --preset smoke",
                                               "--client 9 does not exist", base="empty"),
    "deploy/prepare-node-folder-misnamed": Case("deploy prepare-node --client 1 --node-dir {tmp}/c02 --preset smoke",
                                                "must be named after it", base="empty"),
    "deploy/supernode-empty-folder": Case("deploy supernode --superlink 127.0.0.1:9 --node-dir {tmp}/c01",
                                          "run `fedrouter deploy prepare-node` first", base="empty"),
    "deploy/superlink-half-tls": Case("deploy superlink --ca-cert {tmp}/ca.crt", "TLS needs all three", base="empty"),
    "deploy/superlink-missing-cert": Case("deploy superlink --ca-cert {tmp}/a --cert {tmp}/b --key {tmp}/c",
                                          "does not exist or is not a file", base="empty"),
    "deploy/submit-relative-run-dir": Case("deploy submit --run-dir relative/run --superlink 127.0.0.1:9",
                                           "must be an absolute path", base="empty"),
    # the command itself
    "fedrouter/unknown-command": Case("frobnicate", "No such command 'frobnicate'"),
}


def _params() -> list:
    params = []
    for name, entry in CASES.items():
        case, marks = (entry, ()) if isinstance(entry, Case) else (entry[0], (entry[1],))
        params.append(pytest.param(case, id=name, marks=marks))
    return params


# -- checks -----------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root`: files by content and mtime, symlinks by target, folders by name."""
    state: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):  # symlinks (loops too) are not followed
        for name in dirs + files:
            path = Path(folder, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = ("link", os.readlink(path))
            elif path.is_dir():
                state[key] = ("dir",)
            else:
                state[key] = ("file", path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def assert_refused(result, message: str) -> None:
    """Exit 2 with exactly one `Error:` line, a sentence holding `message`; no traceback, no output."""
    shown = result.output  # stdout and stderr as a terminal shows them
    assert result.exit_code == 2, shown
    assert "Traceback" not in shown and "Internal error" not in shown, shown
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, shown
    assert message in errors[0], shown
    assert errors[0].rstrip().endswith((".", "?")), errors[0]
    assert result.stdout == ""


def _run_dir(base: str, smoke_data: Path, tmp: Path) -> Path:
    run_dir = tmp / "run"
    if base == "empty":
        run_dir.mkdir()
    else:
        shutil.copytree(smoke_data, run_dir)
        if base == "simulated":
            _finished_simulation(run_dir)
    return run_dir


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_refused_and_changes_nothing(case: Case, smoke_data: Path, tmp_path: Path) -> None:
    if "/proc/" in case.args and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc as an unwritable folder")
    run_dir = _run_dir(case.base, smoke_data, tmp_path)
    if case.spoil:
        case.spoil(tmp_path)
    args = case.args.format(run=run_dir, tmp=tmp_path, src=tmp_path / "src").split()
    if case.prompt is not None:
        args.append(case.prompt)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(app, args)
    assert_refused(result, case.message)
    assert snapshot(tmp_path) == before


def test_every_subcommand_is_swept() -> None:
    import typer

    commands = set(typer.main.get_command(app).commands)
    assert commands <= {name.split("/")[0] for name in CASES}
