"""`fedrouter cluster-local`."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import (
    execute,
    render_on_nodes,
    show_warnings,
    simple_table,
    stage_line,
)
from fedrouter_cli.stages.common import StageResult


def render_clusters(payload: dict[str, Any], console: Console) -> None:
    if render_on_nodes("cluster-local", payload, console):
        return
    console.print(stage_line(StageResult("cluster-local", payload["cache_hit"], payload["seconds"])))
    rows = [[c["client"], c["k"], c["purity"], " ".join(map(str, c["sizes"]))] for c in payload["clients"]]
    columns = ["client", "K", "purity", "sizes"]
    if any("stability" in c for c in payload["clients"]):  # --n-clusters auto: how firmly each K was found
        columns.append("stability at K (next K)")
        for row, c in zip(rows, payload["clients"]):
            curve = c.get("stability", {})
            at, above = curve.get(str(c["k"])), curve.get(str(c["k"] + 1))
            if at is None:  # K = 1 (no split reproduces) or a K not chosen by the rule
                row.append(f"no split (best {max(curve.values()):.2f})" if c["k"] == 1 and curve else "–")
            else:
                row.append(f"{at:.2f}" + ("" if above is None else f" ({above:.2f})"))
    console.print(simple_table("Local clusters", columns, rows))
    if payload["purity"] is not None:  # None: the records have no task labels
        console.print(f"mean purity: [bold]{payload['purity']:.4f}[/bold]")
    show_warnings(console, payload.get("warnings", []))


@o.with_options(o.CLUSTER_OPTIONS, o.EMBED_OPTIONS, o.DATA_OPTIONS, o.COMMON_OPTIONS)
def cluster_local(run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR, *, shared: dict[str, Any]) -> None:
    """K-Means per client on its train embeddings; writes centroids and assignments, reports purity.

    --n-clusters auto: the largest K whose clustering is stable on resamples of the client's rows
    (mean adjusted Rand index >= 0.85 over 10 fits on 80% of them; K=1 when no split is).
    --n-clusters tasks: the paper's rule, K = the tasks the client holds in the
    scenario (single 1, dual 2, all every task). Runs partition and embed first when needed.
    """
    force = shared["force"]

    def action(cfg, run, progress):
        from fedrouter_cli.stages.pipeline import prepare

        results = prepare(cfg, run, "cluster-local", force, progress)
        return {**results[-1].to_json(), "warnings": [w for r in results for w in r.warnings]}

    execute(run_dir=run_dir, json_out=shared["json_out"], debug=shared["debug"], preset=shared["preset"],
            overrides=o.upstream_overrides(shared), action=action, render=render_clusters)
