"""Pipeline stages: plain functions `run_X(config, run, force) -> StageResult`, no Typer or Rich."""
