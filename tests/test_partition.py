import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fedrouter_cli.config import Config
from fedrouter_cli.config_file import build_config
from fedrouter_cli.data.partition import client_tasks
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.rundir import RunDir
from fedrouter_cli.stages.partition import run_partition


def _config(**data) -> Config:
    return build_config(Config(), {"data": data})


def _client_rows(run: RunDir, client: str, split: str) -> list[dict]:
    return pq.read_table(run.partition_file(client, split)).to_pylist()


def test_scenario_task_assignment() -> None:
    tasks = ("a", "b", "c", "d")
    assert [client_tasks("single", tasks, 8, i) for i in range(8)] == [("a",), ("a",), ("b",), ("b",), ("c",), ("c",), ("d",), ("d",)]
    assert client_tasks("dual", tasks, 8, 7) == ("d", "a")
    assert client_tasks("all", tasks, 3, 2) == tasks
    assert client_tasks("single", tasks, 2, 1) == ("c",)  # fewer clients than tasks


@pytest.mark.parametrize("scenario, per_client_tasks", [("single", 1), ("dual", 2), ("all", 4)])
def test_partition_shapes(tmp_path: Path, scenario: str, per_client_tasks: int) -> None:
    run = RunDir(tmp_path / "run")
    result = run_partition(_config(scenario=scenario, clients=8, train_per_client=40, test_per_client=8), run)
    assert not result.cache_hit
    for i in range(8):
        train = _client_rows(run, f"c{i:02d}", "train")
        test = _client_rows(run, f"c{i:02d}", "test")
        test_all = _client_rows(run, f"c{i:02d}", "test_all")
        assert len(train) == 40 and len(test) == 8 and len(test_all) == 8
        assert len(Counter(r["task"] for r in train)) == per_client_tasks
        assert set(r["task"] for r in test) == set(r["task"] for r in train)
        assert len(set(r["task"] for r in test_all)) == 4
        assert len({r["id"] for r in train}) == len(train)  # never the same row twice in a client
    train_ids = {r["id"] for i in range(8) for r in _client_rows(run, f"c{i:02d}", "train")}
    test_ids = {r["id"] for i in range(8) for s in ("test", "test_all") for r in _client_rows(run, f"c{i:02d}", s)}
    assert not train_ids & test_ids
    again = run_partition(_config(scenario=scenario, clients=8, train_per_client=40, test_per_client=8), run)
    assert again.cache_hit


def _write_source(root: Path, tasks: dict[str, int]) -> Path:
    for task, n in tasks.items():
        (root / task).mkdir(parents=True)
        for split, count in (("train", n), ("test", 5)):
            lines = [json.dumps({"id": f"{task}-{split}-{i}", "instruction": f"{task} question {split} {i}",
                                 "response": f"answer {i}"}) for i in range(count)]
            (root / task / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_short_source_warns_and_never_repeats_within_client(tmp_path: Path) -> None:
    source = _write_source(tmp_path / "src", {"x": 6, "y": 30})
    run = RunDir(tmp_path / "run")
    result = run_partition(_config(source=str(source), scenario="single", clients=2, train_per_client=10,
                                   test_per_client=3), run)
    assert any("only 6 rows" in w for w in result.warnings)
    rows = _client_rows(run, "c00", "train")
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6


def test_unknown_task_and_bad_rows(tmp_path: Path) -> None:
    source = _write_source(tmp_path / "src", {"x": 6})
    run = RunDir(tmp_path / "run")
    with pytest.raises(FedrouterError, match="Unknown task"):
        run_partition(_config(source=str(source), tasks=("nope",)), run)
    (source / "x" / "train.jsonl").write_text('{"instruction": "q", "response": "a"}\n{"response": "a"}\n')
    with pytest.raises(FedrouterError, match="line 2 has no text 'instruction'"):
        run_partition(_config(source=str(source), clients=1, train_per_client=1, test_per_client=1), run)
    (source / "x" / "train.jsonl").write_text('{"instruction": "q", "response": "a"}\n{not json\n')
    with pytest.raises(FedrouterError, match="line 2 is not valid JSON"):
        run_partition(_config(source=str(source), clients=1, train_per_client=1, test_per_client=1), run)
    assert not run.root.exists() or not any(run.root.iterdir())  # nothing written


def test_train_rows_that_repeat_test_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    for task in ("a", "b"):
        folder = tmp_path / "source" / task
        folder.mkdir(parents=True)
        rows = [{"instruction": f"{task} question {i}", "response": f"answer {i}"} for i in range(30)]
        test = rows[:10]
        train = rows[5:] if task == "a" else rows[10:]  # task a repeats 5 test rows in train
        (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
        (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    run = RunDir(tmp_path / "run")
    result = run_partition(_config(source=str(tmp_path / "source"), scenario="all", clients=2, train_per_client=20,
                                   test_per_client=4), run)
    counted = [w for w in result.warnings if "also appear in its test split" in w]
    assert counted == ["train: task a: dropped 5 of its 25 train rows that also appear in its test split "
                       "(same id, or same instruction and response)"]
    trained = {r["instruction"] for c in ("c00", "c01") for r in _client_rows(run, c, "train")}
    assert not trained & {f"a question {i}" for i in range(10)}


def test_quantity_skew_gives_the_requested_spread_and_a_batch_to_everyone(tmp_path: Path) -> None:
    import numpy as np

    from fedrouter_cli.data.partition import skewed_sizes

    uneven = skewed_sizes(1500, 10, 0.3, seed=0, minimum=4)
    assert sum(uneven) == 1500 and min(uneven) >= 4
    assert np.std(uneven) / np.mean(uneven) > 0.5  # alpha 0.3: very uneven
    assert uneven == skewed_sizes(1500, 10, 0.3, seed=0, minimum=4) != skewed_sizes(1500, 10, 0.3, seed=1, minimum=4)
    even = skewed_sizes(1500, 10, 1000.0, seed=0, minimum=4)
    assert sum(even) == 1500 and np.std(even) / np.mean(even) < 0.1  # a large alpha: nearly equal
    with pytest.raises(FedrouterError, match="at least one batch"):
        skewed_sizes(10, 4, 0.5, seed=0, minimum=4)
    run = RunDir(tmp_path / "run")
    config = build_config(Config(), {"data": {"scenario": "dual", "clients": 4, "train_per_client": 30,
                                              "test_per_client": 4, "quantity_skew": 0.5},
                                     "train": {"batch_size": 4}})
    run_partition(config, run)
    sizes = [len(_client_rows(run, f"c{i:02d}", "train")) for i in range(4)]
    assert sizes == skewed_sizes(120, 4, 0.5, seed=0, minimum=4)
    assert all(len(_client_rows(run, f"c{i:02d}", "test")) == 4 for i in range(4))  # test sets stay equal
