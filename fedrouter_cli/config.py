"""Typed configuration: each section a frozen dataclass that checks its values on construction.

Reading, layering and writing config.toml is `fedrouter_cli.config_file`; which value wins when a
command resolves a run's settings (typed options, presets, the saved config.toml) is
`fedrouter_cli.presets`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from fedrouter_cli.algorithms import NAMES
from fedrouter_cli.data.records import HUB_PREFIX
from fedrouter_cli.errors import FedrouterError

DEFAULT_MODEL = "smollm2-135m-instruct"
# The router's embedding: MiniLM sentence vectors beside hashed character n-grams of the raw input
# (issue 14, bench/results/k_rules.md): MiniLM alone mixes tasks that share a topic (news
# headlines, dialogues and question pairs about the same events); the n-grams see their format.
DEFAULT_EMBEDDER = "minilm+chars"
CHARS_SUFFIX = "+chars"
SCENARIOS = ("single", "dual", "all")
VARIANTS = ("standard", "star")
# FedRouter's round-robin (standard variant): 'authors' = round r trains the client's local cluster
# r mod K in its own K-Means label order, mapped to that cluster's global adapter (the authors'
# server.py); 'staggered' = this tool's: a cycle over the distinct global adapters a client holds,
# each client starting at its own place, one job on all the local clusters routed to the adapter.
SCHEDULES = ("authors", "staggered")
BASE_ALG = "base"  # the base model with no adapter: evaluated like an algorithm, never trained
ALGORITHMS = NAMES  # registered in fedrouter_cli.algorithms
EVAL_MODES = ("local", "global")
LOCAL_ROUTES = ("local", "global")  # FedRouter's local mode: route by the local centroids or their global ones
TEST_TASKS = ("scenario", "all")
GENERATION_STRATEGIES = ("mixed", "grouped", "per-sample")
DEVICES = ("auto", "cpu", "cuda")  # fedrouter_cli.model.device turns one into a torch device and dtype


def _fail(message: str) -> None:
    raise FedrouterError(message)


def _check_positive(section: str, **values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            _fail(f"{section}.{name} must be a finite number, got {value}.")
        if value <= 0:
            _fail(f"{section}.{name} must be positive, got {value}; pass a value above 0.")


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(f"{option} must be one of {', '.join(choices)}, got {value!r}.")


K_RULES = ("auto", "tasks")


INIT_PIN = "@sha256:"  # --init-from is saved as PATH@sha256:DIGEST of the adapters it held


def init_digest(init_from: str) -> str:
    """The digest part of a pinned --init-from: what the simulate fingerprint holds, not the path."""
    return init_from.split(INIT_PIN)[1] if INIT_PIN in init_from else init_from


def parse_k(option: str, value: str | int) -> str | int:
    """'auto', 'tasks' or a positive integer, as accepted by --n-clusters and --global-clusters.

    'tasks' is the paper's rule: as many global clusters as tasks in the federation (section 3.2),
    and as many local clusters as tasks the client holds in the scenario, with no silhouette
    (single 1, dual 2, all every task; section 4.6). 'auto' is this tool's: stability locally, silhouette on the server."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        if number < 1:
            _fail(f"{option} must be 'auto', 'tasks' or a positive integer, got {value!r}.")
        return number
    if value in K_RULES:
        return value
    _fail(f"{option} must be 'auto', 'tasks' or a positive integer, got {value!r}.")
    raise AssertionError  # unreachable; keeps type checkers quiet


PROMPT_FORMATS = ("alpaca", "chat")
# --source nodes: the server of a deployment whose nodes each bring their own data
NODES_SOURCE = "nodes"


@dataclass(frozen=True)
class DataConfig:
    source: str = field(default="synthetic", metadata={
        "help": "synthetic, hf, a folder of <task>/{train,test}.jsonl, a file of your own records (with "
                "--client-column), or nodes (a deployment server: each node brings its own data)"})
    tasks: tuple[str, ...] = field(default=(), metadata={"help": "tasks to use; empty = every task of the source"})
    scenario: str = field(default="dual", metadata={"help": "single, dual or all"})
    clients: int = 8
    train_per_client: int = 600
    test_per_client: int = 300
    test_tasks: str = field(default="scenario", metadata={"help": "which test set evaluate uses by default"})
    seed: int = 0
    # a file of one's own records (fedrouter_cli.data.records) instead of task folders: one client
    # per value of `client_column`, each with its own seeded test share; the task column is optional
    client_column: str = ""
    instruction_column: str = "instruction"
    response_column: str = "response"
    input_column: str = ""
    task_column: str = ""
    test_fraction: float = 0.2
    # quantity skew: clients' train sizes from a seeded Dirichlet(alpha) over the same total
    # (data.partition.skewed_sizes); 0 = every client the same size, the paper's setting
    quantity_skew: float = field(default=0.0, metadata={
        "help": "Dirichlet alpha of the clients' train sizes (smaller = more uneven); 0 = equal sizes"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.quantity_skew < 0:
            _fail(f"--quantity-skew must be 0 (equal sizes) or a positive Dirichlet alpha, got {self.quantity_skew}.")
        if self.quantity_skew and self.client_column:
            _fail("--quantity-skew draws client sizes for task folders; with --client-column each client already "
                  "has the rows its value has, so leave --quantity-skew out.")
        _check_choice("--scenario", self.scenario, SCENARIOS)
        _check_choice("--test-tasks", self.test_tasks, TEST_TASKS)
        _check_positive("data", clients=self.clients, train_per_client=self.train_per_client,
                        test_per_client=self.test_per_client)
        if self.clients > 1000:
            _fail(f"--clients {self.clients} is more than this tool supports (1000); pass fewer clients.")
        if max(self.train_per_client, self.test_per_client) > 100_000:
            _fail("--train-per-client and --test-per-client take at most 100000 samples per client; pass fewer.")
        if self.seed < 0:
            _fail(f"--seed must be 0 or more, got {self.seed}.")
        if not 0 < self.test_fraction < 1:
            _fail(f"--test-fraction must be between 0 and 1, got {self.test_fraction}.")
        if self.source.startswith(HUB_PREFIX) and not self.client_column:
            _fail(f"--source {self.source} is a dataset of records: pass --client-column (the column that tells "
                  "the clients apart), or give it to one node as `deploy prepare-node --data`.")
        if self.client_column and self.source in ("synthetic", "hf", NODES_SOURCE):
            _fail(f"--client-column reads a file of your own records; --source {self.source} has none. "
                  "Pass --source PATH (JSONL, JSON, CSV, Parquet or a save_to_disk folder).")

    @property
    def on_nodes(self) -> bool:
        """A deployment server's run: each node brings its own data (`deploy prepare-node --data`),
        so this machine holds no rows, only the settings the stages record."""
        return self.source == NODES_SOURCE

    @property
    def own_records(self) -> bool:
        """The source is a file of one's own records split by a client column (not task folders)."""
        return bool(self.client_column)

    def columns(self) -> Any:
        from fedrouter_cli.data.records import Columns

        return Columns(instruction=self.instruction_column, response=self.response_column,
                       input=self.input_column or None, task=self.task_column or None, client=self.client_column)

    @property
    def test_split(self) -> str:
        """The partition split evaluate scores: the scenario's tasks or every task."""
        return "test_all" if self.test_tasks == "all" else "test"


@dataclass(frozen=True)
class ModelConfig:
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "base model: HF id, local folder, or the offline default"})
    load_in_4bit: bool = False
    # Where the models run; not part of any fingerprint (see stages.simulate.model_settings).
    device: str = field(default="auto", metadata={"help": "auto (CUDA when available), cpu or cuda"})

    def __post_init__(self) -> None:
        _check_choice("--device", self.device, DEVICES)


@dataclass(frozen=True)
class EmbedConfig:
    embedder: str = field(default=DEFAULT_EMBEDDER, metadata={
        "help": "minilm, base (the base model), or a sentence-embedding model id/folder; '+chars' appends hashed "
                "character n-grams of the text (default minilm+chars)"})
    batch_size: int = 32
    max_length: int = 256
    text_cache: bool = field(default=True, metadata={"help": "reuse embeddings of texts seen before (content-hash cache)"})

    def __post_init__(self) -> None:
        _check_positive("embed", batch_size=self.batch_size, max_length=self.max_length)
        if not self.encoder.strip():
            _fail(f"--embedder needs a model before '{CHARS_SUFFIX}' (minilm, base, or a model id/folder).")

    @property
    def encoder(self) -> str:
        """The neural encoder part of --embedder (without '+chars')."""
        return self.embedder.removesuffix(CHARS_SUFFIX)

    @property
    def char_features(self) -> bool:
        return self.embedder.endswith(CHARS_SUFFIX)

    @property
    def normalized(self) -> bool:
        """Sentence encoders are compared by cosine, so their vectors are L2-normalised (and so is a
        combination with n-grams); the base model's mean-pooled states alone stay raw, as in the paper."""
        return self.encoder != "base" or self.char_features


@dataclass(frozen=True)
class ClusterConfig:
    n_clusters: str | int = "auto"
    k_min: int = 2
    k_max: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_clusters", parse_k("--n-clusters", self.n_clusters))
        if self.k_min < 2 or self.k_max < self.k_min:
            _fail(f"need 2 <= --k-min <= --k-max, got k-min={self.k_min}, k-max={self.k_max}.")


@dataclass(frozen=True)
class TrainConfig:
    alg: str = "fedrouter"
    variant: str = "standard"
    rounds: int = 25
    local_steps: int = 10
    batch_size: int = 16
    lr: float = 5e-4
    lr_min: float = 1e-5
    # the schedule's floor as a fraction of --lr (the end of the cosine is max(lr_min, lr_floor*lr)):
    # with few rounds and round-robin, an adapter whose turn comes last must not train at ~0
    lr_floor: float = 0.0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    max_length: int = 1024
    global_clusters: str | int = "auto"
    seed: int = 0
    round_timeout: float = 3600.0
    schedule: str = field(default="authors", metadata={
        "help": "FedRouter's round-robin: authors (round r trains local cluster r mod K) or staggered"})
    max_grad_norm: float = field(default=0.0, metadata={
        "help": "clip each step's gradient to this L2 norm (0 = off; the authors: 1.0, the HF Trainer's default)"})
    shared_init: bool = field(default=False, metadata={
        "help": "FedRouter: every global adapter starts from one initialisation (the authors'), not one seed each"})
    group_by_length: bool = field(default=True, metadata={
        "help": "train on batches of like-length rows (seeded), so little of a batch is padding"})
    clients_per_round: int = field(default=0, metadata={
        "help": "clients sampled (seeded) to train each round; 0 = every client, the paper's setting"})
    fraction_train: float = field(default=0.0, metadata={
        "help": "share of the clients sampled each round (seeded), instead of --clients-per-round; 0 = every client"})
    prompt_format: str = field(default="alpaca", metadata={
        "help": "alpaca (the paper's instruction/response template) or chat (the tokenizer's own chat template)"})
    # a run dir or an export, pinned as PATH@sha256:DIGEST (federation.starting_point); '' = fresh adapters
    init_from: str = field(default="", metadata={
        "help": "start from the adapters of a run dir (its last round of the same --alg) or of a folder written "
                "by `fedrouter export`; 'none' = fresh adapters"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        _check_choice("--prompt-format", self.prompt_format, PROMPT_FORMATS)
        if self.clients_per_round < 0 or not 0 <= self.fraction_train <= 1:
            _fail("--clients-per-round must be 0 or more and --fraction-train between 0 and 1.")
        if self.clients_per_round and self.fraction_train:
            _fail("--clients-per-round and --fraction-train both choose how many clients train a round; pass one.")
        object.__setattr__(self, "global_clusters", parse_k("--global-clusters", self.global_clusters))
        _check_choice("--variant", self.variant, VARIANTS)
        _check_choice("--schedule", self.schedule, SCHEDULES)
        _check_positive("train", rounds=self.rounds, local_steps=self.local_steps,
                        batch_size=self.batch_size, lr=self.lr, lora_r=self.lora_r,
                        lora_alpha=self.lora_alpha, max_length=self.max_length,
                        round_timeout=self.round_timeout)
        if self.rounds > 10_000 or self.local_steps > 100_000:
            _fail("--rounds or --local-steps is implausibly large; pass a smaller value.")
        if not 0 <= self.lora_dropout < 1:
            _fail(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}.")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            _fail(f"--max-grad-norm must be 0 (off) or positive, got {self.max_grad_norm}.")
        if not 0 <= self.lr_floor <= 1:
            _fail(f"lr_floor is a fraction of --lr and must be in [0, 1], got {self.lr_floor}.")
        if self.lr_min > self.lr:
            _fail(f"lr_min ({self.lr_min}) must not exceed --lr ({self.lr}).")
        if self.alg not in ALGORITHMS:  # checked with the config, so no stage runs on a typo
            _fail(f"Unknown algorithm {self.alg!r} for --alg; choose one of {', '.join(ALGORITHMS)}.")


@dataclass(frozen=True)
class EvalConfig:
    mode: str = "local"
    round: int = 0  # 0 = the last completed round
    max_new_tokens: int = 32
    batch_size: int = 16
    generation: str = "mixed"
    rouge_stemming: bool = field(default=True, metadata={
        "help": "ROUGE with Porter stemming (rouge-score's option); the authors scored without (the evaluate library's default)"})
    local_route: str = field(default="local", metadata={
        "help": "FedRouter's local mode: local (nearest of the client's local centroids, then its global adapter) or "
                "global (nearest of the global centroids the client's clusters map to: the authors')"})
    token_budget: bool = field(default=True, metadata={
        "help": "cut each answer at its adapter's budget: the 99th percentile of its training responses' "
                "length plus a margin, at most --max-new-tokens"})

    def __post_init__(self) -> None:
        _check_choice("--mode", self.mode, EVAL_MODES)
        _check_choice("--generation", self.generation, GENERATION_STRATEGIES)
        _check_choice("--local-route", self.local_route, LOCAL_ROUTES)
        _check_positive("eval", max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        if self.round < 0:
            _fail(f"--round must be 0 (last) or a round number, got {self.round}.")
        if self.max_new_tokens > 4096:
            _fail(f"--max-new-tokens {self.max_new_tokens} is too large; pass at most 4096.")


@dataclass(frozen=True)
class PrivacyConfig:
    """Differential privacy on what leaves a client; off (0) by default.

    dp_epsilon: each adapter update a client sends is clipped to L2 norm dp_clip and gets
    Gaussian noise for (dp_epsilon, dp_delta)-DP per release (local DP, Flower's DP primitives).
    centroid_epsilon: each client's local centroids get Gaussian noise for
    (centroid_epsilon, dp_delta)-DP of the one centroid release (embeddings have unit norm).
    """

    dp_epsilon: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    centroid_epsilon: float = 0.0

    def __post_init__(self) -> None:
        if self.dp_epsilon < 0 or self.centroid_epsilon < 0:
            _fail("--dp-epsilon and --centroid-epsilon must be 0 (off) or positive.")
        _check_positive("privacy", dp_clip=self.dp_clip)
        if not 0 < self.dp_delta < 1:
            _fail(f"--dp-delta must be between 0 and 1, got {self.dp_delta}.")

    @property
    def enabled(self) -> bool:
        return self.dp_epsilon > 0 or self.centroid_epsilon > 0


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "embed": EmbedConfig,
    "cluster": ClusterConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "privacy": PrivacyConfig,
}


@dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    embed: EmbedConfig = EmbedConfig()
    cluster: ClusterConfig = ClusterConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    privacy: PrivacyConfig = PrivacyConfig()

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(getattr(self, name)) for name in SECTIONS}

    def embedder_id(self) -> str:
        """What the embedding space depends on: the embedder, and the base model when it is the embedder."""
        if self.embed.encoder == "base":
            return self.model.model + (CHARS_SUFFIX if self.embed.char_features else "")
        return self.embed.embedder
