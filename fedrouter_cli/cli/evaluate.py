"""`fedrouter evaluate`."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute, show_tracking, simple_table


def render_scores(payload: dict[str, Any], console: Console) -> None:
    title = f"{payload['alg']} ({payload['mode']} router, round {payload['round']})"
    if payload["per_task"]:
        rows = [[task, score] for task, score in payload["per_task"].items()]
        console.print(simple_table(f"{title}: ROUGE-1 per task", ["task", "ROUGE-1"], rows))
    else:  # one's own records without a task column: no figure by task exists
        rows = [[client, score] for client, score in payload["per_client"].items()]
        console.print(simple_table(f"{title}: ROUGE-1 per client (no task labels)", ["client", "ROUGE-1"], rows))
    if payload.get("task_labels") == "some":
        console.print("[yellow]Some test rows have no task label[/yellow]: ROUGE counts them, the figures by task "
                      "and routing accuracy do not.", highlight=False)
    for client, reason in (payload.get("missing_clients") or {}).items():
        console.print(f"[yellow]{client} is missing from the scores[/yellow]: {reason}", highlight=False)
    acc = payload.get("routing_accuracy")
    state = "cached" if payload.get("cache_hit") else f"{payload['seconds']:.1f}s"
    console.print(f"[bold]evaluate[/bold] {state}: {payload['samples']} samples, ROUGE-1 {payload['rouge1']:.4f}, "
                  f"ROUGE-2 {payload['rouge2']:.4f}, ROUGE-L {payload['rougeL']:.4f}"
                  + (f", routing accuracy {acc:.3f}" if acc is not None else ""), highlight=False)
    show_tracking(console, payload.get("tracking"))


def evaluate(
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    alg: o.AlgOpt = None,
    mode: o.ModeOpt = None,
    round: o.RoundOpt = None,
    test_tasks: o.TestTasksOpt = None,
    max_new_tokens: o.MaxNewTokensOpt = None,
    generation: o.GenerationOpt = None,
    eval_batch_size: o.EvalBatchOpt = None,
    token_budget: o.TokenBudgetOpt = None,
    rouge_stemming: o.RougeStemmingOpt = None,
    local_route: o.LocalRouteOpt = None,
    on: o.EvalOnOpt = "server",
    device: o.DeviceOpt = None,
    log_to: o.LogToOpt = None,
    preset: o.PresetOpt = None,
    force: o.ForceOpt = False,
    json_out: o.JsonOpt = False,
    debug: o.DebugOpt = False,
) -> None:
    """Route each test sample to an adapter, generate greedily and score ROUGE-1/2/L F1.

    --alg base evaluates the base model with no adapter, the same way. Needs `simulate` first
    (for any other --alg); settings not given come from the run directory's config. --mode and
    --round choose this evaluation only: a later plain `evaluate` uses the run's own again.
    --on nodes runs the scoring on each client's Flower node (simulation engine); for a deployed
    federation use `fedrouter deploy submit --stage evaluate`.
    """
    overrides = {"data": {"test_tasks": test_tasks}, "train": {"alg": alg if alg != "base" else None},
                 "model": {"device": device},
                 "eval": {"mode": mode, "round": round, "max_new_tokens": max_new_tokens,
                          "generation": generation, "batch_size": eval_batch_size,
                          "token_budget": token_budget, "rouge_stemming": rouge_stemming,
                          "local_route": local_route}}

    def action(cfg, run, progress):
        from fedrouter_cli.stages.evaluate import run_evaluate
        from fedrouter_cli.tracking import check_trackers, track_scores

        trackers = check_trackers(log_to)
        scores = run_evaluate(cfg, run, alg, force, progress, on=on).to_json()
        return {**scores, "tracking": track_scores(trackers, run, cfg, scores)}

    execute(run_dir=run_dir, json_out=json_out, debug=debug, preset=preset, overrides=overrides,
            action=action, render=render_scores, one_off={"eval": ("mode", "round")})
