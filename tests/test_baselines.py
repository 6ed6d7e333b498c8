"""Baseline strategies: their rules on small fake adapters, and an end-to-end smoke of each
through Flower's simulation engine (in-process backend, tiny model) and the evaluate stage."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fedrouter_cli.config import Config, TrainConfig
from fedrouter_cli.federation.inference import InferenceInput
from fedrouter_cli.federation.node import save_state
from fedrouter_cli.federation.rounds import FederationJob
from fedrouter_cli.federation.strategies import STRATEGIES
from fedrouter_cli.federation.strategies.base import Job, JobResult
from fedrouter_cli.federation.strategies.fedcluster import (
    FedCluster,
    cosine_matrix,
    group_clients,
)
from fedrouter_cli.federation.strategies.feddpa import (
    FedDPA,
    FedDPAKnn,
    local_weight,
    mix_adapter,
    quantize,
)
from fedrouter_cli.federation.strategies.fedit import FedIT
from fedrouter_cli.federation.strategies.fedsa import FedSA
from fedrouter_cli.federation.strategies.ffa_lora import FFALoRA
from fedrouter_cli.federation.strategies.local import Local
from fedrouter_cli.model.lora import save_adapter
from fedrouter_cli.rundir import FederationDir

# one pytest-xdist worker runs every test of the shared `smoke` fixture, so each method trains once
pytestmark = pytest.mark.xdist_group("smoke-methods")

BASELINES = ("fedit", "local", "fedcluster", "fedsa", "ffa-lora", "feddpa", "feddpa-knn")
LAYERS = (0, 1)


def key(layer: int, part: str) -> str:
    return f"base_model.model.model.layers.{layer}.self_attn.q_proj.{part}.weight"


def fake_initial(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for layer in LAYERS:
        out[key(layer, "lora_A")] = rng.normal(size=(2, 4)).astype(np.float32)
        out[key(layer, "lora_B")] = np.zeros((4, 2), dtype=np.float32)
    return out


def make(strategy_class, tmp_path: Path, clients: int = 4, **train) -> object:
    config = Config(train=TrainConfig(alg=strategy_class.name, rounds=3, **train))
    job = FederationJob(config=config, out=FederationDir(tmp_path), num_nodes=clients, initial_adapter=fake_initial)
    strategy = strategy_class(job)
    strategy.local_centroids = {c: np.zeros((1, 3), dtype=np.float32) for c in range(clients)}
    strategy.initialize()
    return strategy


def reply(client: int, job: Job, adapter: dict, samples: int = 8) -> JobResult:
    return JobResult(client=client, job=job, adapter=adapter, samples=samples, loss=1.0, first_loss=1.0,
                     last_loss=1.0, seconds=0.1)


def trained(sent: dict, rng: np.random.Generator) -> dict:
    """What a client's training might make of `sent`: every weight moved a little."""
    full = sent if any("lora_B" in k for k in sent) else {**sent, **{k.replace("lora_A", "lora_B"): np.zeros((4, 2), np.float32)
                                                                      for k in sent}}
    return {k: (v + rng.normal(scale=0.1, size=v.shape)).astype(np.float32) for k, v in full.items()}


def part(adapter: dict, name: str) -> dict:
    return {k: v for k, v in adapter.items() if name in k}


# -- registry -------------------------------------------------------------------------------------

def test_registered_under_their_names() -> None:
    for name in BASELINES:
        assert STRATEGIES[name].name == name


# -- FedIT -------------------------------------------------------------------------------------------

def test_fedit_averages_one_adapter_weighted_by_samples(tmp_path: Path) -> None:
    s = make(FedIT, tmp_path)
    rng = np.random.default_rng(1)
    jobs = {c: s.plan(1, c) for c in range(4)}
    assert all(len(j) == 1 and j[0].clusters == () and j[0].send == "all" and j[0].keep == "none" for j in jobs.values())
    returned = {c: trained(jobs[c][0].adapter, rng) for c in range(4)}
    samples = {0: 1, 1: 2, 2: 3, 3: 4}
    s.combine(1, [reply(c, jobs[c][0], returned[c], samples[c]) for c in range(4)])
    k = key(0, "lora_B")
    expected = sum(samples[c] * returned[c][k].astype(np.float64) for c in range(4)) / 10
    np.testing.assert_allclose(s.adapters["global"][k], expected, rtol=1e-6)
    assert list(s.adapters) == ["global"]


# -- Local --------------------------------------------------------------------------------------

def test_local_sends_the_initial_adapter_once_and_nothing_back(tmp_path: Path) -> None:
    s = make(Local, tmp_path)
    first = {c: s.plan(1, c)[0] for c in range(4)}
    for job in first.values():
        assert job.send == "none" and job.keep == "all" and job.clusters == ()
        assert set(job.adapter) == set(fake_initial(0))
    # clients 0..2 finished round 1; client 3 failed and still needs the initial adapter
    s.combine(1, [reply(c, first[c], {}) for c in range(3)])
    assert s.adapters == {}
    assert all(s.plan(2, c)[0].adapter == {} for c in range(3))
    assert set(s.plan(2, 3)[0].adapter) == set(fake_initial(0))


# -- FedSA ----------------------------------------------------------------------------------------

def test_fedsa_shares_only_lora_a(tmp_path: Path) -> None:
    s = make(FedSA, tmp_path)
    rng = np.random.default_rng(2)
    for round_number in (1, 2, 3):
        jobs = {c: s.plan(round_number, c) for c in range(4)}
        for (job,) in jobs.values():
            assert job.send == "lora_A" and job.keep == "lora_B" and job.trainable == "all"
            assert job.adapter and not part(job.adapter, "lora_B"), "the server must never send lora_B"
        # honest clients send A only; client 0 misbehaves and sends B too: the server still keeps no B
        returned = {c: trained(jobs[c][0].adapter, rng) for c in range(4)}
        sent_back = {c: returned[c] if c == 0 else part(returned[c], "lora_A") for c in range(4)}
        s.combine(round_number, [reply(c, jobs[c][0], sent_back[c]) for c in range(4)])
        assert not part(s.adapters["global"], "lora_B")
        k = key(1, "lora_A")
        np.testing.assert_allclose(s.adapters["global"][k], np.mean([returned[c][k] for c in range(4)], axis=0),
                                   rtol=1e-5, atol=1e-6)


# -- FFA-LoRA -------------------------------------------------------------------------------------

def test_ffa_lora_freezes_a_and_averages_b(tmp_path: Path) -> None:
    s = make(FFALoRA, tmp_path)
    initial_a = part(fake_initial(0), "lora_A")
    rng = np.random.default_rng(3)
    jobs = {c: s.plan(1, c)[0] for c in range(4)}
    for job in jobs.values():
        assert job.trainable == "lora_B" and job.send == "lora_B"
        for k, v in initial_a.items():  # the same seeded A for every client
            assert np.array_equal(job.adapter[k], v)
    returned = {c: part(trained(jobs[c].adapter, rng), "lora_B") for c in range(4)}
    # a client returning a changed A (it should not) must not move the server's A either
    returned[2] = {**returned[2], **{k: v + 1 for k, v in initial_a.items()}}
    s.combine(1, [reply(c, jobs[c], returned[c]) for c in range(4)])
    for k, v in initial_a.items():
        assert np.array_equal(s.adapters["global"][k], v)
    k = key(0, "lora_B")
    np.testing.assert_allclose(s.adapters["global"][k], np.mean([returned[c][k] for c in range(4)], axis=0), rtol=1e-5)
    assert np.abs(s.adapters["global"][k]).sum() > 0
    assert all(np.array_equal(s.plan(2, c)[0].adapter[key(0, "lora_A")], initial_a[key(0, "lora_A")]) for c in range(4))


def test_ffa_lora_real_training_step_leaves_a_untouched(tiny_model: str) -> None:
    from fedrouter_cli.model.lora import (
        get_adapter,
        initial_adapter,
        peft_model,
        set_adapter_weights,
    )
    from fedrouter_cli.model.train import train_steps

    train = TrainConfig(lora_r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"))
    model, tokenizer = peft_model(tiny_model, train)
    rows = [("Write a short headline: the city opened a new bridge.", "City opens bridge"),
            ("Do these two questions mean the same? A: how old? B: what age?", "yes")]

    def step(trainable: str) -> tuple[dict, dict]:
        # a nonzero B (as after a round), so that A would get a gradient if it were trainable
        start = initial_adapter(tiny_model, train, seed=5)
        rng = np.random.default_rng(0)
        start = {k: (rng.normal(scale=0.01, size=v.shape).astype(np.float32) if "lora_B" in k else v)
                 for k, v in start.items()}
        set_adapter_weights(model, start)
        before = get_adapter(model)
        train_steps(model, tokenizer, rows, steps=1, batch_size=2, lr=1e-3, max_length=32, seed=0,
                    trainable=trainable)
        return before, get_adapter(model)

    before, after = step("lora_B")
    assert part(before, "lora_A") and part(before, "lora_B")
    for k in part(before, "lora_A"):
        assert np.array_equal(before[k], after[k]), k
    for k in part(before, "lora_B"):
        assert not np.array_equal(before[k], after[k]), k
    # control: training everything does move A, so the check above can fail
    before, after = step("all")
    assert any(not np.array_equal(before[k], after[k]) for k in part(before, "lora_A"))


# -- FedCluster --------------------------------------------------------------------------------------

def test_fedcluster_groups_clients_by_update_direction(tmp_path: Path) -> None:
    for wanted in ("auto", 2):
        s = make(FedCluster, tmp_path, clients=8, global_clusters=wanted)
        rng = np.random.default_rng(4)
        jobs = {c: s.plan(1, c)[0] for c in range(8)}
        assert {j.tag for j in jobs.values()} == {"warmup"}
        direction = {k: rng.normal(size=v.shape) for k, v in fake_initial(0).items()}
        returned = {}
        for c in (3, 0, 6, 1, 5, 2, 7, 4):  # reply order must not matter
            sign = 1.0 if c < 4 else -1.0
            returned[c] = {k: (v + sign * direction[k] + rng.normal(scale=0.3, size=v.shape)).astype(np.float32)
                           for k, v in jobs[c].adapter.items()}
        s.combine(1, [reply(c, jobs[c], returned[c]) for c in (3, 0, 6, 1, 5, 2, 7, 4)])
        groups = s.groups
        assert len(set(groups.values())) == 2
        assert len({groups[c] for c in range(4)}) == 1 and len({groups[c] for c in range(4, 8)}) == 1
        assert groups[0] != groups[4]
        # every group starts from the warm-up's FedAvg (the authors' round 2 trains from it)
        tag = f"k{groups[0]:02d}"
        k = key(0, "lora_A")
        np.testing.assert_allclose(s.adapters[tag][k], np.mean([returned[c][k] for c in range(8)], axis=0), rtol=1e-5)
        assert "warmup" not in s.adapters
        assert {s.plan(2, c)[0].tag for c in range(4)} == {tag}
        # from then on, a plain mean within each group, whatever the sample counts
        second = {c: s.plan(2, c)[0] for c in range(4)}
        sent = {c: {kk: v + c for kk, v in second[c].adapter.items()} for c in range(4)}
        s.combine(2, [reply(c, second[c], sent[c], samples=1 + 10 * c) for c in range(4)])
        np.testing.assert_allclose(s.adapters[tag][k], np.mean([sent[c][k] for c in range(4)], axis=0), rtol=1e-5)
        sim = np.asarray(s.extra_state()["similarity"])
        assert sim[0, 1] > 0.5 and sim[0, 7] < -0.5


def test_fedcluster_auto_k_finds_three_groups() -> None:
    """With three well-separated update directions, K=auto finds them; a fixed K=1 puts everyone together."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(3, 50))
    updates = np.concatenate([centres[g] + 0.05 * rng.normal(size=(3, 50)) for g in range(3)])
    labels = group_clients(cosine_matrix(updates), "auto", k_max=8)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert group_clients(cosine_matrix(updates), 1, k_max=8).tolist() == [0] * 9


def test_fedcluster_groups_by_the_last_lora_b_update_with_ward(tmp_path: Path) -> None:
    """The authors compare clients by their warm-up update of the last LoRA-B tensor only (layer 1
    here), Ward-linked on the rows of its cosine-similarity matrix. The earlier tensors carry a
    louder split (clients 0-3 against 4-7) that a rule over the whole update would follow; the
    last B splits even clients from odd ones, and that is the grouping."""
    s = make(FedCluster, tmp_path, clients=8, global_clusters=2)
    rng = np.random.default_rng(9)
    jobs = {c: s.plan(1, c)[0] for c in range(8)}
    last_b = key(1, "lora_B")
    loud = {k: rng.normal(size=v.shape) * 10 for k, v in fake_initial(0).items()}
    quiet = rng.normal(size=fake_initial(0)[last_b].shape)
    replies = []
    for c in range(8):
        moved = {k: v + (1 if c < 4 else -1) * loud[k] + rng.normal(scale=0.1, size=v.shape)
                 for k, v in jobs[c].adapter.items()}
        moved[last_b] = jobs[c].adapter[last_b] + (1 if c % 2 == 0 else -1) * quiet + rng.normal(scale=0.1, size=quiet.shape)
        replies.append(reply(c, jobs[c], {k: v.astype(np.float32) for k, v in moved.items()}))
    s.combine(1, replies)
    assert [s.groups[c] for c in range(8)] == [0, 1, 0, 1, 0, 1, 0, 1]


def test_the_last_lora_b_key_follows_the_models_layer_order() -> None:
    from fedrouter_cli.federation.strategies.fedcluster import last_lora_b_key

    keys = [f"base_model.model.model.layers.{n}.self_attn.{p}.lora_{ab}.weight"
            for n in (2, 10, 9) for p in ("v_proj", "q_proj") for ab in ("A", "B")]
    assert last_lora_b_key(keys) == "base_model.model.model.layers.10.self_attn.v_proj.lora_B.weight"


# -- FedDPA -------------------------------------------------------------------------------------------

def test_feddpa_weight_favours_local_for_familiar_instances() -> None:
    rng = np.random.default_rng(6)
    topic = rng.normal(size=16)
    train = topic + 0.3 * rng.normal(size=(30, 16))
    near = train[4] + 0.01 * rng.normal(size=16)
    far = rng.normal(size=16)
    far -= far @ topic / (topic @ topic) * topic  # orthogonal to the client's data
    w = local_weight(np.stack([near, far, -topic]), train)
    assert w[0] > 0.8 and w[0] > w[1] + 0.5
    assert w[2] == 0.0  # clipped at 0
    assert local_weight(train[:1], train, k=1)[0] == pytest.approx(1.0)
    assert quantize(np.array([0.0, 0.04, 0.05001, 0.66, 1.0])).tolist() == [0, 0, 1, 7, 10]


def test_feddpa_mixture_adapter_is_the_weighted_sum() -> None:
    rng = np.random.default_rng(7)
    g = {key(0, "lora_A"): rng.normal(size=(2, 4)), key(0, "lora_B"): rng.normal(size=(4, 2))}
    loc = {key(0, "lora_A"): rng.normal(size=(2, 4)), key(0, "lora_B"): rng.normal(size=(4, 2))}
    for w_local in (0.0, 0.3, 1.0):
        mix = mix_adapter(g, loc, w_local)
        a, b = mix[key(0, "lora_A")], mix[key(0, "lora_B")]
        assert a.shape == (4, 4) and b.shape == (4, 4)
        expected = (1 - w_local) * g[key(0, "lora_B")] @ g[key(0, "lora_A")] \
            + w_local * loc[key(0, "lora_B")] @ loc[key(0, "lora_A")]
        np.testing.assert_allclose(b @ a, expected, rtol=1e-5, atol=1e-5)


def test_feddpa_plan_and_route(tmp_path: Path) -> None:
    """feddpa-knn (the nearest-neighbour rule); feddpa's own rule: tests/test_feddpa.py."""
    feddpa = make(FedDPA, tmp_path)
    assert [(j.name, j.companion) for j in feddpa.plan(1, 2)] == [("global", "")]  # round 1: the global one alone
    assert [(j.name, j.companion) for j in feddpa.plan(2, 2)] == [("global", ""), ("local", "global")]
    s = make(FedDPAKnn, tmp_path)
    jobs = s.plan(1, 2)
    assert [(j.name, j.send, j.keep, j.companion) for j in jobs] == [("global", "all", "none", ""),
                                                                     ("local", "none", "all", "")]
    assert jobs[1].adapter  # the initial adapter, until the client keeps its own
    s.combine(1, [reply(2, jobs[0], fake_initial(1)), reply(2, jobs[1], {})])
    assert s.plan(2, 2)[1].adapter == {} and list(s.adapters) == ["global"]

    node, adapters = tmp_path / "c02", tmp_path / "adapters"
    local = fake_initial(9)
    local = {k: v + 1 for k, v in local.items()}
    save_state(node, "feddpa-knn", "local", 1, local)
    save_adapter(adapters / "global", fake_initial(1), TrainConfig(lora_r=2, target_modules=("q_proj",)), "m")
    rng = np.random.default_rng(8)
    train = rng.normal(size=(20, 8))
    tests = np.concatenate([train[:3], rng.normal(size=(5, 8))])
    inputs = InferenceInput(client=2, mode="local", embeddings=tests, state={"round": 1, "extra": {}},
                            adapters_dir=adapters, node_dir=node, train_embeddings=train,
                            local_centroids=np.zeros((1, 8)), local_tasks=["t"], global_tasks={})
    routing = FedDPAKnn.route(inputs)
    assert len(routing.names) == len(tests) and set(routing.names) == set(routing.build)
    assert all(re.fullmatch(r"c02-mix[01]_\d", n) for n in routing.names)
    assert len(routing.build) <= 11
    for name, build in routing.build.items():
        w_local = float(name.split("mix")[1].replace("_", "."))
        mix = build()
        k = key(1, "lora_A")
        expected = (1 - w_local) * fake_initial(1)[key(1, "lora_B")] @ fake_initial(1)[k] \
            + w_local * local[key(1, "lora_B")] @ local[k]
        np.testing.assert_allclose(mix[key(1, "lora_B")] @ mix[k], expected, rtol=1e-5, atol=1e-5)


# -- end to end through Flower ------------------------------------------------------------------

ADAPTER_NAMES = {
    "fedit": r"global", "ffa-lora": r"global", "local": r"c{c:02d}-local", "fedsa": r"c{c:02d}-fedsa",
    "fedcluster": r"k\d\d", "feddpa": r"c{c:02d}-mix[01]_\d\d", "feddpa-knn": r"c{c:02d}-mix[01]_\d",
}


@pytest.mark.parametrize("alg", BASELINES)
def test_smoke_simulate_and_evaluate(smoke, alg: str) -> None:
    import pyarrow.parquet as pq

    from fedrouter_cli.metrics import ROUGE_KEYS, rouge

    result = smoke(alg)
    sim, scores, cfg = result["simulate"], result["evaluate"], result["config"]
    assert sim["alg"] == alg and sim["rounds_completed"] == cfg.train.rounds == 2
    assert sim["failed_jobs"] == 0 and sim["bytes_down"] > 0
    clients = cfg.data.clients
    assert sorted(scores["per_client"]) == [f"c{c:02d}" for c in range(clients)]
    assert scores["samples"] == clients * cfg.data.test_per_client
    predictions = pq.read_table(scores["predictions_path"]).to_pylist()
    assert len(predictions) == scores["samples"]
    for row in predictions:
        c = int(row["client"][1:])
        assert re.fullmatch(ADAPTER_NAMES[alg].format(c=c), row["adapter"]), (alg, row["adapter"])
        assert row["reference"]
        assert {k: row[k] for k in ROUGE_KEYS} == pytest.approx(rouge(row["prediction"], row["reference"]))
    # the reported scores are the means of the per-client means of those per-sample scores
    for k in ROUGE_KEYS:
        by_client = [np.mean([r[k] for r in predictions if r["client"] == c]) for c in scores["per_client"]]
        assert scores[k] == pytest.approx(float(np.mean(by_client)), abs=1e-4)


def test_smoke_communication(smoke) -> None:
    from fedrouter_cli.model.lora import load_adapter

    sim = {alg: smoke(alg)["simulate"] for alg in BASELINES}
    rounds = 2
    assert sim["local"]["bytes_up"] == 0
    # local: the initial adapter goes down in round 1 only
    assert sim["local"]["bytes_down"] * rounds == sim["fedit"]["bytes_down"]
    # fedsa: A only, both ways (A and B have the same size for q_proj/v_proj... up to the shapes)
    assert 0 < sim["fedsa"]["bytes_up"] < sim["fedit"]["bytes_up"]
    assert sim["fedsa"]["bytes_down"] == sim["fedsa"]["bytes_up"]
    assert 0 < sim["ffa-lora"]["bytes_up"] < sim["fedit"]["bytes_up"]
    assert sim["fedsa"]["bytes_up"] + sim["ffa-lora"]["bytes_up"] == sim["fedit"]["bytes_up"]
    assert sim["feddpa"]["bytes_up"] == sim["fedit"]["bytes_up"]  # the local adapter never leaves the client
    # the fedsa server never held a lora_B
    fedsa_global = load_adapter(Path(sim["fedsa"]["adapters_dir"]) / "global")
    assert fedsa_global and not part(fedsa_global, "lora_B")
    # fedcluster assigned every client to a group
    run = smoke("fedcluster")["run"]
    from fedrouter_cli.files import read_json

    state = read_json(run.round_dir("fedcluster", rounds) / "state.json")
    assert sorted(state["extra"]["groups"]) == ["0", "1", "2", "3"]
    assert len(state["adapters"]) == len(set(state["extra"]["groups"].values()))
    # local, fedsa and feddpa kept their own parts on every node
    for alg, name in (("local", "local"), ("fedsa", "global"), ("feddpa", "local")):
        for c in range(4):
            assert (run.client_dir(f"c{c:02d}") / "state" / alg / f"{name}.r{rounds:04d}.safetensors").exists()
