"""The command line as users drive it: help, --json, caching, and bad input (exit 2, run dir
unchanged). A few tests run the installed `fedrouter` script as a real process; the rest run the
same app in process through Typer's CliRunner."""

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from conftest import FEDROUTER_SCRIPT
from typer.testing import CliRunner

from fedrouter_cli.cli.app import app

STAGES = ["run", "partition", "embed", "cluster-local", "select-k", "simulate", "evaluate", "generate", "export"]


def cli(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user's shell runs it."""
    return subprocess.run([*FEDROUTER_SCRIPT, *args], capture_output=True, text=True)


def invoke(*args: str) -> subprocess.CompletedProcess:
    """The same command in this process; returns what `cli` would (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, list(args))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def snapshot(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_help_lists_stages_and_explains_options() -> None:
    top = cli("--help")
    assert top.returncode == 0
    for stage in STAGES:
        assert stage in top.stdout
    assert "--run-dir" in cli("simulate", "--help").stdout
    import click
    import typer

    group = typer.main.get_command(app)
    for stage in STAGES:
        command = group.commands[stage]
        assert command.help, f"{stage} has no description"
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{stage} {param.opts} has no help text"


def test_partition_json_is_one_object(tmp_path: Path) -> None:
    result = cli("partition", "--run-dir", str(tmp_path / "r"), "--clients", "3", "--train-per-client", "6",
                 "--test-per-client", "2", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["cache_hit"] is False and len(payload["clients"]) == 3
    again = json.loads(cli("partition", "--run-dir", str(tmp_path / "r"), "--json").stdout)
    assert again["cache_hit"] is True  # settings come back from the run's config.toml


def _jsonl(path: Path, lines: list[str] | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())


def _good_source(root: Path) -> Path:
    for task in ("a", "b"):
        for split in ("train", "test"):
            _jsonl(root / task / f"{split}.jsonl",
                   [json.dumps({"instruction": f"{task} {split} {i}", "response": "ok"}) for i in range(6)])
    return root


BAD_CASES = {
    "malformed jsonl": (lambda src: _jsonl(src / "a" / "train.jsonl", ['{"instruction": "x", "response": "y"}', "{oops"]),
                        [], "line 2 is not valid JSON"),
    "missing jsonl": (lambda src: (src / "a" / "test.jsonl").unlink(), [], "test.jsonl is missing"),
    "row without instruction": (lambda src: _jsonl(src / "a" / "train.jsonl", ['{"response": "y"}']), [],
                                "has no text 'instruction'"),
    "non-utf8": (lambda src: _jsonl(src / "a" / "train.jsonl", b"\xff\xfe\x00bad"), [], "not UTF-8"),
    "unknown task": (lambda src: None, ["--tasks", "a,zzz"], "Unknown task(s) zzz"),
    "negative clients": (lambda src: None, ["--clients", "-3"], "must be positive"),
    "bad scenario": (lambda src: None, ["--scenario", "triple"], "--scenario must be one of"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_partition_input(tmp_path: Path, case: str) -> None:
    spoil, extra, message = BAD_CASES[case]
    source = _good_source(tmp_path / "src")
    run_dir = tmp_path / "run"
    ok = invoke("partition", "--run-dir", str(run_dir), "--source", str(source), "--clients", "2",
             "--train-per-client", "4", "--test-per-client", "2")
    assert ok.returncode == 0, ok.stderr
    before = snapshot(run_dir)
    spoil(source)
    result = invoke("partition", "--run-dir", str(run_dir), "--source", str(source), "--force", *extra)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_later_stages_report_missing_or_corrupt_inputs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    missing = cli("evaluate", "--run-dir", str(run_dir))
    assert missing.returncode == 2 and "partition" in missing.stderr
    ok = cli("partition", "--run-dir", str(run_dir), "--clients", "2", "--train-per-client", "6", "--test-per-client", "2")
    assert ok.returncode == 0 and ok.stderr.splitlines() == ["partition 0/2", "partition 2/2"], ok.stderr
    (run_dir / "partition" / "clients" / "c00" / "train.parquet").write_bytes(b"PAR1 not really parquet")
    before = snapshot(run_dir)
    corrupt = cli("cluster-local", "--run-dir", str(run_dir))
    assert corrupt.returncode == 2 and "not a readable Parquet file" in corrupt.stderr
    assert "Traceback" not in corrupt.stderr and snapshot(run_dir) == before


def test_too_many_clusters_and_unknown_model(smoke_copy: Path) -> None:
    before = snapshot(smoke_copy)
    too_many = invoke("cluster-local", "--run-dir", str(smoke_copy), "--n-clusters", "500")
    assert too_many.returncode == 2 and "larger than client c00's" in too_many.stderr
    unknown = invoke("embed", "--run-dir", str(smoke_copy), "--model", "no-such-org/no-such-model")
    assert unknown.returncode == 2 and "Could not load model" in unknown.stderr
    four_bit = invoke("simulate", "--run-dir", str(smoke_copy), "--load-in-4bit")
    assert four_bit.returncode == 2 and "needs a CUDA GPU" in four_bit.stderr
    assert snapshot(smoke_copy) == before


def test_progress_in_a_log_is_one_line_per_piece_of_work_and_round() -> None:
    from fedrouter_cli.cli.common import line_progress

    lines: list[str] = []
    progress = line_progress(lines.append)
    for done in range(0, 11):
        progress("embed", done, 10)
    for done in range(0, 4):
        progress("round", done, 3)
        if 0 < done < 3:
            progress("round", done, 3)  # the next round starts where this one ended
    progress("embed", 0, 5)  # the same work again later starts a new pair of lines
    progress("embed", 5, 5)
    assert lines == ["embed 0/10", "embed 10/10", "round 0/3", "round 1/3", "round 2/3", "round 3/3",
                     "embed 0/5", "embed 5/5"]


def test_a_stage_in_a_log_shows_progress_lines_and_no_library_noise(smoke_simulated, tmp_path: Path) -> None:
    """What a user sees in a CI log or under nohup: stderr is not a terminal there (nor here)."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_simulated[0], run_dir)
    shown = invoke("evaluate", "--run-dir", str(run_dir), "--alg", "base", "--force")
    assert shown.returncode == 0, shown.stderr
    import re

    lines = shown.stderr.splitlines()
    assert lines and all(re.fullmatch(r"[\w -]+ \d+/\d+", line) for line in lines), shown.stderr  # progress only
    generated = [line for line in lines if line.startswith("generate ")]
    assert len(generated) == 2 and generated[-1] == "generate 16/16", lines  # its first batch, and the end
    embedded = invoke("embed", "--run-dir", str(run_dir), "--force")  # its texts are in the text cache by now
    texts = json.loads((run_dir / "embed" / "manifest.json").read_text())["summary"]["unique_texts"]
    assert embedded.returncode == 0 and embedded.stderr.splitlines() == [f"embed 0/{texts}", f"embed {texts}/{texts}"]
    for stage, args, lines in (("cluster-local", ["--force"], ["cluster-local 0/4", "cluster-local 4/4"]),
                               ("select-k", ["--level", "global", "--force"], ["select-k global 0/1",
                                                                               "select-k global 1/1"])):
        quick = invoke(stage, "--run-dir", str(run_dir), *args)  # instant stages still say they ran
        assert quick.returncode == 0 and quick.stderr.splitlines() == lines, quick.stderr
    # (the real script's simulate on Ray is checked for library noise in test_simulate.py)


def test_version_json_errors_and_a_run_dir_in_use(tmp_path: Path) -> None:
    from fedrouter_cli import __version__
    from fedrouter_cli.rundir import RunDir

    assert invoke("--version").stdout.strip() == f"fedrouter {__version__}"
    # with --json a script reads an error where it reads results: one JSON object on stdout
    for args, message in ((["partition", "--scenario", "triple"], "--scenario must be one of"),
                          (["partition", "--no-such-option"], "No such option")):
        failed = invoke(*args, "--run-dir", str(tmp_path / "r"), "--json")
        assert failed.returncode == 2
        error = json.loads(failed.stdout)
        assert error["exit_code"] == 2 and message in error["error"]
    # a second command on a run dir another one is writing stops at once, and writes nothing
    run = RunDir(tmp_path / "busy")
    with run.writing():
        busy = invoke("partition", "--run-dir", str(run.root), "--clients", "2", "--train-per-client", "4",
                      "--test-per-client", "2")
    assert busy.returncode == 2 and "Another fedrouter command" in busy.stderr and not run.root.exists()
    free = invoke("partition", "--run-dir", str(run.root), "--clients", "2", "--train-per-client", "4",
                  "--test-per-client", "2")
    assert free.returncode == 0, free.stderr


def test_a_new_run_dir_without_a_preset_gets_the_machines_sizes(tmp_path: Path) -> None:
    """Not the paper's 600/300 samples per client and 25 x 10 steps at length 1024 on a laptop:
    the cpu preset without a GPU (the paper's with one), as `run` picks its own."""
    from fedrouter_cli.config_file import load_config
    from fedrouter_cli.presets import PRESETS, machine_preset

    assert invoke("partition", "--run-dir", str(tmp_path / "r"), "--scenario", "single").returncode == 0
    saved = load_config(tmp_path / "r" / "config.toml")
    expected = PRESETS[machine_preset()]
    assert (saved.data.train_per_client, saved.train.rounds, saved.train.max_length) == (
        expected["data"]["train_per_client"], expected["train"]["rounds"], expected["train"]["max_length"])
    assert saved.data.scenario == "single"
    if machine_preset() == "cpu":
        assert (saved.data.train_per_client, saved.data.test_per_client, saved.train.rounds) == (150, 25, 5)


@pytest.mark.parametrize(("name", "client"), [("c03", 3), ("c3", 3), ("node-12", 12), ("node7", 7), ("c03-copy2", None),
                                              ("data", None), ("site3", None), ("c", None)])
def test_a_node_folder_names_its_client_exactly(name: str, client: int | None) -> None:
    from fedrouter_cli.rundir import client_index

    assert client_index(name) == client
