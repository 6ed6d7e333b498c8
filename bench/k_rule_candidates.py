"""Candidate automatic K rules, measured on every task set before one replaces clustering.py's.

The automatic rules have two halves: locally, the largest K whose K-Means clustering is stable on
resamples of the client's rows ('stability', clustering.STABILITY_THRESHOLD, 0.85; 'stability:0.9'
another threshold), or the silhouette rule it replaced (a number: the largest K whose silhouette is
within that absolute tolerance of the client's best, K = 1 when no K reaches 0.05); on the
server, the smallest K whose size-weighted silhouette is within a relative tolerance of the best
(GLOBAL_K_TOLERANCE, 0.12) or the curve's knee if earlier (GLOBAL_K_KNEE, 1/3). This script
scores each pair of a local and a global variant on each set and scenario the way bench/k_rules.py
does (8 clients, cpu preset sizes, 100 test samples a client, minilm+chars, no training): local
and global K, local purity, and routing accuracy in local and global mode, whose goal is >= 0.99
on every set. A candidate is chosen on some sets and checked on sets fixed before it was tried
(bench/k_rules.py's SETS says which); the table lists every row, the failures first.

    python bench/k_rule_candidates.py --sets raw,flan-a,held-1,held-2 [--scenarios dual,all]
        [--local stability,stability:0.9,0.01] [--global 0.12,0.08:knee,0.05:noknee] [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import k_rules  # noqa: E402
from _common import RESULTS, write_result  # noqa: E402


def client_data(set_name: str, scenario: str, cache: Path | None) -> dict:
    """Each client's train and test embeddings and task labels (embedded once per set and scenario)."""
    from fedrouter_cli.files import read_table
    from fedrouter_cli.rundir import PARTITION_TEXT, client_name
    from fedrouter_cli.vectors import read_embeddings

    stored = cache / f"{set_name}-{scenario}.pkl" if cache else None
    if stored and stored.exists():
        return pickle.loads(stored.read_bytes())
    for _, _, _, config, run, _, _ in k_rules.embedded_runs([set_name], [scenario], ["minilm+chars"],
                                                            test_per_client=100):
        clients = []
        for c in range(config.data.clients):
            name = client_name(c)
            train_tasks = read_table(run.partition_file(name, "train"), PARTITION_TEXT).column("task").to_pylist()
            test_tasks = read_table(run.partition_file(name, "test"), PARTITION_TEXT).column("task").to_pylist()
            clients.append((read_embeddings(run.embedding_file(name, "train"))[1], train_tasks,
                            read_embeddings(run.embedding_file(name, "test"))[1], test_tasks))
        data = {"clients": clients, "k_min": config.cluster.k_min, "k_max": config.cluster.k_max,
                "seed": config.cluster.seed}
        if stored:
            stored.parent.mkdir(parents=True, exist_ok=True)
            stored.write_bytes(pickle.dumps(data))
        return data
    raise SystemExit(f"{set_name} is not on this machine")


def global_rule(text: str):
    """'0.12' (the knee at 1/3, as today), '0.08:noknee', '0.08:0.1' (knee ratio 0.1)."""
    from fedrouter_cli.clustering import GLOBAL_K_KNEE, best_global_k

    tolerance, _, knee = text.partition(":")
    ratio = GLOBAL_K_KNEE if knee in ("", "knee") else (-1e9 if knee == "noknee" else float(knee))
    return lambda scores: best_global_k(scores, tolerance=float(tolerance), knee=ratio)


_STABILITY: dict[tuple, dict[int, float]] = {}


def local_rule(text: str):
    """'stability' (today's threshold), 'stability:0.9', or a silhouette tolerance such as '0.01'."""
    from fedrouter_cli.clustering import (
        best_k,
        silhouette_curve,
        stability_curve,
        stable_k,
    )

    name, _, threshold = text.partition(":")
    if name == "stability":
        def choose(points, k_min, k_max, seed):
            key = (hashlib.sha256(points.tobytes()).hexdigest(), k_min, k_max, seed)
            if key not in _STABILITY:  # one curve serves every threshold tried
                _STABILITY[key] = stability_curve(points, k_min, k_max, seed)
            return stable_k(_STABILITY[key], *([float(threshold)] if threshold else []))
        return choose
    return lambda points, k_min, k_max, seed: best_k(silhouette_curve(points, k_min, k_max, seed),
                                                     tolerance=float(text), threshold=0.05)


def score(data: dict, choose_local, choose_global) -> dict:
    from fedrouter_cli.clustering import kmeans, majority, purity, silhouette_curve
    from fedrouter_cli.router import nearest

    seed = data["seed"]
    centroids, sizes, tasks_of, local_k, all_labels, all_tasks = [], [], [], [], [], []
    for c, (train, tasks, _, _) in enumerate(data["clients"]):
        k = choose_local(train, data["k_min"], data["k_max"], seed)
        _, labels = kmeans(train, k, seed)
        points = np.stack([train[labels == j].mean(0) for j in range(labels.max() + 1)])
        centroids.append(points)
        sizes += [int((labels == j).sum()) for j in range(len(points))]
        majors = majority(labels, tasks)
        tasks_of += [majors[j] for j in range(len(points))]
        local_k.append(k)
        all_labels += (labels + 100 * c).tolist()
        all_tasks += tasks
    stacked, weights = np.concatenate(centroids), np.asarray(sizes, dtype=np.float64)
    curve = silhouette_curve(stacked, data["k_min"], data["k_max"], seed, weights)
    k = choose_global(curve)
    global_centroids, global_labels = kmeans(stacked, k, seed, weights)
    serves = majority(global_labels, tasks_of)
    right_local = right_global = total = start = 0
    for c, points in enumerate(centroids):
        routes = global_labels[start:start + len(points)]
        start += len(points)
        _, _, test, truth = data["clients"][c]
        right_local += sum(serves[int(g)] == t for g, t in zip(routes[nearest(test, points)], truth))
        right_global += sum(serves[int(g)] == t for g, t in zip(nearest(test, global_centroids), truth))
        total += len(truth)
    return {"local_k": local_k, "local_purity": round(purity(np.asarray(all_labels), all_tasks), 4),
            "global_k": k, "global_silhouette": {str(kk): round(v, 4) for kk, v in curve.items()},
            "routing_local": round(right_local / total, 4), "routing_global": round(right_global / total, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="raw,flan-a,held-1,held-2")
    parser.add_argument("--scenarios", default="dual,all")
    parser.add_argument("--local", default="stability,0.01", help="local rules, see local_rule")
    parser.add_argument("--global", dest="global_rules", default="0.12", help="global rules, see global_rule")
    parser.add_argument("--cache", type=Path, help="keep the embeddings here between runs")
    parser.add_argument("--keep", action="store_true",
                        help="keep the stored rows of sets not run now (one table built over several runs)")
    parser.add_argument("--chosen-on", default="", help="the sets the rule was chosen on; the rest only checked it")
    args = parser.parse_args()
    rows = []
    for set_name in args.sets.split(","):
        for scenario in args.scenarios.split(","):
            data = client_data(set_name, scenario, args.cache)
            for local in args.local.split(","):
                for rule in args.global_rules.split(","):
                    role = "chose" if set_name in args.chosen_on.split(",") else "checked"
                    row = {"set": set_name, "role": role, "scenario": scenario, "local": local, "global": rule,
                           **score(data, local_rule(local), global_rule(rule))}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
    commands = ["python bench/k_rule_candidates.py " + " ".join(sys.argv[1:])]
    stored = RESULTS / "k_rule_candidates.json"
    if args.keep and stored.exists():
        before = json.loads(stored.read_text())
        ran = set(args.sets.split(","))
        rows = [r for r in before["rows"] if r["set"] not in ran] + rows
        commands = before.get("commands", [before.get("command")]) + commands
    write_result("k_rule_candidates", {"commands": commands, "rows": rows})
    (RESULTS / "k_rule_candidates.md").write_text(markdown(rows))


def markdown(rows: list[dict]) -> str:
    pairs: dict[tuple, list[dict]] = {}
    for r in rows:
        pairs.setdefault((r["local"], r["global"]), []).append(r)
    out = ["# Candidate automatic K rules (bench/k_rule_candidates.py)", "",
           "Routing accuracy = share of test samples routed to an adapter whose majority task is their own "
           "(goal >= 0.99 on every set); the worst of local and global mode per row.", "",
           "| local rule | global rule | rows | worst routing | rows below 0.99 (set/scenario: global K, routing) |",
           "|---|---|---|---|---|"]
    for (local, rule), group in sorted(pairs.items()):
        worst = min(min(r["routing_local"], r["routing_global"]) for r in group)
        fails = [f"{r['set']}/{r['scenario']}: K={r['global_k']}, {min(r['routing_local'], r['routing_global']):.3f}"
                 for r in group if min(r["routing_local"], r["routing_global"]) < 0.99]
        out.append(f"| {local} | {rule} | {len(group)} | {worst:.3f} | {'; '.join(fails) or '-'} |")
    out += ["", "| set | chose or checked the rule | scenario | local rule | global rule | local K | local purity | "
            "global K | routing (local) | routing (global) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['set']} | {r.get('role', '')} | {r['scenario']} | {r['local']} | {r['global']} | "
                   f"{','.join(map(str, r['local_k']))} | "
                   f"{r['local_purity']:.3f} | {r['global_k']} | {r['routing_local']:.3f} | {r['routing_global']:.3f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
