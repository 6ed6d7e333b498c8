"""The K rules and the router embedding, measured: local K, purity, global K, routing accuracy.

For each task set and scenario, partition (8 clients, the cpu preset's sizes, 100 test samples per
client), embed with each embedder, cluster every client with each local rule, cluster the local
centroids with each global rule, and route every test sample to the nearest local centroid (local
mode) or global centroid (global mode). No training: routing depends only on the clusters.

Rules: 'tasks' is the paper's (local K = the tasks a client holds, global K = the tasks of the
federation), 'auto' this tool's rules (clustering.stable_k locally, best_global_k on the
server). The automatic rules' constants were set on the FLAN set A tasks; the raw tasks and FLAN
set B are held out.

    python bench/k_rules.py [--sets raw,flan-a,flan-b] [--embedders minilm+chars,minilm,base] [--scenarios ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# Held-out task folders kept outside the repository and ../shared (never committed): public tasks
# the automatic rules were never tuned on, <task>/{train,test}.jsonl with FLAN-style templates
# (three phrasings per task). Their provenance (source repositories, commits, licences) is in
# HELDOUT/PROVENANCE.md; bench/results/k_rules.md lists the sets used.
HELDOUT = Path(__file__).resolve().parents[2] / "heldout"
SETS = {
    "raw": (SHARED / "raw", ("qqp", "webnlg", "samsum", "gigaword")),
    "flan-a": (SHARED / "flan", ("glue_qqp", "web_nlg_en", "gigaword", "trec")),
    "flan-b": (SHARED / "flan", ("cola", "definite_pronoun_resolution", "fix_punct", "snli")),
    "held-1": (HELDOUT, ("sst2_sentiment", "gsm8k_math", "multi30k_en_de_translation", "wikiann_ner")),
    "held-2": (HELDOUT, ("agnews_topic", "mbpp_code", "aeslc_email_subject", "nq_open_qa")),
    "held-3": (HELDOUT, ("sick_nli", "stsb_similarity", "spider_text2sql", "csqa_commonsense")),
    "held-4": (HELDOUT, ("mrpc_paraphrase", "jfleg_grammar", "gsm8k_math", "agnews_topic")),
    # fixed before the local rule of AUTO_RULE_VERSIONS["local"] 2 was chosen on raw, FLAN-A,
    # held-1 and held-2, and measured only once it was: new combinations of the held-out tasks,
    # held-8 the hardest (four sentence-level classification and similarity tasks alike in form)
    "held-5": (HELDOUT, ("sst2_sentiment", "mbpp_code", "sick_nli", "jfleg_grammar")),
    "held-6": (HELDOUT, ("wikiann_ner", "aeslc_email_subject", "stsb_similarity", "mrpc_paraphrase")),
    "held-7": (HELDOUT, ("multi30k_en_de_translation", "nq_open_qa", "spider_text2sql", "csqa_commonsense")),
    "held-8": (HELDOUT, ("mrpc_paraphrase", "stsb_similarity", "sick_nli", "sst2_sentiment")),
    # fixed after held-5..8 refuted a wider local tolerance (0.02: held-7 all fell to global K = 3),
    # before any other rule was tried: the check sets of the next candidate
    "held-9": (HELDOUT, ("agnews_topic", "sick_nli", "spider_text2sql", "multi30k_en_de_translation")),
    "held-10": (HELDOUT, ("gsm8k_math", "csqa_commonsense", "wikiann_ner", "jfleg_grammar")),
    "held-11": (HELDOUT, ("nq_open_qa", "mbpp_code", "stsb_similarity", "sst2_sentiment")),
    "held-12": (HELDOUT, ("aeslc_email_subject", "mrpc_paraphrase", "spider_text2sql", "gsm8k_math")),
}


def measure(config, run, rule: str) -> dict:
    from fedrouter_cli.clustering import (
        best_global_k,
        kmeans,
        majority,
        purity,
        silhouette_curve,
    )
    from fedrouter_cli.files import read_table
    from fedrouter_cli.router import nearest
    from fedrouter_cli.rundir import PARTITION_TEXT, client_name
    from fedrouter_cli.stages.cluster_local import run_cluster_local
    from fedrouter_cli.vectors import read_embeddings

    cfg = replace(config, cluster=replace(config.cluster, n_clusters=rule))
    local = run_cluster_local(cfg, run, force=True).summary
    centroids, sizes, owners, tasks_of = [], [], [], []
    tests = []
    for c in range(cfg.data.clients):
        name = client_name(c)
        rows = read_table(run.partition_file(name, "train"), PARTITION_TEXT)
        _, vectors = read_embeddings(run.embedding_file(name, "train"))
        labels = read_table(run.assignments_file(name)).column("cluster").to_numpy()
        tasks = rows.column("task").to_pylist()
        points = np.stack([vectors[labels == k].mean(0) for k in range(labels.max() + 1)])
        centroids.append(points)
        sizes += [int((labels == k).sum()) for k in range(len(points))]
        owners += [c] * len(points)
        majors = majority(labels, tasks)
        tasks_of += [majors[k] for k in range(len(points))]
        test_rows = read_table(run.partition_file(name, "test"), PARTITION_TEXT)
        tests.append((read_embeddings(run.embedding_file(name, "test"))[1], test_rows.column("task").to_pylist()))
    stacked = np.concatenate(centroids)
    n_tasks = len({t for _, ts in tests for t in ts} | set(tasks_of))
    federation_tasks = len(run.require("partition")["summary"]["tasks"])
    weights = None  # the paper's rule: plain K-Means; the automatic one weighs centroids by cluster size
    if rule == "tasks":
        k = min(federation_tasks, len(stacked))
        scores = {}
    else:
        weights = np.asarray(sizes, dtype=np.float64)
        scores = silhouette_curve(stacked, cfg.cluster.k_min, cfg.cluster.k_max, cfg.cluster.seed, weights)
        k = best_global_k(scores)
    global_centroids, global_labels = kmeans(stacked, k, cfg.cluster.seed, weights)
    # the task each global cluster serves: the majority over the local clusters mapped to it
    global_task = majority(global_labels, tasks_of)
    correct_local = correct_global = total = 0
    start = 0
    for c, points in enumerate(centroids):
        routes = global_labels[start:start + len(points)]
        start += len(points)
        vectors, truth = tests[c]
        local_pick = routes[nearest(vectors, points)]
        global_pick = nearest(vectors, global_centroids)
        correct_local += sum(global_task[int(g)] == t for g, t in zip(local_pick, truth))
        correct_global += sum(global_task[int(g)] == t for g, t in zip(global_pick, truth))
        total += len(truth)
    return {"rule": rule, "local_k": [r["k"] for r in local["clients"]], "local_purity": local["purity"],
            "global_k": k, "global_purity": round(purity(global_labels, tasks_of), 4),
            "global_silhouette": {str(kk): round(v, 4) for kk, v in scores.items()},
            "routing_accuracy_local": round(correct_local / total, 4),
            "routing_accuracy_global": round(correct_global / total, 4), "tasks": n_tasks}


def embedded_runs(set_names, scenarios, embedders, **data):
    """For each task set, scenario and embedder: a partitioned, embedded temporary run dir on the cpu
    preset's sizes, as (set, scenario, embedder, config, run, embed seconds, embed summary)."""
    from fedrouter_cli.config import Config
    from fedrouter_cli.config_file import build_config
    from fedrouter_cli.presets import PRESETS
    from fedrouter_cli.rundir import RunDir
    from fedrouter_cli.stages.embed import run_embed
    from fedrouter_cli.stages.partition import run_partition

    for set_name in set_names:
        source, tasks = SETS[set_name]
        if not source.is_dir():
            print(f"skipping {set_name}: {source} is not here", file=sys.stderr)
            continue
        for scenario in scenarios:
            for embedder in embedders:
                config = build_config(Config(), PRESETS["cpu"], {
                    "data": {"source": str(source), "tasks": tasks, "scenario": scenario, **data},
                    "embed": {"embedder": embedder}})
                with tempfile.TemporaryDirectory() as tmp:
                    run = RunDir(Path(tmp) / "run")
                    run_partition(config, run)
                    started = time.perf_counter()
                    embedded = run_embed(config, run).summary
                    yield set_name, scenario, embedder, config, run, time.perf_counter() - started, embedded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="raw,flan-a,flan-b")
    parser.add_argument("--embedders", default="minilm+chars,minilm,base")
    parser.add_argument("--scenarios", default="single,dual,all")
    args = parser.parse_args()

    rows = []
    for set_name, scenario, embedder, config, run, seconds, embedded in embedded_runs(
            args.sets.split(","), args.scenarios.split(","), args.embedders.split(","), test_per_client=100):
        for rule in ("tasks", "auto"):
            row = {"set": set_name, "scenario": scenario, "embedder": embedder,
                   "embed_seconds": round(seconds, 1), "embed_computed": embedded["computed_texts"],
                   **measure(config, run, rule)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    rows = merged(rows)
    write_result("k_rules", {"command": "python bench/k_rules.py [--sets ...] (rows of earlier runs of other "
                                        "sets, scenarios or embedders are kept)", "rows": rows})
    (RESULTS / "k_rules.md").write_text(markdown(rows))


def merged(rows: list[dict]) -> list[dict]:
    """These rows, plus those of an earlier run for settings this run did not measure."""
    path = RESULTS / "k_rules.json"
    def key(r: dict) -> tuple:
        return r["set"], r["scenario"], r["embedder"], r["rule"]
    fresh = {key(r) for r in rows}
    earlier = json.loads(path.read_text())["rows"] if path.exists() else []
    order = list(SETS)
    return sorted([r for r in earlier if key(r) not in fresh] + rows,
                  key=lambda r: (order.index(r["set"]), ("single", "dual", "all").index(r["scenario"]), r["embedder"]))


def markdown(rows: list[dict]) -> str:
    out = ["# K rules and router embeddings (bench/k_rules.py)", "",
           "8 clients x 150 train / 100 test samples, cpu preset; routing accuracy = share of test samples sent "
           "to an adapter whose majority task is their own.", "",
           "| set | scenario | embedder | rule | local K per client | local purity | global K | global purity | "
           "routing acc. (local) | routing acc. (global) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['set']} | {r['scenario']} | {r['embedder']} | {r['rule']} | "
                   f"{','.join(map(str, r['local_k']))} | {r['local_purity']:.3f} | {r['global_k']} | "
                   f"{r['global_purity']:.3f} | {r['routing_accuracy_local']:.3f} | {r['routing_accuracy_global']:.3f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
