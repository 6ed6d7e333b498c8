"""Every default an option's help states is the one the tool uses: read from the help text of
every command and compared with the config's own defaults and the presets, so the two cannot
drift apart again (`--embedder`'s help once named `minilm` while the config used `minilm+chars`)."""

from __future__ import annotations

import re

import click
import pytest
import typer

from fedrouter_cli.cli.app import app
from fedrouter_cli.config import Config
from fedrouter_cli.presets import PRESETS

# options whose name is not their config field's, or whose field name several sections share
FIELDS = {"--seed": ("data", "seed"), "--batch-size": ("train", "batch_size"), "--max-length": ("train", "max_length"),
          "--embed-batch-size": ("embed", "batch_size"), "--embed-max-length": ("embed", "max_length"),
          "--eval-batch-size": ("eval", "batch_size"), "--global-clusters": ("train", "global_clusters")}


def _options() -> list[tuple[str, click.Option]]:
    found = []

    def walk(group: click.Group, prefix: str) -> None:
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, f"{prefix}{name} ")
            else:
                found.extend((f"{prefix}{name}", p) for p in command.params if isinstance(p, click.Option) and p.help)

    walk(typer.main.get_command(app), "")
    return found


def _not_config() -> dict[str, str]:
    """Stated defaults of options that set no config field, as the code has them."""
    from fedrouter_cli.experiments.matrix import METHODS

    return {"--methods": ", ".join(METHODS), "--results-dir": "RUN_DIR/results"}


def _field(option: str) -> tuple[str, str]:
    if option in FIELDS:
        return FIELDS[option]
    name = option.removeprefix("--").replace("-", "_")
    sections = [s for s, values in Config().to_dict().items() if name in values]
    assert len(sections) == 1, f"{option}: no single config field named {name} ({sections}); add it to FIELDS"
    return sections[0], name


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _stated(help_text: str) -> tuple[str | None, dict[str, str]]:
    """The default a help text states ('default: X') and the preset values ('preset: cpu X, paper Y')."""
    default = re.search(r"\(default: ([^;)]+)", help_text)
    presets = dict(re.findall(r"(cpu|paper|quick|smoke) ([^,;)\s]+)", m.group(1))) if (
        m := re.search(r"preset: ([^)]*)", help_text)) else {}
    return (default.group(1).strip() if default else None), presets


def test_the_defaults_options_state_are_the_configs() -> None:
    checked, wrong = 0, []
    defaults = Config().to_dict()
    for command, option in _options():
        name = option.opts[0]
        stated, presets = _stated(" ".join(option.help.split()))
        if (stated is None and not presets) or (stated or "").startswith(("the ", "all ")):
            continue
        if name in (elsewhere := _not_config()):
            if stated != elsewhere[name]:
                wrong.append(f"{command} {name}: help says default {stated}, the code's is {elsewhere[name]}")
            continue
        section, field = _field(name)
        real = defaults[section][field]
        if stated is not None and stated != _shown(real):
            wrong.append(f"{command} {name}: help says default {stated}, the config's is {_shown(real)}")
        for preset, value in presets.items():
            actual = PRESETS[preset].get(section, {}).get(field, real)
            if value != _shown(actual):
                wrong.append(f"{command} {name}: help says {preset} {value}, the preset's is {_shown(actual)}")
        checked += 1
    assert not wrong, "\n".join(wrong)
    assert checked >= 20  # the check reads the defaults it is meant to


def test_no_help_states_a_default_the_check_cannot_read() -> None:
    """'default 8' or 'default on' would escape the check above; help says 'default: 8'."""
    loose = [f"{command} {option.opts[0]}" for command, option in _options()
             if re.search(r"\bdefault\s+(\d|on\b|off\b)", option.help)]
    assert not loose, loose


@pytest.mark.parametrize(("text", "stated"), [("Seed (default: 3).", ("3", {})),
                                              ("Rounds (preset: cpu 5, paper 25).", (None, {"cpu": "5", "paper": "25"}))])
def test_the_check_reads_what_help_states(text: str, stated: tuple) -> None:
    assert _stated(text) == stated
