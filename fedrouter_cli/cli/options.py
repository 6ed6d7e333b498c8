"""Options shared by several commands (a command also takes the options of the stages it needs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fedrouter_cli.algorithms import choices_help
from fedrouter_cli.config import Config

_DEFAULTS = Config()


def default(section: str, name: str) -> str:
    """A setting's default as help text shows it, read from the config itself (one source)."""
    return _shown(getattr(getattr(_DEFAULTS, section), name))


def preset_sizes(section: str, name: str) -> str:
    """A size the presets set, as help text shows it: each machine preset's value."""
    from fedrouter_cli.presets import PRESETS

    values = {p: PRESETS[p].get(section, {}).get(name, getattr(getattr(_DEFAULTS, section), name)) for p in ("cpu", "paper")}
    return f"preset: cpu {_shown(values['cpu'])}, paper {_shown(values['paper'])}"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "all"
    return str(value)


RunDirOpt = Annotated[Path, typer.Option("--run-dir", "-r", help="Run directory holding every stage's outputs.",
                                         envvar="FEDROUTER_RUN_DIR")]
DEFAULT_RUN_DIR = Path("artifacts/default")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout (for scripts).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun this stage even if its cached output matches.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the settings this command would use (after presets "
                                                           "and the run dir's saved ones), and exit: no work, nothing saved.")]
PresetOpt = Annotated[Optional[str], typer.Option(
    "--preset", help="Group of sizes: smoke (a plumbing check, scores mean nothing: about a minute for `run` on 2 cores, "
                     "most of it Flower's engine starting), quick (`run`'s default: ~6 minutes on 2 cores), cpu (the bench's "
                     "sizes, ~10 minutes), paper (the paper's, GPU).")]

# partition
SourceOpt = Annotated[Optional[str], typer.Option(
    "--source", help="'synthetic' (built-in generator), 'hf' (the paper's data sets, online), a folder of "
                     "TASK/{train,test}.jsonl, or with --client-column a file of your own records (JSONL, JSON, "
                     "CSV, Parquet, a folder of them, or a datasets save_to_disk folder).")]
ClientColumnOpt = Annotated[Optional[str], typer.Option(
    "--client-column", help="Your own records: the column whose values are the clients (a user, a site); one "
                            "client per value, each with its own seeded test share (--test-fraction).")]
InstructionColumnOpt = Annotated[Optional[str], typer.Option(
    "--instruction-column", help=f"Your own records: the instruction column (default: {default('data', 'instruction_column')}).")]
ResponseColumnOpt = Annotated[Optional[str], typer.Option(
    "--response-column", help=f"Your own records: the response column (default: {default('data', 'response_column')}).")]
InputColumnOpt = Annotated[Optional[str], typer.Option(
    "--input-column", help="Your own records: an optional input column, joined to the instruction (Alpaca's input).")]
TaskColumnOpt = Annotated[Optional[str], typer.Option(
    "--task-column", help="Your own records: an optional task label column, used only for figures by task.")]
TestFractionOpt = Annotated[Optional[float], typer.Option(
    "--test-fraction", help=f"Your own records: each client's share of rows kept for its test set "
                            f"(default: {default('data', 'test_fraction')}).")]
QuantitySkewOpt = Annotated[Optional[float], typer.Option(
    "--quantity-skew", help="Uneven clients: train sizes from a seeded Dirichlet with this alpha over the same total "
                            "(smaller = more uneven; each client keeps at least one batch) "
                            f"(0 = equal sizes; default: {default('data', 'quantity_skew')}).")]
TasksOpt = Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated tasks to use (default: all of the source).")]
ScenarioOpt = Annotated[Optional[str], typer.Option(
    "--scenario", help="single: one task per client group; dual: two tasks per client; all: every task everywhere.")]
ClientsOpt = Annotated[Optional[int], typer.Option("--clients", help=f"Number of clients ({preset_sizes('data', 'clients')}).")]
TrainPerClientOpt = Annotated[Optional[int], typer.Option("--train-per-client", help=f"Train samples per client ({preset_sizes('data', 'train_per_client')}).")]
TestPerClientOpt = Annotated[Optional[int], typer.Option("--test-per-client", help=f"Test samples per client ({preset_sizes('data', 'test_per_client')}).")]
TestTasksOpt = Annotated[Optional[str], typer.Option(
    "--test-tasks", help="scenario: test on the client's own tasks; all: test every client on every task (generalization).")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help=f"Seed for sampling, clustering and training (default: {default('data', 'seed')}).")]

# model and embed
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", help="Base model: a Hugging Face id, a local folder, or 'smollm2-135m-instruct' (offline default).")]
Load4bitOpt = Annotated[Optional[bool], typer.Option("--load-in-4bit/--no-load-in-4bit", help="Load the base model in 4-bit NF4 (bitsandbytes; needs CUDA).")]
DeviceOpt = Annotated[Optional[str], typer.Option(
    "--device", help="auto (CUDA when available; the default), cpu or cuda: where the base model, the embedder and "
                     "every batch run. On CUDA weights and compute are bf16 where the GPU supports it; the CPU stays fp32.")]
EmbedderOpt = Annotated[Optional[str], typer.Option(
    "--embedder", help="minilm (all-MiniLM-L6-v2, offline), minilm+chars (MiniLM with character n-gram features), base (the base "
                 f"model, the paper's choice) or a sentence-encoder id/folder (default: {default('embed', 'embedder')}).")]
EmbedMaxLengthOpt = Annotated[Optional[int], typer.Option(
    "--embed-max-length", help=f"Tokens of each raw input the embedder reads (default: {default('embed', 'max_length')}; the authors: 1024).")]
EmbedBatchOpt = Annotated[Optional[int], typer.Option(
    "--embed-batch-size", help=f"Texts per embedding batch (default: {default('embed', 'batch_size')}; on a GPU each batch holds 8x this).")]

# cluster
NClustersOpt = Annotated[Optional[str], typer.Option(
    "--n-clusters", help="Local clusters per client: a number; 'tasks' (the paper's rule: the tasks the client holds in the scenario, "
            "single 1 / dual 2 / all every task, no silhouette); or 'auto' (the largest K in k-min..k-max whose clustering is stable on resamples of the client's rows; K=1 if none is).")]
KMinOpt = Annotated[Optional[int], typer.Option("--k-min", help=f"Smallest K tried by the automatic rules and select-k (default: {default('cluster', 'k_min')}).")]
KMaxOpt = Annotated[Optional[int], typer.Option("--k-max", help=f"Largest K tried by the automatic rules and select-k (default: {default('cluster', 'k_max')}).")]


def split_tasks(tasks: str | None) -> tuple[str, ...] | None:
    if tasks is None:
        return None
    return tuple(t.strip() for t in tasks.split(",") if t.strip())


def data_overrides(source=None, tasks=None, scenario=None, clients=None, train_per_client=None,
                   test_per_client=None, test_tasks=None, seed=None, **own_records) -> dict:
    """own_records: client_column, instruction_column, response_column, input_column, task_column,
    test_fraction (None = not typed)."""
    return {"source": source, "tasks": split_tasks(tasks), "scenario": scenario, "clients": clients,
            "train_per_client": train_per_client, "test_per_client": test_per_client,
            "test_tasks": test_tasks, "seed": seed, **own_records}

# simulate
AlgOpt = Annotated[Optional[str], typer.Option("--alg", help=f"Algorithm ({choices_help()}).")]
VariantOpt = Annotated[Optional[str], typer.Option(
    "--variant", help="FedRouter variant: standard (one adapter per round, see --schedule) or star (every adapter every round).")]
RoundsOpt = Annotated[Optional[int], typer.Option("--rounds", help=f"Federated rounds ({preset_sizes('train', 'rounds')}).")]
LocalStepsOpt = Annotated[Optional[int], typer.Option("--local-steps", help=f"Optimizer steps per adapter per round ({preset_sizes('train', 'local_steps')}).")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", help=f"Training batch size ({preset_sizes('train', 'batch_size')}).")]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help=f"Peak learning rate, cosine over rounds ({preset_sizes('train', 'lr')}).")]
LoraROpt = Annotated[Optional[int], typer.Option("--lora-r", help=f"LoRA rank (default: {default('train', 'lora_r')}; the paper's).")]
LoraAlphaOpt = Annotated[Optional[int], typer.Option("--lora-alpha", help=f"LoRA alpha (default: {default('train', 'lora_alpha')}; the paper's).")]
LoraDropoutOpt = Annotated[Optional[float], typer.Option("--lora-dropout", help=f"LoRA dropout (default: {default('train', 'lora_dropout')}; the paper's).")]
MaxLengthOpt = Annotated[Optional[int], typer.Option("--max-length", help=f"Max tokens per training example ({preset_sizes('train', 'max_length')}).")]
GlobalClustersOpt = Annotated[Optional[str], typer.Option(
    "--global-clusters", "--clusters",
    help="Server-side clusters: FedRouter's global task clusters / FedCluster's client groups; a number, 'tasks' "
         "(the paper's rule: the number of tasks in the federation) or 'auto' (silhouette; for FedRouter the "
         "smallest K whose size-weighted silhouette is within 12% of the best, or the curve's knee if earlier, "
         "so one task's sub-clusters merge).")]
MaxGradNormOpt = Annotated[Optional[float], typer.Option(
    "--max-grad-norm", help="Clip each training step's gradient to this L2 norm; 0 = off (1.0 is the authors' HF Trainer "
                            f"default; {preset_sizes('train', 'max_grad_norm')}).")]
SharedInitOpt = Annotated[Optional[bool], typer.Option(
    "--shared-init/--no-shared-init", help="FedRouter: every global adapter starts from one initialisation (the "
                                           "authors'), not from one seed each "
                                           f"({preset_sizes('train', 'shared_init')}).")]
ScheduleOpt = Annotated[Optional[str], typer.Option(
    "--schedule", help="FedRouter's round-robin: authors (the paper's: round r trains the client's local cluster r mod K) "
                       "or staggered (each client cycles over its distinct global adapters from its own place) "
                       f"(default: {default('train', 'schedule')}).")]
ClientsPerRoundOpt = Annotated[Optional[int], typer.Option(
    "--clients-per-round", help="Clients sampled (seeded, anew each round) to train in a round; a client that sits "
                                "rounds out continues its own round-robin when next sampled "
                                f"(0 = every client; default: {default('train', 'clients_per_round')}).")]
FractionTrainOpt = Annotated[Optional[float], typer.Option(
    "--fraction-train", help="Share of the clients sampled each round, instead of --clients-per-round "
                             f"(0 = every client; default: {default('train', 'fraction_train')}).")]
LogToOpt = Annotated[Optional[list[str]], typer.Option(
    "--log-to", help="Also log per-round training metrics and final scores, with the settings, to an experiment "
                     "tracker, offline: tensorboard (event files in <run-dir>/tracking/) or mlflow (a local "
                     "store there, or MLFLOW_TRACKING_URI); repeat or comma-separate for both. Optional extras: "
                     "pip install \"fedrouter[tensorboard]\" or \"fedrouter[mlflow]\".")]
InitFromOpt = Annotated[Optional[str], typer.Option(
    "--init-from", help="Start from the adapters of a run dir (its last saved round of the same --alg) or of a folder "
                        "written by `fedrouter export`, instead of fresh ones; the learning-rate schedule starts "
                        "again from --lr ('none' = fresh adapters; default: none).")]
PromptFormatOpt = Annotated[Optional[str], typer.Option(
    "--prompt-format", help="alpaca (the paper's instruction/response template) or chat (the tokenizer's own chat "
                            f"template, for instruction-tuned models) (default: {default('train', 'prompt_format')}).")]
GroupByLengthOpt = Annotated[Optional[bool], typer.Option(
    "--group-by-length/--no-group-by-length",
    help=f"Train on batches of like-length rows, seeded (default: {default('train', 'group_by_length')}; the bench: "
         "off, as its table was measured).")]
WorkersOpt = Annotated[int, typer.Option(
    "--workers", min=0, help="Clients that train at once, one core each (0 = auto: one per core, as memory allows). "
                      "Results do not depend on it.")]
GpusPerClientOpt = Annotated[float, typer.Option(
    "--gpus-per-client", min=0.0, help="Share of a GPU each simulated client gets (0.25 = four clients train at once on "
                                       "one GPU; 0 = auto: as many as GPU memory fits). CUDA only.")]
RoundTimeoutOpt = Annotated[Optional[float], typer.Option("--round-timeout", help="Seconds the server waits for replies each round.")]

# privacy (simulate)
DpEpsilonOpt = Annotated[Optional[float], typer.Option(
    "--dp-epsilon", help="Local DP on adapter updates: (epsilon, delta) per update a client sends; 0 = off "
                         f"(default: {default('privacy', 'dp_epsilon')}).")]
DpClipOpt = Annotated[Optional[float], typer.Option("--dp-clip", help=f"L2 norm each adapter update is clipped to under DP (default: {default('privacy', 'dp_clip')}).")]
DpDeltaOpt = Annotated[Optional[float], typer.Option("--dp-delta", help=f"DP delta for updates and centroids (default: {default('privacy', 'dp_delta')}).")]
CentroidEpsilonOpt = Annotated[Optional[float], typer.Option(
    "--centroid-epsilon", help="Gaussian noise on the local centroids clients send, (epsilon, delta)-DP; 0 = off "
                               f"(default: {default('privacy', 'centroid_epsilon')}).")]
PRIVACY_OPTIONS: dict[str, Any] = {"dp_epsilon": DpEpsilonOpt, "dp_clip": DpClipOpt, "dp_delta": DpDeltaOpt,
                                   "centroid_epsilon": CentroidEpsilonOpt}

# evaluate
ModeOpt = Annotated[Optional[str], typer.Option(
    "--mode", help="Router mode: local (the client's own clusters, personalization) or global (all global clusters, generalization).")]
RoundOpt = Annotated[Optional[int], typer.Option("--round", help="Round whose adapters to evaluate (default: the last).")]
MaxNewTokensOpt = Annotated[Optional[int], typer.Option("--max-new-tokens", help=f"Tokens generated per answer ({preset_sizes('eval', 'max_new_tokens')}).")]
GenerationOpt = Annotated[Optional[str], typer.Option(
    "--generation", help="mixed (different adapters in one batch; fastest), grouped (a batch per adapter) or per-sample.")]
RougeStemmingOpt = Annotated[Optional[bool], typer.Option(
    "--rouge-stemming/--no-rouge-stemming", help="Score ROUGE with Porter stemming or without (the authors', the "
                                                 "evaluate library's default) "
                                                 f"(default: {default('eval', 'rouge_stemming')}).")]
LocalRouteOpt = Annotated[Optional[str], typer.Option(
    "--local-route", help="FedRouter's local mode: local (nearest of the client's local centroids, then that "
                          "cluster's global adapter) or global (nearest of the global centroids its clusters "
                          f"map to: the authors') (default: {default('eval', 'local_route')}).")]
TokenBudgetOpt = Annotated[Optional[bool], typer.Option(
    "--token-budget/--no-token-budget",
    help="Stop each answer at its adapter's budget: the 99th percentile of its training responses' length "
         "+ 25% + 4 tokens, at most --max-new-tokens "
         f"(default: {default('eval', 'token_budget')}; the bench: off, as its table was measured).")]
EvalOnOpt = Annotated[str, typer.Option(
    "--on", help="server: this machine holds every client's test rows (a simulation). nodes: each client's node "
                 "scores its own test set and returns only per-task sums and counts; predictions stay on the nodes.")]
EvalBatchOpt = Annotated[Optional[int], typer.Option(
    "--eval-batch-size", help="Prompts per generation batch (on a GPU each batch holds 4x this) "
                               f"({preset_sizes('eval', 'batch_size')}).")]


def train_overrides(alg=None, variant=None, rounds=None, local_steps=None, batch_size=None, lr=None, lora_r=None,
                    lora_alpha=None, lora_dropout=None, max_length=None, global_clusters=None, seed=None,
                    round_timeout=None, group_by_length=None, schedule=None, max_grad_norm=None,
                    shared_init=None, prompt_format=None, clients_per_round=None, fraction_train=None,
                    init_from=None) -> dict:
    return {"alg": alg, "variant": variant, "rounds": rounds, "local_steps": local_steps, "batch_size": batch_size,
            "lr": lr, "lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
            "max_length": max_length, "global_clusters": global_clusters, "seed": seed,
            "round_timeout": round_timeout, "group_by_length": group_by_length, "schedule": schedule,
            "max_grad_norm": max_grad_norm, "shared_init": shared_init, "prompt_format": prompt_format,
            "clients_per_round": clients_per_round, "fraction_train": fraction_train, "init_from": init_from}


# -- the options of upstream stages, shared by every command that chains them ----------------
import functools  # noqa: E402
import inspect  # noqa: E402

OWN_RECORDS_OPTIONS: dict[str, Any] = {
    "client_column": ClientColumnOpt, "instruction_column": InstructionColumnOpt, "response_column": ResponseColumnOpt,
    "input_column": InputColumnOpt, "task_column": TaskColumnOpt, "test_fraction": TestFractionOpt,
}
# data options beside the source's own ones, passed through data_overrides like them
PARTITION_OPTIONS: dict[str, Any] = {"quantity_skew": QuantitySkewOpt}
DATA_OPTIONS: dict[str, Any] = {
    "source": SourceOpt, "tasks": TasksOpt, "scenario": ScenarioOpt, "clients": ClientsOpt,
    "train_per_client": TrainPerClientOpt, "test_per_client": TestPerClientOpt, "seed": SeedOpt,
    **OWN_RECORDS_OPTIONS, **PARTITION_OPTIONS,
}
EMBED_OPTIONS: dict[str, Any] = {"model": ModelOpt, "embedder": EmbedderOpt, "device": DeviceOpt}
CLUSTER_OPTIONS: dict[str, Any] = {"n_clusters": NClustersOpt, "k_min": KMinOpt, "k_max": KMaxOpt}
COMMON_OPTIONS: dict[str, Any] = {"preset": PresetOpt, "force": ForceOpt, "json_out": JsonOpt, "debug": DebugOpt}


def with_options(*groups: dict[str, Any]):
    """Add groups of shared options to a command's signature (Typer reads `__signature__`).

    The wrapped function receives them in one dict, `shared`, so commands list only their own
    options and still accept those of every stage they chain.
    """
    def decorate(command):
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "shared"]
        names = {p.name for p in own}
        extra = {name: annotation for group in groups for name, annotation in group.items() if name not in names}
        defaults = {"force": False, "json_out": False, "debug": False, "dry_run": False}
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name),
                                   annotation=annotation) for name, annotation in extra.items()]

        @functools.wraps(command)
        def wrapper(**kwargs):
            shared = {name: kwargs.pop(name) for name in extra}
            return command(**kwargs, shared=shared)

        wrapper.__signature__ = inspect.Signature([*own, *added])
        return wrapper

    return decorate


def upstream_overrides(shared: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Config overrides from the shared upstream options a command received."""
    get = shared.get
    return {
        "data": data_overrides(get("source"), get("tasks"), get("scenario"), get("clients"),
                               get("train_per_client"), get("test_per_client"), None, get("seed"),
                               **{name: get(name) for name in (*OWN_RECORDS_OPTIONS, *PARTITION_OPTIONS)}),
        "model": {"model": get("model"), "device": get("device")},
        "embed": {"embedder": get("embedder")},
        "cluster": {"n_clusters": get("n_clusters"), "k_min": get("k_min"), "k_max": get("k_max")},
        "privacy": {name: get(name) for name in PRIVACY_OPTIONS},
    }
