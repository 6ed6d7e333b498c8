from pathlib import Path

import pytest

from fedrouter_cli.config import Config, build_config, load_config, resolve_config, save_config
from fedrouter_cli.errors import FedrouterError


def test_saved_config_then_preset_then_options(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    save_config(path, build_config(Config(), {"data": {"scenario": "all", "clients": 5}}))
    config = resolve_config(path, "smoke", {"train": {"rounds": 7}, "data": {"clients": None}})
    assert config.data.scenario == "all"          # from the saved run
    assert config.data.clients == 4               # the preset overrides the saved value
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
