from pathlib import Path

import pytest

from fedrouter_cli.config import Config
from fedrouter_cli.config_file import build_config, load_config, save_config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.presets import resolve_config


def test_a_run_dir_without_typed_toml_keeps_its_saved_values_over_a_preset(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    save_config(path, build_config(Config(), {"data": {"scenario": "all", "clients": 5}}))
    config = resolve_config(path, "smoke", {"train": {"rounds": 7}, "data": {"clients": None}})
    assert config.data.scenario == "all" and config.data.clients == 5  # saved, not default: as if typed
    assert config.data.train_per_client == 24     # the preset fills in the rest
    assert config.train.rounds == 7               # the option overrides the preset
    assert load_config(path).data.clients == 5    # resolving does not write


@pytest.mark.parametrize("layer, fragment", [
    ({"data": {"scenario": "triple"}}, "--scenario"),
    ({"data": {"clients": 0}}, "clients"),
    ({"cluster": {"n_clusters": "many"}}, "--n-clusters"),
    ({"cluster": {"k_min": 1}}, "k-min"),
    ({"train": {"lr": -1.0}}, "lr"),
    ({"train": {"lora_dropout": 1.5}}, "dropout"),
    ({"eval": {"mode": "sideways"}}, "--mode"),
    ({"oops": {"x": 1}}, "section"),
])
def test_bad_settings_are_named(layer: dict, fragment: str) -> None:
    with pytest.raises(FedrouterError, match=fragment):
        build_config(Config(), layer)


def test_corrupt_config_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xff\xfe not toml [[[")
    with pytest.raises(FedrouterError, match="not valid TOML"):
        load_config(path)


def test_typed_values_win_over_any_preset_which_fills_in_the_rest(tmp_path: Path) -> None:
    """`partition --clients 8 --train-per-client 150`, then `simulate --preset smoke`: still 8 x 150."""
    from fedrouter_cli.presets import PRESETS, save_typed

    path = tmp_path / "config.toml"
    typed = {"data": {"clients": 8, "train_per_client": 150, "test_per_client": None}}
    save_config(path, resolve_config(path, None, typed))
    save_typed(path, typed)
    config = resolve_config(path, "smoke", {"train": {"rounds": 3}})
    assert (config.data.clients, config.data.train_per_client) == (8, 150)  # typed earlier
    assert config.data.test_per_client == PRESETS["smoke"]["data"]["test_per_client"]  # nobody typed it
    assert config.train.rounds == 3 and config.train.local_steps == PRESETS["smoke"]["train"]["local_steps"]
    save_typed(path, {"train": {"rounds": 3}})
    assert resolve_config(path, "cpu", {}).train.rounds == 3  # typed values accumulate


def test_a_default_preset_applies_to_a_new_run_dir_only(tmp_path: Path) -> None:
    """`run` and `bench` default to the cpu preset; rerun on a run dir they keep what it saved."""
    from fedrouter_cli.presets import PRESETS

    path = tmp_path / "config.toml"
    fresh = resolve_config(path, None, {}, default_preset="cpu")
    assert fresh.data.train_per_client == PRESETS["cpu"]["data"]["train_per_client"]
    save_config(path, build_config(fresh, {"data": {"train_per_client": 40}}))
    assert resolve_config(path, None, {}, default_preset="cpu").data.train_per_client == 40


def test_a_command_that_changes_an_earlier_stage_says_so_first(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app

    run = str(tmp_path / "run")
    first = CliRunner().invoke(app, ["partition", "--run-dir", run, "--preset", "smoke", "--clients", "3"])
    assert first.exit_code == 0 and "Note:" not in first.stderr
    same = CliRunner().invoke(app, ["partition", "--run-dir", run])
    assert same.exit_code == 0 and "Note:" not in same.stderr
    changed = CliRunner().invoke(app, ["partition", "--run-dir", run, "--clients", "2"])
    assert changed.exit_code == 0
    notes = [line for line in changed.stderr.splitlines() if line.startswith("Note:")]
    assert len(notes) == 1 and "data.clients 3 -> 2" in notes[0] and "partition" in notes[0], changed.stderr


def _dry_run(*args: str) -> Config:
    """The settings a command resolves, as `--dry-run --json` prints them (no work, nothing saved)."""
    import json

    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app

    result = CliRunner().invoke(app, [*args, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    return build_config(Config(), json.loads(result.stdout)["settings"])


def test_run_and_bench_without_a_preset_keep_the_sizes_a_run_dir_saved(tmp_path: Path) -> None:
    """`partition --train-per-client 40`, then `run` / `bench` (cpu by default): still 40 and the
    saved rounds; an explicit --preset fills what nobody typed, and a typed option wins over both."""
    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app
    from fedrouter_cli.presets import PRESETS

    run = str(tmp_path / "run")
    made = CliRunner().invoke(app, ["partition", "--run-dir", run, "--train-per-client", "40"])
    assert made.exit_code == 0, made.output
    saved = (tmp_path / "run" / "config.toml").read_bytes()
    saved_rounds = load_config(tmp_path / "run" / "config.toml").train.rounds
    assert saved_rounds != PRESETS["smoke"]["train"]["rounds"]  # else the test could not tell them apart
    for command in ("run", "bench"):
        for extra, expected in (([], (40, saved_rounds)),
                                (["--preset", "smoke"], (40, PRESETS["smoke"]["train"]["rounds"])),
                                (["--train-per-client", "30", "--rounds", "3"], (30, 3))):
            config = _dry_run(command, "--run-dir", run, *extra)
            assert (config.data.train_per_client, config.train.rounds) == expected, (command, extra)
    assert (tmp_path / "run" / "config.toml").read_bytes() == saved  # a dry run saves nothing


def test_run_starts_a_new_run_dir_on_the_quick_preset_and_bench_on_its_tables_settings(tmp_path: Path) -> None:
    """`run` (the main job) gets the quick preset with token budgets and length grouping; `bench`
    gets the cpu preset with both off, as its committed table was measured."""
    from fedrouter_cli.presets import PRESETS

    for command, preset, on in (("run", "quick", True), ("bench", "cpu", False)):
        config = _dry_run(command, "--run-dir", str(tmp_path / command))
        assert not (tmp_path / command).exists()
        assert config.data.test_per_client == PRESETS[preset]["data"]["test_per_client"]
        assert config.eval.batch_size == PRESETS[preset]["eval"]["batch_size"]
        assert (config.train.group_by_length, config.eval.token_budget) == (on, on), command
    assert PRESETS["quick"]["data"]["test_per_client"] != PRESETS["cpu"]["data"]["test_per_client"]
