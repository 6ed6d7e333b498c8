"""Issue #14: the paper's clustering rules, adapters that all get trained, and generation prompts
that keep their end (FedDPA as its authors define it: test_feddpa.py). Unit tests, no Flower run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_RAW, needs_raw

# -- generation keeps the end of a prompt --------------------------------------------------------

def test_generation_cuts_long_prompts_from_the_left(tokenizer) -> None:
    from fedrouter_cli.data.prompts import format_prompt
    from fedrouter_cli.model.generate import encode_prompts

    long = "Anna: " + " ".join(f"word{i}" for i in range(400)) + "\nBen: see you at the lake at noon"
    short = "Is the sky blue?"
    tokenizer.padding_side, tokenizer.truncation_side = "right", "right"
    batch = encode_prompts(tokenizer, [format_prompt(long), format_prompt(short)], max_length=64)
    assert batch["input_ids"].shape[1] == 64
    marker = tokenizer("### Response:\n", add_special_tokens=False)["input_ids"]
    whole = tokenizer(format_prompt(long), add_special_tokens=False)["input_ids"]
    ids = batch["input_ids"][0].tolist()
    assert ids == whole[-64:]                          # the last 64 tokens: the response marker survives
    assert ids[-len(marker):] == whole[-len(marker):]
    assert tokenizer.decode(ids).rstrip().endswith("### Response:")
    short_ids = batch["input_ids"][1][batch["attention_mask"][1].bool()].tolist()
    assert short_ids == tokenizer(format_prompt(short), add_special_tokens=False)["input_ids"]
    assert batch["attention_mask"][1, 0] == 0        # padded on the left, for generation
    assert (tokenizer.padding_side, tokenizer.truncation_side) == ("right", "right")  # restored


@needs_raw()
def test_cpu_preset_generates_enough_tokens_for_the_references(tokenizer) -> None:
    """The cpu preset's answer length covers the 95th percentile of every paper task's reference
    in the model's tokens, EOS included (measured when it was set: qqp 2, webnlg 64, samsum 55,
    gigaword 16), so no method's ROUGE is cut short by the bench's settings."""
    import json

    from fedrouter_cli.presets import PRESETS

    limit = PRESETS["cpu"]["eval"]["max_new_tokens"]
    for task in sorted(p.name for p in SHARED_RAW.iterdir() if (p / "train.jsonl").is_file()):
        with open(SHARED_RAW / task / "train.jsonl") as lines:
            responses = [json.loads(line)["response"] for _, line in zip(range(400), lines)]
        lengths = [len(ids) + 1 for ids in tokenizer(responses, add_special_tokens=False)["input_ids"]]
        assert np.percentile(lengths, 95) <= limit, (task, np.percentile(lengths, 95), limit)


# -- the paper's K rules, and an automatic global rule that merges sub-clusters ----------------

def task_blobs(tasks: int = 4, subs: int = 2, clients: int = 8, sub_sep: float = 0.3, noise: float = 0.01,
               seed: int = 0) -> np.ndarray:
    """Local centroids as the server sees them: each client sends one per sub-cluster of each of
    its tasks; a task's sub-clusters (e.g. two prompt templates) sit close together, tasks apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(tasks, 16))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    offsets = rng.normal(size=(tasks, subs, 16))
    offsets *= sub_sep / np.linalg.norm(offsets, axis=2, keepdims=True)
    return np.array([centres[t] + offsets[t, s] + noise * rng.normal(size=16)
                     for _ in range(clients) for t in range(tasks) for s in range(subs)])


def test_auto_global_k_merges_one_tasks_sub_clusters() -> None:
    from fedrouter_cli.clustering import best_global_k, best_k, silhouette_curve

    points = task_blobs()
    scores = silhouette_curve(points, 2, 8, seed=0)
    assert best_k(scores) == 8           # the silhouette argmax keeps the sub-clusters apart
    assert best_global_k(scores) == 4                    # the server's rule: one cluster per task
    plain = silhouette_curve(task_blobs(subs=1, sub_sep=0.0, noise=0.05), 2, 8, seed=0)
    assert best_global_k(plain) == 4                     # and it does not merge real tasks
    assert best_global_k({2: 0.5, 3: 0.45, 4: 0.44}) == 2
    assert best_global_k({}) == 1


def test_auto_global_k_stops_at_the_knee() -> None:
    """Weighted curves measured by bench/k_rules.py (minilm+chars, 4 tasks). On FLAN-A single two
    clients split trec by template wording; the curve climbs on to K = 8, and 12% below its top
    is first reached at K = 5. The knee (a step of 0.021 after one of 0.109) stops at 4."""
    from fedrouter_cli.clustering import best_global_k

    flan_a_single = {2: 0.4251, 3: 0.5704, 4: 0.6795, 5: 0.7004, 6: 0.7276, 7: 0.7492, 8: 0.793}
    assert best_global_k(flan_a_single, knee=0.0) == 5     # the tolerance alone
    assert best_global_k(flan_a_single) == 4
    flan_b_single = {2: 0.3902, 3: 0.4782, 4: 0.6387, 5: 0.6786, 6: 0.6884, 7: 0.6959, 8: 0.7174}
    assert best_global_k(flan_b_single) == 4               # a small step into 3 is no knee: 4 gains more
    raw_all = {2: 0.3819, 3: 0.4932, 4: 0.6114, 5: 0.5958, 6: 0.5566, 7: 0.5185, 8: 0.4726}
    assert best_global_k(raw_all) == 4
    # a knee only lowers K: a curve whose top is early keeps the tolerance's choice
    assert best_global_k({2: 0.6, 3: 0.61, 4: 0.615, 5: 0.5}) == 2


def one_task_split_wide(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Local centroids, sizes and tasks as in FLAN's single scenario: the two clients of task t0
    split it into 6 small, widely spread sub-clusters each; the other tasks' clients keep theirs whole."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points, sizes, tasks = [], [], []
    for _ in range(2):
        offsets = rng.normal(size=(6, 16))
        offsets *= 0.9 / np.linalg.norm(offsets, axis=1, keepdims=True)
        points += [centres[0] + o for o in offsets]
        sizes += [25] * 6
        tasks += ["t0"] * 6
    for t in (1, 2, 3):
        for _ in range(2):
            points.append(centres[t] + 0.02 * rng.normal(size=16))
            sizes.append(150)
            tasks.append(f"t{t}")
    return np.array(points), np.array(sizes, dtype=np.float64), tasks


def test_auto_global_k_weighs_centroids_by_cluster_size() -> None:
    from fedrouter_cli.clustering import best_global_k, kmeans, purity, silhouette_curve

    points, sizes, tasks = one_task_split_wide()
    assert purity(kmeans(points, 4, 0)[1], tasks) < 1.0  # unweighted, t0's pieces take two clusters
    assert best_global_k(silhouette_curve(points, 2, 8, 0)) > 4
    k = best_global_k(silhouette_curve(points, 2, 8, 0, sizes))
    assert k == 4 and purity(kmeans(points, k, 0, sizes)[1], tasks) == 1.0


def test_weighted_silhouette_is_the_silhouette_of_the_repeated_points() -> None:
    from sklearn.metrics import silhouette_score

    from fedrouter_cli.clustering import weighted_silhouette

    rng = np.random.default_rng(3)
    points, labels, weights = rng.normal(size=(30, 5)), rng.integers(0, 3, 30), rng.integers(1, 5, 30)
    labels[:3] = [0, 1, 2]
    repeated = np.repeat(np.arange(30), weights)
    assert weighted_silhouette(points, labels, weights) == pytest.approx(
        silhouette_score(points[repeated], labels[repeated]), abs=1e-9)
    assert weighted_silhouette(points, labels, np.ones(30)) == pytest.approx(silhouette_score(points, labels), abs=1e-9)


def test_fedrouter_auto_rule_uses_the_sizes_clients_send(tmp_path: Path) -> None:
    points, sizes, tasks = one_task_split_wide()
    owners = [0] * 6 + [1] * 6 + [2, 3, 4, 5, 6, 7]
    centroids = {c: points[[i for i, o in enumerate(owners) if o == c]] for c in range(8)}
    strategy = make_fedrouter(tmp_path, centroids, tasks=("t0", "t1", "t2", "t3"), global_clusters="auto")
    strategy.local_sizes = {c: sizes[[i for i, o in enumerate(owners) if o == c]] for c in range(8)}
    strategy.cluster_globally()
    assert len(strategy.global_centroids) == 4
    assert len(set(strategy.routes[0] + strategy.routes[1])) == 1  # t0's twelve pieces: one adapter


def make_fedrouter(tmp_path: Path, centroids: dict[int, np.ndarray], tasks=("a", "b", "c", "d"), **train):
    from fedrouter_cli.config import Config, TrainConfig
    from fedrouter_cli.federation.rounds import FederationJob
    from fedrouter_cli.federation.strategies.fedrouter import FedRouter
    from fedrouter_cli.rundir import FederationDir

    config = Config(train=TrainConfig(**train))
    job = FederationJob(config=config, out=FederationDir(tmp_path), num_nodes=len(centroids), tasks=tuple(tasks),
                        initial_adapter=lambda seed: {"w.lora_A.weight": np.full((2, 2), seed, np.float32)})
    strategy = FedRouter(job)
    strategy.local_centroids = centroids
    strategy.initialize()
    return strategy


def test_global_clusters_tasks_is_the_number_of_tasks(tmp_path: Path) -> None:
    points = task_blobs()
    per_client = {c: points[8 * c:8 * (c + 1)] for c in range(8)}
    assert len(make_fedrouter(tmp_path, per_client, global_clusters="tasks").adapters) == 4
    assert len(make_fedrouter(tmp_path, per_client, tasks=("a", "b"), global_clusters="tasks").adapters) == 2
    assert len(make_fedrouter(tmp_path, per_client, global_clusters="auto").adapters) == 4
    assert len(make_fedrouter(tmp_path, per_client, global_clusters=6).adapters) == 6
    routes = make_fedrouter(tmp_path, per_client, global_clusters="tasks").routes
    assert all(r[0] == r[1] for r in routes.values())  # both sub-clusters of a task share its adapter


def test_n_clusters_tasks_is_the_tasks_a_client_holds() -> None:
    from fedrouter_cli.config import Config
    from fedrouter_cli.config_file import build_config
    from fedrouter_cli.stages.cluster_local import choose_k, tasks_held

    tasks = ("qqp", "webnlg", "samsum", "gigaword")
    points = np.random.default_rng(0).normal(size=(40, 8))
    for scenario, expected in (("single", 1), ("dual", 2), ("all", 4)):
        config = build_config(Config(), {"data": {"scenario": scenario, "clients": 8},
                                         "cluster": {"n_clusters": "tasks"}})
        for client in range(8):
            held = tasks_held(config, tasks, client)
            assert held == expected
            assert choose_k(points, config, f"c{client:02d}", held) == (expected, {})   # no stability scan
    assert build_config(Config(), {"train": {"global_clusters": "tasks"}}).train.global_clusters == "tasks"


def test_only_fedrouter_fingerprints_carry_the_global_rule_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new version of FedRouter's automatic global K reruns FedRouter's auto runs, and nothing
    else: the baselines never run that rule, so their bench cells stay carried over."""
    from fedrouter_cli import fingerprints
    from fedrouter_cli.config import Config
    from fedrouter_cli.config_file import build_config

    configs = {alg: build_config(Config(), {"train": {"alg": alg, "global_clusters": "auto"}})
               for alg in ("fedrouter", "fedit", "fedcluster", "feddpa")}
    configs["fedrouter-tasks"] = build_config(Config(), {"train": {"alg": "fedrouter", "global_clusters": "tasks"}})
    before = {name: fingerprints.simulate_fingerprint(c) for name, c in configs.items()}
    monkeypatch.setitem(fingerprints.AUTO_RULE_VERSIONS, "global", fingerprints.AUTO_RULE_VERSIONS["global"] + 1)
    after = {name: fingerprints.simulate_fingerprint(c) for name, c in configs.items()}
    assert [name for name in configs if before[name] != after[name]] == ["fedrouter"]


# -- round-robin over adapters, not over local clusters -------------------------------------------

def two_task_client(tmp_path: Path, **train):
    """Client 0 splits task A into two local clusters (0 and 2) and holds task B (cluster 1);
    client 1 holds A and B with one cluster each."""
    a, b = np.eye(4)[0], np.eye(4)[1]
    centroids = {0: np.stack([a + 0.01, b, a - 0.01]).astype(np.float32),
                 1: np.stack([a, b]).astype(np.float32)}
    return make_fedrouter(tmp_path, centroids, tasks=("A", "B"), global_clusters="tasks", rounds=4, **train)


def test_the_authors_schedule_trains_local_cluster_r_mod_k_in_label_order(tmp_path: Path) -> None:
    """As the authors' server.py: round r (from 1) trains the client's local cluster r mod K, on
    that cluster's data, with the global adapter that cluster routes to."""
    s = two_task_client(tmp_path)  # the default schedule is the authors'
    assert s.train.schedule == "authors"
    for client, k in ((0, 3), (1, 2)):
        for r in range(1, 7):
            jobs = s.plan(r, client)
            local = r % k
            assert [(j.clusters, j.tag) for j in jobs] == [((local,), f"g{s.routes[client][local]:02d}")], (client, r)
    # client 0 split task A into clusters 0 and 2: A's adapter trains in two rounds of every three
    assert [s.plan(r, 0)[0].clusters for r in (1, 2, 3)] == [(1,), (2,), (0,)]


def test_round_robin_cycles_over_distinct_adapters(tmp_path: Path) -> None:
    s = two_task_client(tmp_path, schedule="staggered")
    ga, gb = (f"g{s.routes[1][i]:02d}" for i in (0, 1))
    assert s.routes[0] == [s.routes[1][0], s.routes[1][1], s.routes[1][0]]
    plans = [s.plan(r, 0) for r in (1, 2, 3, 4)]
    assert all(len(p) == 1 for p in plans)
    assert [p[0].tag for p in plans] == [ga, gb, ga, gb]        # A's two clusters do not take two turns
    assert plans[0][0].clusters == (0, 2) and plans[1][0].clusters == (1,)   # one job on all of A's data
    client_1 = [s.plan(r, 1)[0] for r in (1, 2, 3, 4)]
    assert sorted(j.clusters for j in client_1[:2]) == [(0,), (1,)]  # one-to-one: the paper's rule
    # each client's cycle starts at its own place: both adapters train in every round
    assert all({p[0].tag, j.tag} == {ga, gb} for p, j in zip(plans, client_1))


def test_all_scenario_trains_every_adapter_every_round(tmp_path: Path) -> None:
    """Every client holds all four tasks: in step, all eight would train the same adapter each
    round, and three of the four adapters would move in one round of the cpu preset's five."""
    eye = np.eye(4, dtype=np.float32)
    s = make_fedrouter(tmp_path, {c: eye for c in range(8)}, global_clusters="tasks", rounds=5, schedule="staggered")
    for r in range(1, 6):
        tags = [s.plan(r, c)[0].tag for c in range(8)]
        assert sorted(set(tags)) == sorted(s.adapters) and all(tags.count(t) == 2 for t in set(tags))
    for c in range(8):  # and each client still takes its adapters in turn
        assert len({s.plan(r, c)[0].tag for r in range(1, 5)}) == 4


def test_the_schedule_reaches_only_fedrouters_standard_runs() -> None:
    from fedrouter_cli.config import Config
    from fedrouter_cli.config_file import build_config
    from fedrouter_cli.federation.strategies.base import AdapterStrategy
    from fedrouter_cli.federation.strategies.fedrouter import FedRouter
    from fedrouter_cli.fingerprints import simulate_fingerprint

    standard = build_config(Config(), {"train": {"alg": "fedrouter", "variant": "standard"}})
    staggered = build_config(standard, {"train": {"schedule": "staggered"}})
    star = build_config(Config(), {"train": {"alg": "fedrouter", "variant": "star"}})
    assert {"round_robin": "authors"} in FedRouter.fingerprint_parts(standard.train)
    assert {"round_robin": "staggered"} in FedRouter.fingerprint_parts(staggered.train)  # as runs made before it
    assert not [p for p in FedRouter.fingerprint_parts(star.train) if "round_robin" in p]
    assert simulate_fingerprint(standard) != simulate_fingerprint(staggered)
    # where there is no round-robin, the schedule changes nothing, so no run is redone for it
    for other in (star, build_config(Config(), {"train": {"alg": "fedit"}})):
        assert simulate_fingerprint(other) == simulate_fingerprint(
            build_config(other, {"train": {"schedule": "staggered"}}))
    # the schedule is FedRouter's: it never reruns a baseline or FedRouter*
    fedit = build_config(Config(), {"train": {"alg": "fedit"}})
    assert AdapterStrategy.fingerprint_parts(fedit.train) == ()
    assert simulate_fingerprint(fedit) == simulate_fingerprint(build_config(fedit, {"train": {"schedule": "staggered"}}))
    assert simulate_fingerprint(star) == simulate_fingerprint(build_config(star, {"train": {"schedule": "staggered"}}))


def test_star_trains_each_adapter_once_per_round(tmp_path: Path) -> None:
    s = two_task_client(tmp_path, variant="star")
    jobs = s.plan(1, 0)
    assert sorted((j.tag, j.clusters) for j in jobs) == sorted([(f"g{s.routes[0][0]:02d}", (0, 2)),
                                                                (f"g{s.routes[0][1]:02d}", (1,))])
    assert len({j.name for j in jobs}) == 2


def test_jobs_travel_with_their_clusters_and_select_rows(tmp_path: Path) -> None:
    from fedrouter_cli.federation.node import NodeData
    from fedrouter_cli.federation.rounds import FlowerRounds
    from fedrouter_cli.federation.strategies.base import Job
    from fedrouter_cli.federation.train_wire import TrainRequest

    s = two_task_client(tmp_path, variant="star")
    sent = FlowerRounds(s, s.job).train_request(1, [*s.plan(1, 0), Job(name="all", clusters=(), adapter={}, tag="x")])
    received = TrainRequest.from_content(sent.to_content())  # (the engine tests send it through Flower's serde)
    assert received.settings == sent.settings and received.jobs == sent.jobs  # the same typed message at both ends
    assert sorted(job.clusters for job in received.jobs) == [(), (0, 2), (1,)]
    assert all(a.keys() == b.keys() for a, b in zip(received.adapters, sent.adapters))
    node = NodeData(folder=tmp_path, client=0, instructions=list("abcde"), responses=list("ABCDE"),
                    clusters=np.array([0, 1, 2, 0, 1]), centroids=np.zeros((3, 2)), sizes=np.array([2, 2, 1]))
    assert node.rows([0, 2]) == [("a", "A"), ("c", "C"), ("d", "D")]
    assert node.rows([]) == node.rows([-1]) == list(zip("abcde", "ABCDE"))


# -- no adapter trained only at a vanishing learning rate -----------------------------------------

def test_lr_schedule_has_a_floor(tmp_path: Path) -> None:
    from fedrouter_cli.config import Config
    from fedrouter_cli.config_file import build_config
    from fedrouter_cli.errors import FedrouterError
    from fedrouter_cli.presets import PRESETS

    s = make_fedrouter(tmp_path, {0: np.eye(4, dtype=np.float32)}, rounds=5, lr=2e-3, lr_floor=0.25)
    rates = [s.lr_at(r) for r in range(1, 6)]
    assert rates[0] == pytest.approx(2e-3) and rates[-1] == pytest.approx(5e-4)
    assert all(a > b for a, b in zip(rates, rates[1:])) and min(rates) >= 5e-4 - 1e-12
    plain = make_fedrouter(tmp_path, {0: np.eye(4, dtype=np.float32)}, rounds=5, lr=2e-3)
    assert plain.lr_at(5) == pytest.approx(1e-5)          # no floor: cosine to lr_min, as before
    assert build_config(Config(), PRESETS["paper"]).train.lr_floor == 0.0
    with pytest.raises(FedrouterError, match="lr_floor"):
        build_config(Config(), {"train": {"lr_floor": 1.5}})


@pytest.mark.parametrize("variant", ["standard", "star"])
@pytest.mark.parametrize("scenario", ["single", "dual", "all"])
def test_cpu_preset_trains_every_adapter_at_a_meaningful_rate(tmp_path: Path, scenario: str, variant: str) -> None:
    """The paper's four tasks on the cpu preset and the paper's K rule: every (client, adapter)
    pair with data gets at least one round at >= 25% of the peak rate."""
    from fedrouter_cli.config import Config
    from fedrouter_cli.config_file import build_config
    from fedrouter_cli.data.partition import client_tasks
    from fedrouter_cli.federation.rounds import FederationJob
    from fedrouter_cli.federation.strategies.fedrouter import FedRouter
    from fedrouter_cli.presets import PRESETS
    from fedrouter_cli.rundir import FederationDir

    tasks = ("qqp", "webnlg", "samsum", "gigaword")
    config = build_config(Config(), PRESETS["cpu"], {"data": {"scenario": scenario},
                                                     "train": {"global_clusters": "tasks", "variant": variant}})
    where = {t: np.eye(8, dtype=np.float32)[i] for i, t in enumerate(tasks)}
    centroids = {c: np.stack([where[t] for t in client_tasks(scenario, tasks, config.data.clients, c)])
                 for c in range(config.data.clients)}
    job = FederationJob(config=config, out=FederationDir(tmp_path), num_nodes=len(centroids), tasks=tasks,
                        initial_adapter=lambda seed: {})
    s = FedRouter(job)
    s.local_centroids = centroids
    s.initialize()
    best: dict[tuple[int, str], float] = {}
    for r in range(1, config.train.rounds + 1):
        for c in centroids:
            for j in s.plan(r, c):
                best[(c, j.tag)] = max(best.get((c, j.tag), 0.0), s.lr_at(r))
    wanted = {(c, f"g{g:02d}") for c, routes in s.routes.items() for g in routes}
    assert set(best) == wanted
    assert min(best.values()) >= 0.25 * config.train.lr


def test_metrics_record_steps_and_rate_per_adapter(tmp_path: Path) -> None:
    from fedrouter_cli.federation.rounds import FlowerRounds
    from fedrouter_cli.federation.strategies.base import JobResult

    s = two_task_client(tmp_path, local_steps=3, lr=1e-3, lr_floor=0.5)
    job = s.plan(2, 0)[0]
    result = JobResult(client=0, job=job, adapter={}, samples=12, loss=1.0, first_loss=1.0, last_loss=1.0, seconds=0.1)
    rounds = FlowerRounds(s, s.job)
    row = rounds._row(2, 0, job, result, "ok", 0, 0)
    assert row["steps"] == 3 and row["lr"] == pytest.approx(s.lr_at(2)) and row["tag"] == job.tag
    failed = rounds._row(2, 0, None, None, "failed", 0, 0)
    assert failed["steps"] == 0
    rounds.checkpoint(2, [row, failed])
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "metrics.parquet")
    assert {"steps", "lr"} <= set(table.column_names)
