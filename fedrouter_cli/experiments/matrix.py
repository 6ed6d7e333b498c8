"""Stage `bench`: the paper's experiment matrix as cells, each a run dir of the ordinary stages.

Every cell is one method on one data setting (scenario, seed, number of clients, K rule) in its
own run dir under `<bench dir>/cells/`, so a finished cell is a cache hit of the stages it ran and
an interrupted one resumes from its last round. The tables and plots are rebuilt from the cells'
outputs by `bench_results`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedrouter_cli.algorithms import BENCH_METHODS
from fedrouter_cli.config import SCENARIOS, Config
from fedrouter_cli.config_file import build_config, save_config
from fedrouter_cli.errors import BenchStopped, FedrouterError
from fedrouter_cli.rundir import BenchDir, RunDir
from fedrouter_cli.stages.common import Progress, no_progress

METHODS = BENCH_METHODS  # from the registry (fedrouter_cli.algorithms), in the tables' order
BASE = "base"
GROUPS = ("main", "schedule", "clients", "k-rule")
# How FedRouter picks its local and global K: 'tasks' is the paper's rule (as many global
# clusters as tasks, local K = the tasks a client holds), 'auto' this tool's automatic rules
# (local K by stability on resamples, global K by weighted silhouette).
K_RULES = ("tasks", "auto")


@dataclass(frozen=True)
class BenchPlan:
    """Which parts of the matrix to run. The defaults are the paper's experiments for one seed.

    The main table (every seed) runs first; the ablations run after it, on the first seed only."""

    methods: tuple[str, ...] = METHODS
    scenarios: tuple[str, ...] = SCENARIOS
    seeds: tuple[int, ...] = (0,)
    generalization: bool = True          # methods trained on `single`, tested on every task
    k_rule: str = "tasks"                # FedRouter's K rule in the main table
    ablation_clients: tuple[int, ...] = (4, 8, 16)  # FedRouter, single scenario; () = skip
    # FedRouter with the other K rule than the main table's, one row per scenario; () = skip
    k_rule_scenarios: tuple[str, ...] = SCENARIOS
    # FedRouter with this tool's staggered round-robin instead of the authors' schedule, at every
    # seed (a proposal of this tool's: it needs the main rows' evidence); () = skip
    schedule_scenarios: tuple[str, ...] = ("dual", "all")
    curve_scenario: str | None = "dual"   # evaluate every round of `curve_methods` here; None = skip
    curve_methods: tuple[str, ...] = ("fedrouter", "fedit")

    def __post_init__(self) -> None:
        for method in self.methods + self.curve_methods:
            if method not in METHODS:
                raise FedrouterError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
        if self.k_rule not in K_RULES:
            raise FedrouterError(f"--k-rule must be one of {', '.join(K_RULES)}, got {self.k_rule!r}.")
        for scenario in (*self.scenarios, *self.k_rule_scenarios, *self.schedule_scenarios, self.curve_scenario):
            if scenario is not None and scenario not in SCENARIOS:
                raise FedrouterError(f"Unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}.")
        if not self.methods or not self.scenarios or not self.seeds:
            raise FedrouterError("The bench needs at least one method, scenario and seed.")
        if any(s < 0 for s in self.seeds) or any(n < 1 for n in self.ablation_clients):
            raise FedrouterError("--seeds must be 0 or more and --ablation-clients positive.")


@dataclass(frozen=True)
class Cell:
    """One trained (or base-model) method on one data setting, with the evaluations it needs."""

    group: str
    scenario: str
    method: str
    seed: int
    clients: int
    k_rule: str = "tasks"       # FedRouter's local and global K rule (K_RULES)
    evaluations: tuple[tuple[str, str, int], ...] = field(default=())  # (mode, test_tasks, round; 0 = last)
    schedule: str = "authors"   # FedRouter's round-robin (config.SCHEDULES)

    def run_dir(self, root: Path) -> RunDir:
        return BenchDir(root).cell(self.name)

    def describe(self) -> dict[str, Any]:
        """The fields every record of this cell starts with (finished, read back, or failed)."""
        return {"cell": self.name, "group": self.group, "scenario": self.scenario, "method": self.method,
                "seed": self.seed, "clients": self.clients, "k_rule": self.k_rule, "schedule": self.schedule}

    @property
    def name(self) -> str:
        setting = {"main": "", "schedule": f"-{self.schedule}", "clients": f"-c{self.clients}",
                   "k-rule": f"-k{self.k_rule}"}[self.group]
        return f"{self.scenario}{setting}-s{self.seed}/{self.method}"


def _eval_mode(method: str, generalization: bool) -> str:
    """FedRouter routes with the client's own clusters for personalization, with all global
    clusters for generalization; the baselines have one router mode."""
    return "global" if generalization and method.startswith("fedrouter") else "local"


def plan_cells(plan: BenchPlan, config: Config) -> list[Cell]:
    """The cells of `plan` in the order they run: the main matrix for every seed first, then the
    ablations on the first seed. Within a scenario FedRouter runs first, the base model last."""
    clients, rounds = config.data.clients, config.train.rounds
    order = sorted((BASE, *plan.methods), key=lambda m: (m == BASE, not m.startswith("fedrouter")))
    cells: list[Cell] = []
    for seed in plan.seeds:
        for scenario in plan.scenarios:
            for method in order:
                evals = [("local", "scenario", 0)]
                if plan.generalization and scenario == "single":
                    evals.append((_eval_mode(method, True), "all", 0))
                if seed == plan.seeds[0] and scenario == plan.curve_scenario and method in plan.curve_methods:
                    evals += [("local", "scenario", r) for r in range(1, rounds)]
                cells.append(Cell("main", scenario, method, seed, clients, plan.k_rule, tuple(evals)))
    for seed in plan.seeds:  # beside a main FedRouter row of the same scenario only
        for scenario in [s for s in plan.schedule_scenarios if s in plan.scenarios and "fedrouter" in plan.methods]:
            cells.append(Cell("schedule", scenario, "fedrouter", seed, clients, plan.k_rule,
                              (("local", "scenario", 0),), schedule="staggered"))
    seed = plan.seeds[0]
    other_rule = next(rule for rule in K_RULES if rule != plan.k_rule)
    for scenario in plan.k_rule_scenarios:
        cells.append(Cell("k-rule", scenario, "fedrouter", seed, clients, other_rule, (("local", "scenario", 0),)))
    for n in plan.ablation_clients:
        if n != clients or "single" not in plan.scenarios:
            cells.append(Cell("clients", "single", "fedrouter", seed, n, plan.k_rule, (("local", "scenario", 0),)))
    return cells


def cell_config(config: Config, cell: Cell) -> Config:
    alg, variant = ("fedrouter", "star") if cell.method == "fedrouter-star" else (cell.method, "standard")
    layer: dict[str, dict[str, Any]] = {
        "data": {"scenario": cell.scenario, "seed": cell.seed, "clients": cell.clients, "test_tasks": "scenario"},
        "cluster": {"seed": cell.seed, "n_clusters": cell.k_rule},
        "train": {"seed": cell.seed, "variant": variant, **({} if cell.method == BASE else {"alg": alg})},
    }
    if alg == "fedrouter":  # FedCluster's --clusters (client groups) keeps its own default
        layer["train"]["global_clusters"] = cell.k_rule
        layer["train"]["schedule"] = cell.schedule
    return build_config(config, layer)


def run_cell(config: Config, root: Path, cell: Cell, progress: Progress = no_progress) -> dict[str, Any]:
    """Run (or reuse) one cell's stages; returns what the results tables need."""
    from fedrouter_cli.experiments.paired import sample_scores
    from fedrouter_cli.stages.evaluate import BASE_ALG, evaluation_name, run_evaluate
    from fedrouter_cli.stages.pipeline import prepare
    from fedrouter_cli.stages.select_k import run_select_k
    from fedrouter_cli.stages.simulate import run_simulate

    cfg = cell_config(config, cell)
    run = cell.run_dir(root)
    run.root.mkdir(parents=True, exist_ok=True)
    save_config(run.config_path, cfg)
    results = prepare(cfg, run, "cluster-local", progress=progress)
    record: dict[str, Any] = {**cell.describe(), "run_dir": str(run.root), "evaluations": []}
    if cell.method.startswith("fedrouter"):
        try:  # the silhouette curves are a diagnostic: a few points (a small ablation) have none
            selected = {level: run_select_k(cfg, run, level) for level in ("local", "global")}
        except FedrouterError as exc:
            record["select_k_skipped"] = str(exc)
        else:
            results += selected.values()
            record["select_k"] = {level: result.summary for level, result in selected.items()}
        record["cluster_local"] = local_clusters(run)
    alg = BASE_ALG if cell.method == BASE else cfg.train.alg
    if alg != BASE_ALG:
        results.append(run_simulate(cfg, run, progress=progress))
        # the manifest's seconds are the training run's, also when this call was a cache hit
        record["simulate"] = {**results[-1].to_json(), "seconds": run.require("simulate", alg)["seconds"]}
    record["samples"] = {}  # per-sample scores, for the intervals (bench_stats moves them to a file)
    for mode, test_tasks, round_number in cell.evaluations:
        eval_cfg = replace(cfg, data=replace(cfg.data, test_tasks=test_tasks),
                           eval=replace(cfg.eval, mode=mode, round=round_number))
        results.append(run_evaluate(eval_cfg, run, alg, progress=progress))
        record["evaluations"].append(results[-1].summary)
        record["samples"][evaluation_name(mode, test_tasks, round_number)] = sample_scores(
            Path(results[-1].summary["predictions_path"]))
    record["cached"] = all(result.cache_hit for result in results)
    return record


def local_clusters(run: RunDir) -> dict[str, Any]:
    """The K each client chose and the mean purity of its clusters (cluster-local's summary)."""
    summary = run.require("cluster-local")["summary"]
    return {"purity": summary["purity"], "k": [c["k"] for c in summary["clients"]]}


def cell_fingerprints(config: Config, cell: Cell) -> dict[str, str]:
    """What a cell's results depend on: its training run and each evaluation (settings and data
    content, through the stages' fingerprint chain). A record carrying equal fingerprints is the
    same experiment, wherever and whenever it ran."""
    from fedrouter_cli.fingerprints import evaluate_fingerprint, simulate_fingerprint
    from fedrouter_cli.stages.evaluate import BASE_ALG, evaluation_name

    cfg = cell_config(config, cell)
    alg = BASE_ALG if cell.method == BASE else cfg.train.alg
    prints = {} if alg == BASE_ALG else {"simulate": simulate_fingerprint(cfg)}
    for mode, test_tasks, round_number in cell.evaluations:
        eval_cfg = replace(cfg, data=replace(cfg.data, test_tasks=test_tasks),
                           eval=replace(cfg.eval, mode=mode, round=round_number))
        evaluated_round = 0 if alg == BASE_ALG else round_number or cfg.train.rounds
        prints[evaluation_name(mode, test_tasks, round_number)] = evaluate_fingerprint(eval_cfg, alg, evaluated_round)
    return prints


def carried_over(config: Config, cell: Cell, ledger: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The ledger's record of `cell` if it finished with exactly this cell's settings and data;
    else a record of another name that did (the same experiment under the name of an earlier
    plan: the staggered schedule's cells were the main table's FedRouter cells). Such a record
    keeps where its per-sample scores were stored (`samples_cell`)."""
    wanted = cell_fingerprints(config, cell)
    record = ledger.get(cell.name)
    if record is None or "error" in record or record.get("fingerprints") != wanted:
        record = next((r for r in ledger.values() if r.get("fingerprints") == wanted and r["method"] == cell.method
                       and "error" not in r), None)
        if record is None:
            return None
        record = record | cell.describe() | {"samples_cell": record.get("samples_cell", record["cell"])}
    return record | {"cached": True, "carried_over": True}


def finished_cell(config: Config, root: Path, cell: Cell) -> dict[str, Any] | None:
    """The record of a cell whose stages all finished with the cell's settings, without running
    anything (None otherwise): lets `--report-only` tabulate a bench that is still running."""
    from fedrouter_cli.fingerprints import simulate_fingerprint
    from fedrouter_cli.stages.evaluate import BASE_ALG, evaluation_name

    cfg = cell_config(config, cell)
    run = cell.run_dir(root)
    alg = BASE_ALG if cell.method == BASE else cfg.train.alg
    record: dict[str, Any] = {**cell.describe(), "run_dir": str(run.root), "evaluations": [], "cached": True}
    if alg != BASE_ALG:
        simulated = run.manifest("simulate", alg)
        if simulated is None or simulated["fingerprint"] != simulate_fingerprint(cfg):
            return None
        record["simulate"] = {**simulated["summary"], "seconds": simulated["seconds"]}
    if cell.method.startswith("fedrouter"):
        selected = {level: run.manifest("select-k", level) for level in ("local", "global")}
        if all(selected.values()):
            record["select_k"] = {level: m["summary"] for level, m in selected.items()}
        record["cluster_local"] = local_clusters(run)
    for mode, test_tasks, round_number in cell.evaluations:
        evaluated = run.manifest("evaluate", alg, evaluation_name(mode, test_tasks, round_number))
        if evaluated is None:
            return None
        record["evaluations"].append(evaluated["summary"])
    return record


def run_bench(config: Config, root: Path, plan: BenchPlan, progress: Progress = no_progress,
              on_cell: Callable[[int, int, Cell, dict[str, Any]], None] | None = None,
              report_only: bool = False, ledger: dict[str, dict[str, Any]] | None = None,
              checkpoint: Callable[[list[dict[str, Any]]], None] | None = None,
              retries: int = 1, stop_file: Path | None = None) -> list[dict[str, Any]]:
    """Run every cell in order. A cell that fails is recorded and the bench goes on; bad settings
    fail before any work starts. `report_only` runs nothing and returns the finished cells.

    ledger: records of an earlier bench (its bench.json), by cell name. A cell whose record
    matches its fingerprints is carried over instead of rerun, so a matrix too long for one
    machine session continues in the next one from the committed results alone.
    checkpoint: called after every cell with every record known so far (the ledger's records of
    cells not reached yet included), so an interrupted bench loses at most the running cell.
    retries: how many times a crashed cell is run again before it is recorded as failed.
    stop_file: when it exists before a cell is run, it is removed and BenchStopped is raised; the
    checkpoint after the last cell already holds everything finished.
    """
    from fedrouter_cli.stages.pipeline import prepare

    cells = plan_cells(plan, config)
    for cell in cells:
        cell_config(config, cell)  # validate every cell's settings up front
    ledger = ledger or {}
    records: list[dict[str, Any]] = []
    for index, cell in enumerate(cells, start=1):
        started = time.perf_counter()
        if (carried := carried_over(config, cell, ledger)) is not None:
            if not report_only:  # the data stages are cheap and the plots read them
                prepare(cell_config(config, cell), cell.run_dir(root), "cluster-local")
                carried["run_dir"] = str(cell.run_dir(root).root)
            records.append(carried)
            if on_cell:
                on_cell(index, len(cells), cell, carried)
            continue
        if report_only:
            if (done := finished_cell(config, root, cell)) is not None:
                records.append(done | {"bench_seconds": 0.0, "fingerprints": cell_fingerprints(config, cell)})
            if on_cell:
                on_cell(index, len(cells), cell, done or {"pending": True, "bench_seconds": 0.0})
            continue
        if stop_file is not None and stop_file.exists():
            stop_file.unlink()
            raise BenchStopped(cell.name)
        record = _run_with_retries(config, root, cell, progress, retries)
        record["bench_seconds"] = round(time.perf_counter() - started, 3)
        if "error" not in record:
            record["fingerprints"] = cell_fingerprints(config, cell)
        records.append(record)
        if on_cell:
            on_cell(index, len(cells), cell, record)
        if checkpoint:
            reached = {r["cell"] for r in records}
            checkpoint(records + [r for c in cells[index:] if c.name not in reached
                                  and (r := carried_over(config, c, ledger)) is not None])
    return records


def _run_with_retries(config: Config, root: Path, cell: Cell, progress: Progress, retries: int) -> dict[str, Any]:
    """Run one cell; after a crash, run it again up to `retries` times. A rerun resumes from the
    cell's last finished stage and round, so it is cheap, and it gets past transient failures
    such as a Ray backend that timed out starting on a busy machine. Bad settings
    (FedrouterError) are never retried: they would fail the same way."""
    errors: list[str] = []
    for _attempt in range(retries + 1):
        try:
            record = run_cell(config, root, cell, progress)
        except FedrouterError:
            raise
        except Exception as exc:  # one broken cell must not cost the hours spent on the others
            errors.append(f"{exc.__class__.__name__}: {exc}")
            last_traceback = traceback.format_exc(limit=8)
            continue
        if errors:
            record["retried_after"] = errors
        return record
    return {**cell.describe(), "error": errors[-1], "attempts": len(errors), "traceback": last_traceback}


def kept_records(ledger: dict[str, dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ledger's records that `records` do not replace: cells outside this plan, or run with
    other settings. bench.json keeps them (untabulated), so a partial or mistyped bench never
    throws away finished work; a record goes only when a newer run of its cell replaces it."""
    replaced = {r["cell"] for r in records}
    return [r for name, r in ledger.items() if name not in replaced]


def read_ledger(path: Path) -> dict[str, dict[str, Any]]:
    """The finished records of an earlier bench's bench.json, by cell name ({} if there is none)."""
    import json

    if not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text())
        cells = saved["cells"] + saved.get("kept_cells", [])
        return {r["cell"]: r for r in cells if "fingerprints" in r and "error" not in r}
    except (ValueError, KeyError, TypeError) as exc:
        raise FedrouterError(f"{path} is not a bench.json written by `fedrouter bench` ({exc.__class__.__name__}); "
                             "move it away or pass another --results-dir.") from None
