"""What each stage's result depends on: one fingerprint per stage, built from its config slice
and its upstream stage's fingerprint, so a changed setting reruns exactly the stages it reaches.

A setting added after runs were made joins its stage's fingerprint only when it is not at its old
default, so those runs stay cached; an automatic rule joins with its version, so a changed rule
never passes for a cache hit.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

from fedrouter_cli.clustering import AUTO_RULE_VERSIONS
from fedrouter_cli.config import BASE_ALG, Config, init_digest
from fedrouter_cli.data import sources, synthetic
from fedrouter_cli.rundir import fingerprint


def source_fingerprint(source: str, tasks: tuple[str, ...]) -> str:
    """Content hash of a JSONL source (so edited data reruns); the generator's version otherwise."""
    if source == "synthetic":
        return f"synthetic-{getattr(synthetic, 'GENERATOR_VERSION', 1)}"
    if source == "hf":
        return "hf"
    digest = hashlib.sha256()
    for task in tasks:
        for split in sources.SPLITS:
            path = Path(source).expanduser() / task / f"{split}.jsonl"
            digest.update(path.read_bytes() if path.exists() else b"missing")
    return digest.hexdigest()[:16]


def partition_fingerprint(config: Config) -> tuple[str, tuple[str, ...]]:
    """The partition's fingerprint and the tasks it draws (() for one's own records, whose tasks,
    if any, are a column of the file)."""
    data = config.data
    slice_ = _without_old_defaults("data", {k: v for k, v in asdict(data).items() if k != "test_tasks"})
    if data.own_records:
        return fingerprint("partition", slice_, records_fingerprint(data.source)), ()
    if data.on_nodes:  # the rows stay on the nodes: the settings are all the server knows
        return fingerprint("partition", slice_), ()
    tasks = sources.resolve_tasks(data.source, data.tasks)
    return fingerprint("partition", slice_, tasks, source_fingerprint(data.source, tasks)), tasks


def records_fingerprint(source: str) -> str:
    """Content hash of a file (or folder) of one's own records, so edited data reruns; for
    hf:NAME, the fingerprints `datasets` gives the loaded splits."""
    from fedrouter_cli.data.records import HUB_PREFIX, dataset_parts, load_named_dataset

    if source.startswith(HUB_PREFIX):
        parts = dataset_parts(load_named_dataset(source))
        return hashlib.sha256("|".join([source, *(p._fingerprint for p in parts)]).encode()).hexdigest()[:16]
    path = Path(source).expanduser()
    if not path.exists():
        from fedrouter_cli.errors import FedrouterError

        raise FedrouterError(f"--source {source} does not exist; pass your records' file or folder.")
    digest = hashlib.sha256()
    for file in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
        digest.update(str(file.relative_to(path.parent if path.is_file() else path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def embed_settings(config: Config) -> dict:
    return {"embedder": config.embedder_id(), "normalize": config.embed.normalized,
            "max_length": config.embed.max_length}


def embed_fingerprint(config: Config) -> str:
    return fingerprint("embed", partition_fingerprint(config)[0], embed_settings(config))


def cluster_fingerprint(config: Config) -> str:
    rule = ({"auto_rule": AUTO_RULE_VERSIONS["local"]},) if config.cluster.n_clusters == "auto" else ()
    return fingerprint("cluster-local", embed_fingerprint(config), asdict(config.cluster), *rule)


def select_k_inputs(config: Config, level: str) -> tuple[str, dict]:
    """The upstream fingerprint and settings of one level's silhouette curve: local (per client, on
    the embeddings) or global (on the local centroids). The chosen K is not among them: the curve
    is what it scans."""
    upstream = embed_fingerprint(config) if level == "local" else cluster_fingerprint(config)
    return upstream, {k: v for k, v in asdict(config.cluster).items() if k != "n_clusters"}


def select_k_fingerprint(config: Config, level: str) -> str:
    # the global curve is the one the server's automatic rule scans: it changes with that rule
    rule = ({"auto_rule": AUTO_RULE_VERSIONS["global"]},) if level == "global" else ()
    return fingerprint("select-k", level, *select_k_inputs(config, level), *rule)


def model_settings(config: Config) -> dict:
    """The model settings a result depends on. The device is left out: where a run trained (a GPU in
    bf16 or the CPU in fp32) is how it was computed, like --workers, not what was asked; a run made
    on a GPU stays usable (evaluate, report, serve) on a CPU machine and the reverse. Each stage's
    manifest records the device and dtype it ran with."""
    return {k: v for k, v in asdict(config.model).items() if k != "device"}


# Settings added after runs were made, with the value that gives the behaviour from before them:
# at that value a setting stays out of its stage's fingerprint, so those runs stay cached.
ADDED_LATER = {
    "data": {"client_column": "", "instruction_column": "instruction", "response_column": "response",
             "input_column": "", "task_column": "", "test_fraction": 0.2, "quantity_skew": 0.0},
    "train": {"lr_floor": 0.0, "group_by_length": False, "max_grad_norm": 0.0, "prompt_format": "alpaca",
              "clients_per_round": 0, "fraction_train": 0.0, "init_from": ""},
    "eval": {"token_budget": False, "rouge_stemming": True, "local_route": "local"},
}


# Settings of one algorithm's rules: they join the simulate fingerprint through that algorithm's
# fingerprint_parts only, so changing one never reruns another algorithm's runs.
ALGORITHM_SETTINGS = {"data": (), "train": ("schedule", "shared_init"), "eval": ()}


def _without_old_defaults(section: str, values: dict) -> dict:
    return {k: v for k, v in values.items() if k not in ALGORITHM_SETTINGS[section]
            and (k not in ADDED_LATER[section] or v != ADDED_LATER[section][k])}


def simulate_fingerprint(config: Config) -> str:
    # privacy joins the fingerprint only when on, so runs made before it existed stay cached
    privacy = (asdict(config.privacy),) if config.privacy.enabled else ()
    train = _without_old_defaults("train", asdict(config.train))
    if "init_from" in train:  # the starting adapters' content, wherever they lie
        train["init_from"] = init_digest(train["init_from"])
    # versions of an algorithm's own rules and schedule (Strategy.fingerprint_parts)
    from fedrouter_cli.federation.strategies import (
        STRATEGIES,  # flwr and torch: only when needed
    )

    strategy = STRATEGIES.get(config.train.alg)
    parts = strategy.fingerprint_parts(config.train) if strategy is not None else ()
    return fingerprint("simulate", cluster_fingerprint(config), train, model_settings(config), *privacy, *parts)


def evaluate_fingerprint(config: Config, alg: str, round_number: int, on: str = "server") -> str:
    upstream = embed_fingerprint(config) if alg == BASE_ALG else simulate_fingerprint(config)
    settings = _without_old_defaults("eval", asdict(config.eval)) | {"round": round_number,
                                                                     "test_tasks": config.data.test_tasks}
    if alg == BASE_ALG:
        settings |= {"model": config.model.model}
        if config.train.prompt_format != "alpaca":  # the base model's prompts too; alpaca as before it existed
            settings |= {"prompt_format": config.train.prompt_format}
    if on != "server":  # joins only when on the nodes, so server-side evaluations keep their fingerprint
        settings |= {"on": on}
    return fingerprint("evaluate", alg, upstream, settings)
