"""`fedrouter simulate`."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute, show_tracking, show_warnings, simple_table


def render_simulate(payload: dict[str, Any], console: Console) -> None:
    state = "cached" if payload["cache_hit"] else f"{payload['seconds']:.1f}s"
    rows = []
    for tag, losses in payload["loss_by_round"].items():
        rounds = sorted(losses, key=int)
        rows.append([tag, len(rounds), losses[rounds[0]], losses[rounds[-1]]])
    console.print(simple_table(f"{payload['alg']} ({payload['variant']}): training loss per adapter",
                               ["adapter", "rounds trained", "first", "last"], rows))
    purity = payload.get("global_purity")
    console.print(
        f"[bold]simulate[/bold] {state}: {payload['rounds_completed']} rounds, "
        f"{payload['global_clusters']} server-side adapters"
        + (f", global purity {purity:.3f}" if purity is not None else "")
        + f", {payload['bytes_up'] / 1e6:.1f} MB up / {payload['bytes_down'] / 1e6:.1f} MB down, "
        f"{payload['failed_jobs']} failed jobs\nadapters: {payload['adapters_dir']}", highlight=False)
    show_tracking(console, payload.get("tracking"))
    show_warnings(console, payload.get("warnings", []))


@o.with_options(o.EMBED_OPTIONS, o.CLUSTER_OPTIONS, o.DATA_OPTIONS, o.PRIVACY_OPTIONS, o.COMMON_OPTIONS,
                {"dry_run": o.DryRunOpt})
def simulate(
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    alg: o.AlgOpt = None,
    variant: o.VariantOpt = None,
    rounds: o.RoundsOpt = None,
    local_steps: o.LocalStepsOpt = None,
    batch_size: o.BatchSizeOpt = None,
    lr: o.LrOpt = None,
    lora_r: o.LoraROpt = None,
    lora_alpha: o.LoraAlphaOpt = None,
    lora_dropout: o.LoraDropoutOpt = None,
    max_length: o.MaxLengthOpt = None,
    global_clusters: o.GlobalClustersOpt = None,
    round_timeout: o.RoundTimeoutOpt = None,
    load_in_4bit: o.Load4bitOpt = None,
    group_by_length: o.GroupByLengthOpt = None,
    schedule: o.ScheduleOpt = None,
    max_grad_norm: o.MaxGradNormOpt = None,
    shared_init: o.SharedInitOpt = None,
    prompt_format: o.PromptFormatOpt = None,
    clients_per_round: o.ClientsPerRoundOpt = None,
    fraction_train: o.FractionTrainOpt = None,
    init_from: o.InitFromOpt = None,
    log_to: o.LogToOpt = None,
    workers: o.WorkersOpt = 0,
    gpus_per_client: o.GpusPerClientOpt = 0.0,
    *,
    shared: dict[str, Any],
) -> None:
    """Run federated fine-tuning on Flower's simulation engine, one virtual node per client.

    Runs partition, embed and cluster-local first when needed. Each round's adapters (PEFT
    folders), server state and metrics are saved; a killed run continues from its last round.
    """
    overrides = o.upstream_overrides(shared)
    overrides["model"]["load_in_4bit"] = load_in_4bit
    overrides["train"] = o.train_overrides(alg, variant, rounds, local_steps, batch_size, lr, lora_r, lora_alpha,
                                           lora_dropout, max_length, global_clusters, shared["seed"], round_timeout,
                                           group_by_length, schedule, max_grad_norm, shared_init, prompt_format,
                                           clients_per_round, fraction_train, init_from)
    force = shared["force"]

    def action(cfg, run, progress):
        from fedrouter_cli.federation.engine import check_request
        from fedrouter_cli.stages.pipeline import prepare
        from fedrouter_cli.stages.simulate import run_simulate
        from fedrouter_cli.tracking import check_trackers, track_training

        check_request(cfg, gpus_per_client)  # before the data stages, so a refused setting changes nothing
        trackers = check_trackers(log_to)
        results = prepare(cfg, run, "cluster-local", False, progress)
        result = run_simulate(cfg, run, force, progress, workers, gpus_per_client)
        return {**result.to_json(), "warnings": [w for r in results for w in r.warnings],
                "tracking": track_training(trackers, run, cfg)}

    execute(run_dir=run_dir, json_out=shared["json_out"], debug=shared["debug"], preset=shared["preset"],
            overrides=overrides, action=action, render=render_simulate, dry_run=shared["dry_run"])
