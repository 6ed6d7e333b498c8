"""Presets, and which value wins when a command resolves a run's settings (resolve_config),
highest first:
1. the options typed on this command;
2. the options typed on earlier commands of the same run dir (kept in typed.toml beside
   config.toml), so `fedrouter partition --clients 8 ...` then `fedrouter simulate --preset smoke`
   keeps 8 clients;
3. the preset, when one is given on the command line; without one, the run dir's saved
   config.toml (so `fedrouter evaluate` after `fedrouter simulate --scenario all` evaluates the run
   that was simulated), or for a new run dir a command's default preset (`run`: quick, `bench`:
   cpu; the others: machine_preset, cpu without a GPU);
4. the defaults here.
A preset fills in what nobody typed; it never overwrites a typed value. In a run dir saved without
typed.toml (older versions, scripts), every saved value that differs from the defaults counts as typed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedrouter_cli.config import SECTIONS, Config
from fedrouter_cli.config_file import build_config, load_config, read_toml, write_toml
from fedrouter_cli.errors import FedrouterError

# Presets: groups of settings sized for a machine. paper = the paper's settings (GPU users);
# cpu = minutes on 2 cores; smoke = a plumbing check (`run` about a minute on 2 cores, mostly
# Flower's simulation engine starting; its scores mean nothing). The cpu preset trains each adapter ~50x
# fewer samples than the paper, so its peak lr is 4x the paper's: at 5e-4 the web_nlg and gigaword
# adapters barely moved in 5 rounds (held-out loss probe: 1.67 -> 1.48 at 5e-4, -> 1.32 at 2e-3).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "data": {"clients": 8, "train_per_client": 600, "test_per_client": 300},
        # gradient clipping at 1.0 (the HF Trainer's default) and one shared initial adapter: the
        # authors' settings; the cpu preset keeps neither, as its bench cells were measured so
        "train": {"rounds": 25, "local_steps": 10, "batch_size": 16, "lr": 5e-4, "max_length": 1024,
                  "max_grad_norm": 1.0, "shared_init": True},
        "eval": {"max_new_tokens": 512},
    },
    "cpu": {
        "data": {"clients": 8, "train_per_client": 150, "test_per_client": 25},
        # lr_floor 0.25: the cosine ends at 5e-4 (the paper's peak), not 1e-5, so that with 5 rounds
        # and round-robin over 4 adapters the adapter whose turn is round 4 trains at 36% of the
        # peak, not 15% (a fifth, in round 5, at 25%, not 0.5%)
        "train": {"rounds": 5, "local_steps": 4, "batch_size": 4, "lr": 2e-3, "lr_floor": 0.25, "max_length": 128},
        # 32 prompts a batch generate ~1.4x faster than 16 here (64 pads too much); same outputs.
        # 64 new tokens cover the 95th percentile of every raw task's reference (SmolLM2 tokens
        # with EOS: qqp 2, webnlg 64, samsum 55, gigaword 16); generation stops at EOS before that
        "eval": {"max_new_tokens": 64, "batch_size": 32},
    },
    # The main job (`fedrouter run` on a new run dir): the cpu preset's data and model sizes with a
    # shorter schedule and fewer test samples, so that install and run fit in 10 minutes on 2 cores.
    # Training and prompt encoding are compute-bound there (bench/results/throughput_bound_after.json):
    # the cpu preset's 160 training steps alone take ~5.5 minutes. Generation runs 64 prompts a batch:
    # a decode step of 64 rows costs about what one of 32 does here (0.26 vs 0.25 s); the cpu preset
    # keeps 32 because the bench's finished cells were measured with it.
    "quick": {
        "data": {"clients": 8, "train_per_client": 150, "test_per_client": 12},
        "train": {"rounds": 3, "local_steps": 3, "batch_size": 4, "lr": 2e-3, "lr_floor": 0.25, "max_length": 128},
        "eval": {"max_new_tokens": 64, "batch_size": 64},
    },
    "smoke": {
        "data": {"clients": 4, "train_per_client": 24, "test_per_client": 4},
        "train": {"rounds": 2, "local_steps": 1, "batch_size": 2, "max_length": 64},
        "eval": {"max_new_tokens": 6, "batch_size": 8},
    },
}


def machine_preset() -> str:
    """The preset of a new run dir given none: the paper's sizes where torch sees a CUDA GPU, the
    cpu preset's otherwise (the paper's 25 x 10 steps at length 1024 would take days on a laptop)."""
    from fedrouter_cli.model.device import resolve_device

    return "paper" if resolve_device("auto").is_cuda else "cpu"


def typed_path(config_path: Path) -> Path:
    """The options typed on a run dir's commands so far, beside its config.toml."""
    return config_path.with_name("typed.toml")


def typed_values(overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The options actually given (None = not typed), by section."""
    given = {section: {k: v for k, v in values.items() if v is not None} for section, values in overrides.items()}
    return {section: values for section, values in given.items() if values}


def load_typed(config_path: Path) -> dict[str, dict[str, Any]] | None:
    path = typed_path(config_path)
    return read_toml(path) if path.exists() else None


def merged_typed(before: dict[str, dict[str, Any]] | None, overrides: dict[str, dict[str, Any]]
                 ) -> dict[str, dict[str, Any]]:
    merged = {section: dict(values) for section, values in (before or {}).items()}
    for section, values in typed_values(overrides).items():
        merged.setdefault(section, {}).update(values)
    return merged


def resolve_config(path: Path, preset: str | None, overrides: dict[str, dict[str, Any]],
                   default_preset: str | None = None) -> Config:
    """This command's options over earlier typed ones over the preset (see the module docstring)."""
    if preset is None and not path.exists():
        preset = default_preset
    if preset is not None and preset not in PRESETS:
        raise FedrouterError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}.")
    if preset is None:
        return build_config(load_config(path), overrides)
    return build_config(Config(), PRESETS[preset], typed_so_far(path), overrides)


def typed_so_far(config_path: Path) -> dict[str, dict[str, Any]]:
    """typed.toml; for a run dir saved without one (older versions, or made by a script with
    save_config), every saved value that differs from the defaults counts as typed, so no preset
    overwrites what the run holds."""
    typed = load_typed(config_path)
    if typed is not None or not config_path.exists():
        return typed or {}
    saved, defaults = load_config(config_path).to_dict(), Config().to_dict()
    return {section: {k: v for k, v in values.items() if v != defaults[section][k]}
            for section, values in saved.items()}


def save_typed(config_path: Path, overrides: dict[str, dict[str, Any]]) -> None:
    """Add this command's typed options to the run dir's record of them."""
    write_toml(typed_path(config_path), merged_typed(typed_so_far(config_path), overrides))


def changed_settings(before: Config, after: Config) -> list[tuple[str, str, Any, Any]]:
    """(section, name, old, new) for every setting that differs."""
    old, new = before.to_dict(), after.to_dict()
    return [(section, name, old[section][name], value) for section in SECTIONS
            for name, value in new[section].items() if old[section].get(name) != value]
