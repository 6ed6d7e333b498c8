"""What every command does around its stage: resolve config, report progress, print, map errors."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from rich.markup import (
    escape,  # messages quote config sections like [data], which Rich would eat as markup
)
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from fedrouter_cli.config import Config
from fedrouter_cli.config_file import load_config, save_config
from fedrouter_cli.errors import FederationStopped, FedrouterError
from fedrouter_cli.presets import changed_settings, resolve_config, save_typed
from fedrouter_cli.rundir import RunDir
from fedrouter_cli.stages.common import StageResult

stderr = Console(stderr=True)


def quiet_libraries() -> None:
    """Keep third-party chatter (HF warnings, Ray banners) off the user's terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if os.environ.get("FEDROUTER_ONLINE") != "1":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from fedrouter_cli.quiet import silence_dependencies

    silence_dependencies()


class _WarningsToStderr(logging.Handler):
    """Our own warnings (a client failed, a round was late) as plain lines on whatever stderr is
    at the moment, so they reach the user without relying on logging's last-resort handler."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def show_own_warnings() -> None:
    logger = logging.getLogger("fedrouter_cli")
    if not any(isinstance(h, _WarningsToStderr) for h in logger.handlers):
        handler = _WarningsToStderr(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False  # printed once, here


def line_progress(write: Callable[[str], None]) -> Callable[[str, int, int], None]:
    """Progress for a log (stderr not a terminal: CI, nohup): one line when a piece of work starts
    and one when it ends, and one per federated round, so long stages are not silent."""
    started: set[str] = set()
    last: dict[str, str] = {}

    def update(label: str, done: int, total: int) -> None:
        line = f"{label} {done}/{total}"
        # a round's end and the next one's start report the same count: one line for both
        if (label == "round" or label not in started or done >= total) and last.get(label) != line:
            write(line)
        last[label] = line
        started.add(label)
        if done >= total:
            started.discard(label)

    return update


@contextmanager
def progress_reporter(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A `progress(label, done, total)` callback drawing Rich bars on stderr (lines in a log)."""
    if not enabled:
        yield lambda label, done, total: None
        return
    if not stderr.is_terminal:
        yield line_progress(lambda line: print(line, file=sys.stderr, flush=True))
        return
    bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=stderr, transient=True)
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total)
        bars.update(tasks[label], completed=done, total=total)

    with bars:
        yield update


def announce_changes(run: RunDir, saved: Config | None, config: Config) -> None:
    """One line, before any work, when this command's settings change an earlier stage's inputs."""
    if saved is None:
        return
    changes = [c for c in changed_settings(saved, config) if c[0] != "eval" and c[1] != "alg"]
    if not changes:
        return
    from fedrouter_cli.stages.staleness import stale_stages

    try:
        stale = stale_stages(run, config)
    except FedrouterError:
        return  # bad settings: the stage says so in its own words
    if stale:
        what = ", ".join(f"{section}.{name} {old!r} -> {new!r}" for section, name, old, new in changes[:4])
        more = f" and {len(changes) - 4} more" if len(changes) > 4 else ""
        stderr.print(f"Note: settings changed since this run dir's last command ({escape(what)}{more}); "
                     f"{', '.join(stale)} no longer match them and rerun where this command needs them.",
                     highlight=False, soft_wrap=True)


def show_tracking(console: Console, where: dict[str, str] | None) -> None:
    """Where --log-to wrote (fedrouter_cli.tracking)."""
    for tracker, place in (where or {}).items():
        console.print(f"logged to {tracker}: {place}", highlight=False)


def _pinned(overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A typed --init-from is saved with a digest of the adapters it holds (federation.starting_point)."""
    value = (overrides.get("train") or {}).get("init_from")
    if value is None:
        return overrides
    from fedrouter_cli.federation.starting_point import pin

    return {**overrides, "train": {**overrides["train"], "init_from": pin(value)}}


def execute(*, run_dir: Path, json_out: bool, debug: bool, preset: str | None,
            overrides: dict[str, dict[str, Any]],
            action: Callable[[Config, RunDir, Callable[[str, int, int], None]], dict[str, Any]],
            render: Callable[[dict[str, Any], Console], None], default_preset: str | None = None,
            persist: bool = True, one_off: dict[str, tuple[str, ...]] | None = None, dry_run: bool = False) -> None:
    """Run one command: config from options, earlier typed options, preset and the saved config
    (fedrouter_cli.presets' docstring says which wins), then the action, then output.

    default_preset: the preset of a new run dir given none (default: the one that fits the machine,
    fedrouter_cli.presets.machine_preset). persist=False: a one-off command (generate, export,
    report) that leaves the run's saved settings as they were; one_off: settings of this command
    that apply to it alone (evaluate's --mode and --round), not saved for later commands.
    dry_run: print the resolved settings instead of running the action; nothing is saved."""
    quiet_libraries()
    show_own_warnings()
    if debug:
        os.environ["FEDROUTER_DEBUG"] = "1"  # stages then let the libraries' own error logs through
    out = stderr if json_out else Console()
    try:
        run = RunDir(run_dir)
        saved = load_config(run.config_path) if run.config_path.exists() else None
        if saved is None and preset is None and default_preset is None:
            from fedrouter_cli.presets import machine_preset

            default_preset = machine_preset()
        overrides = _pinned(overrides)
        config = resolve_config(run.config_path, preset, overrides, default_preset)
        announce_changes(run, saved, config)
        if (overrides.get("model") or {}).get("device") is not None:
            from fedrouter_cli.model.device import resolve_device

            resolve_device(config.model.device)  # --device cuda without CUDA: one sentence, before any work
        if dry_run:
            payload, render = {"dry_run": True, "run_dir": str(run.root), "settings": config.to_dict()}, render_settings
        else:
            with run.writing() if persist else nullcontext(), progress_reporter(enabled=not json_out) as progress:
                payload = action(config, run, progress)
                if persist:
                    run.root.mkdir(parents=True, exist_ok=True)
                    # typed.toml first: for a run dir without one, typed_so_far reads config.toml's
                    # non-default values as typed, which after this save would include the preset's
                    save_typed(run.config_path, without(overrides, one_off or {}))
                    save_config(run.config_path, keep_saved(config, saved, one_off or {}))
    except FedrouterError as exc:
        if debug:
            raise
        fail(str(exc), exc.exit_code, json_out)
    except KeyboardInterrupt:
        fail("Interrupted; completed stages and rounds are kept, rerun to continue.", 130, json_out, plain=True)
    except FederationStopped as exc:
        if debug:
            raise
        fail(f"{exc}; the finished rounds are kept, so rerun the same command to resume.", 1, json_out)
    except Exception as exc:  # a bug, not bad input: say so plainly
        if debug:
            raise
        fail(f"{exc.__class__.__name__}: {exc}. Rerun with --debug for the traceback and report it.", 1, json_out,
             label="Internal error")
    if json_out:
        sys.stdout.write(json.dumps(payload, default=str) + "\n")
    else:
        render(payload, out)


def render_settings(payload: dict[str, Any], console: Console) -> None:
    """--dry-run: the settings as config.toml would hold them."""
    from fedrouter_cli.config_file import toml_text

    console.print(f"# the settings for {payload['run_dir']} (--dry-run: nothing was run or saved)", highlight=False)
    console.print(escape(toml_text(payload["settings"])), highlight=False)


def fail(message: str, exit_code: int, json_out: bool, label: str = "Error", plain: bool = False) -> None:
    """Say what went wrong in one line on stderr (and, with --json, as one JSON object on stdout,
    so a script reads the error where it reads results), then exit with `exit_code`."""
    stderr.print(escape(message) if plain else f"[red]{label}:[/red] {escape(message)}", highlight=False,
                 soft_wrap=True)
    if json_out:
        sys.stdout.write(json.dumps({"error": message, "exit_code": exit_code}) + "\n")
    raise typer.Exit(exit_code) from None


def keep_saved(config: Config, saved: Config | None, one_off: dict[str, tuple[str, ...]]) -> Config:
    """`config` with the one-off settings put back to the run's saved values (or the defaults)."""
    from dataclasses import replace

    before = saved or Config()
    for section, names in one_off.items():
        kept = {name: getattr(getattr(before, section), name) for name in names}
        config = replace(config, **{section: replace(getattr(config, section), **kept)})
    return config


def without(overrides: dict[str, dict[str, Any]], one_off: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    """The typed options minus the one-off ones, which are not remembered for later commands."""
    return {section: {k: v for k, v in values.items() if k not in one_off.get(section, ())}
            for section, values in overrides.items()}


@contextmanager
def guarded(debug: bool, json_out: bool = False) -> Iterator[None]:
    """For commands without a run dir: bad input becomes one sentence and exit 2."""
    quiet_libraries()
    try:
        yield
    except FedrouterError as exc:
        if debug:
            raise
        fail(str(exc), exc.exit_code, json_out)


class PlainErrorsGroup(TyperGroup):
    """Prints usage errors (a bad option value, an unknown option) as click's plain `Error: ...`
    line, like the tool's own errors, instead of Typer's box, which wraps long messages; with
    --json anywhere on the line, also as one JSON object on stdout."""

    def main(self, args: list[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        self._json = "--json" in (sys.argv[1:] if args is None else list(args))
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            exc.show()
            if getattr(self, "_json", False):
                sys.stdout.write(json.dumps({"error": exc.format_message(), "exit_code": exc.exit_code}) + "\n")
            raise click.exceptions.Exit(exc.exit_code) from None


def stage_line(result: StageResult) -> str:
    state = "cached" if result.cache_hit else f"done in {result.seconds:.1f}s"
    return f"[bold]{result.stage}[/bold]: {state}"


def show_warnings(console: Console, warnings: list[str]) -> None:
    for warning in warnings:
        console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)


def simple_table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    return table


def render_on_nodes(stage: str, payload: dict[str, Any], console: Console) -> bool:
    """A deployment server's data stage (--source nodes) has no rows to show; True when it said so."""
    if not payload.get("on_nodes"):
        return False
    console.print(f"[bold]{stage}[/bold]: the data lives on the nodes (--source nodes); this run dir keeps the "
                  "settings for `fedrouter deploy submit`.")
    return True
