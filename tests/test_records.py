"""A user's own records in the formats people keep them in, read through a column mapping; bad
input is one sentence naming the file and the column."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedrouter_cli.data.records import Columns, read_records
from fedrouter_cli.errors import FedrouterError

ROWS = [{"question": "What is 2+2?", "answer": "4", "context": "", "site": "a"},
        {"question": "Name a colour.", "answer": "blue", "context": "Pick one you like.", "site": "b"}]
COLUMNS = Columns(instruction="question", response="answer", input="context", client="site")


def _write(folder: Path, fmt: str, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "csv":
        keys = list(rows[0])
        path.write_text(",".join(keys) + "\n" + "".join(",".join(f'"{r[k]}"' for k in keys) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_every_format_gives_the_same_records(tmp_path: Path, fmt: str) -> None:
    records = read_records(_write(tmp_path, fmt, ROWS), COLUMNS)
    assert [(r.instruction, r.response, r.client, r.task) for r in records] == [
        ("What is 2+2?", "4", "a", ""), ("Name a colour.\n\nPick one you like.", "blue", "b", "")]
    assert records[0].source.startswith("data.")


def test_a_quoted_csv_field_may_span_lines(tmp_path: Path) -> None:
    path = tmp_path / "dialogues.csv"
    path.write_text('dialogue,summary\n"Ann: hi\nBob: hello, Ann","They greet."\n')
    records = read_records(path, Columns(instruction="dialogue", response="summary"))
    assert [(r.instruction, r.response) for r in records] == [("Ann: hi\nBob: hello, Ann", "They greet.")]


def test_a_folder_of_files_and_a_saved_dataset(tmp_path: Path) -> None:
    import datasets

    _write(tmp_path / "mixed" / "one", "jsonl", ROWS[:1])
    _write(tmp_path / "mixed" / "two", "parquet", ROWS[1:])
    assert [r.response for r in read_records(tmp_path / "mixed", COLUMNS)] == ["4", "blue"]
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    assert [r.client for r in read_records(tmp_path / "saved", COLUMNS)] == ["a", "b"]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "saved_dict"))
    assert len(read_records(tmp_path / "saved_dict", COLUMNS)) == 2


def test_a_dataset_by_name_from_the_local_datasets_cache(tmp_path: Path, monkeypatch) -> None:
    """hf:NAME goes through datasets.load_dataset, offline from the local cache: the test builds that
    cache the way a download would (a first load), then reads the dataset by name alone."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    _write(tmp_path / "support_tickets" / "data", "jsonl", ROWS)
    datasets.load_dataset(str(tmp_path / "support_tickets"))
    monkeypatch.chdir(tmp_path / "cache")  # the name is no folder here: only the cache can answer
    records = read_records("hf:support_tickets", COLUMNS)
    assert [(r.instruction, r.response, r.client) for r in records] == [
        ("What is 2+2?", "4", "a"), ("Name a colour.\n\nPick one you like.", "blue", "b")]
    with pytest.raises(FedrouterError, match="could not load 'no_such_dataset'.*local datasets cache"):
        read_records("hf:no_such_dataset", COLUMNS)


def _bad(tmp_path: Path, case: str) -> tuple[Path, Columns]:
    if case == "missing column":
        return _write(tmp_path, "jsonl", ROWS), Columns(instruction="prompt", response="answer")
    if case == "empty file":
        (tmp_path / "empty.csv").write_text("")
        return tmp_path / "empty.csv", COLUMNS
    if case == "empty response":
        return _write(tmp_path, "jsonl", [{**ROWS[0], "answer": "  "}]), COLUMNS
    if case == "non-text column":
        return _write(tmp_path, "parquet", [{**ROWS[0], "answer": [1, 2]}]), COLUMNS
    if case == "another format than its extension":
        (tmp_path / "data.parquet").write_text("question,answer\nhi,there\n")
        return tmp_path / "data.parquet", COLUMNS
    if case == "json that is no list":
        (tmp_path / "data.json").write_text('{"question": "hi"}')
        return tmp_path / "data.json", COLUMNS
    if case == "not utf-8":
        (tmp_path / "data.jsonl").write_bytes(b"\xff\xfe{}")
        return tmp_path / "data.jsonl", COLUMNS
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("x")
    return tmp_path / "folder", COLUMNS


@pytest.mark.parametrize(("case", "message"), [
    ("missing column", "has no column 'prompt'"), ("empty file", "empty.csv is empty"),
    ("empty response", "has an empty 'answer'"), ("non-text column", "column 'answer' is not text"),
    ("another format than its extension", "not a readable Parquet file"),
    ("json that is no list", "not a list of records"), ("not utf-8", "is not UTF-8"),
    ("a folder of nothing readable", "no folder saved by datasets")])
def test_bad_records_are_one_sentence_naming_the_file(tmp_path: Path, case: str, message: str) -> None:
    path, columns = _bad(tmp_path, case)
    with pytest.raises(FedrouterError, match=message) as refused:
        read_records(path, columns)
    assert str(path.name) in str(refused.value)


def _sites(tmp_path: Path, sites: tuple[str, ...] = ("clinic", "lab", "school")) -> Path:
    """Each site's own questions (two kinds, no task column), with one duplicate row at the lab."""
    rows = []
    for site in sites:
        for i in range(10):
            rows.append({"q": f"At the {site}, how many visitors came on day {i}?", "a": f"{i * 3} visitors",
                         "where": site})
            rows.append({"q": f"Translate the {site} sign number {i} into French.", "a": f"panneau {i}",
                         "where": site})
    rows.append(dict(rows[-1]))  # an exact duplicate: dropped, and said so
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_one_client_per_value_of_a_client_column(tmp_path: Path) -> None:
    """`--source FILE --client-column COLUMN`: one client per value (sorted), each split into its
    own seeded train and test rows, duplicates counted; then the local clusters run without labels."""
    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app
    from fedrouter_cli.files import read_table

    source = _sites(tmp_path)
    common = ["--source", str(source), "--client-column", "where", "--instruction-column", "q",
              "--response-column", "a", "--train-per-client", "100", "--test-per-client", "100", "--json"]
    made = CliRunner().invoke(app, ["partition", "--run-dir", str(tmp_path / "run"), "--clients", "3", *common])
    assert made.exit_code == 0, made.output
    summary = json.loads(made.stdout)
    assert [c["where"] for c in summary["clients"]] == ["clinic", "lab", "school"]
    assert summary["tasks"] == [] and any("dropped 1 duplicate" in w for w in summary["warnings"])
    for index, client in enumerate(("c00", "c01", "c02")):
        train = read_table(tmp_path / "run" / "partition" / "clients" / client / "train.parquet").to_pylist()
        test = read_table(tmp_path / "run" / "partition" / "clients" / client / "test.parquet").to_pylist()
        assert (len(train), len(test)) == (16, 4)  # 20 distinct rows, a fifth for test
        assert not {r["instruction"] for r in train} & {r["instruction"] for r in test}
        assert all(summary["clients"][index]["where"] in r["instruction"] for r in train + test)
    clustered = CliRunner().invoke(app, ["cluster-local", "--run-dir", str(tmp_path / "run"), "--json"])
    assert clustered.exit_code == 0, clustered.output
    # the paper's 'tasks' K rule needs labels these records do not have: one sentence
    refused = CliRunner().invoke(app, ["cluster-local", "--run-dir", str(tmp_path / "run"), "--n-clusters", "tasks"])
    assert refused.exit_code == 2 and "needs task labels" in refused.stderr


@pytest.mark.parametrize(("sites", "clients", "message"), [
    (("clinic",), "1", "has 1 value(s)"), (("clinic", "lab", "school"), "8", "pass --clients 3")])
def test_a_client_column_that_cannot_make_the_federation_is_refused(tmp_path: Path, sites: tuple,
                                                                    clients: str, message: str) -> None:
    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app

    result = CliRunner().invoke(app, ["partition", "--run-dir", str(tmp_path / "run"), "--source",
                                      str(_sites(tmp_path, sites)), "--client-column", "where", "--clients", clients,
                                      "--instruction-column", "q", "--response-column", "a"])
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "partition").exists()
