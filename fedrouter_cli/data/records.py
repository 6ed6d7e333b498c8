"""A user's own records: one file (JSONL, JSON, CSV, Parquet), a folder of such files, a folder
written by `datasets`' `save_to_disk`, or `hf:NAME[:CONFIG]`, any dataset `datasets.load_dataset`
loads (offline: from the local cache), read into instruction/response rows through a column
mapping. No task labels are needed: a task column, when named, only feeds the figures by task.

Every problem with the input is one sentence naming the file and the column (exit 2), found
before anything is written.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedrouter_cli.errors import FedrouterError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
HUB_PREFIX = "hf:"  # hf:NAME[:CONFIG], a dataset by name


@dataclass(frozen=True)
class Columns:
    """Which column holds what. `input` is joined to the instruction as the template's input part
    (Alpaca's instruction + input); `task` and `client` are optional labels."""

    instruction: str = "instruction"
    response: str = "response"
    input: str | None = None
    task: str | None = None
    client: str | None = None


@dataclass(frozen=True)
class Record:
    instruction: str
    response: str
    task: str = ""      # "" when the data has no task column
    client: str = ""    # the client column's value, for naturally federated data
    source: str = ""    # file and row, for messages and stable ids


def read_records(path: Path | str, columns: Columns = Columns()) -> list[Record]:
    """Every row of `path` as a Record; see the module docstring for the accepted inputs."""
    if str(path).startswith(HUB_PREFIX):
        return _from_named_dataset(str(path), columns)
    path = Path(path).expanduser()
    if not path.exists():
        raise FedrouterError(f"{path} does not exist; pass a JSONL, JSON, CSV or Parquet file, or a folder of them.")
    if path.is_dir() and _is_saved_dataset(path):
        return _from_saved_dataset(path, columns)
    files = [path] if path.is_file() else _folder_files(path)
    if path.is_dir() and not files:
        raise FedrouterError(f"{path} holds no JSONL, JSON, CSV or Parquet file and is no folder saved by "
                             "datasets' save_to_disk; pass a file or such a folder.")
    records = [record for file in files for record in _file_records(file, columns)]
    if not records:
        raise FedrouterError(f"{path} holds no rows; add records with {columns.instruction!r} and "
                             f"{columns.response!r} columns.")
    return records


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_info.json").exists() or (folder / "dataset_dict.json").exists()


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def _file_records(file: Path, columns: Columns) -> list[Record]:
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise FedrouterError(f"{file} is not a JSONL, JSON, CSV or Parquet file (by its extension); "
                             "convert it to one of those.")
    if file.stat().st_size == 0:
        raise FedrouterError(f"{file} is empty; add records or leave it out.")
    reader = {".jsonl": _jsonl_rows, ".json": _json_rows, ".csv": _csv_rows, ".parquet": _parquet_rows}[suffix]
    return _records(file, reader(file), columns)


def _records(file: Path, rows: Iterable[tuple[int, Any]], columns: Columns) -> list[Record]:
    out = []
    for number, row in rows:
        if not isinstance(row, dict):
            raise FedrouterError(f"{file} row {number} is not a record with named columns; each row must be one.")
        values = {}
        for role in ("instruction", "response", "input", "task", "client"):
            name = getattr(columns, role)
            if name is None:
                continue
            if name not in row:
                raise FedrouterError(f"{file} has no column {name!r} (row {number}); its columns are "
                                     f"{', '.join(map(str, row))}. Name the right one with --{role}-column.")
            value = row[name]
            if value is None or (isinstance(value, float) and value != value):  # missing, NaN
                value = ""
            if not isinstance(value, (str, int, float, bool)):
                raise FedrouterError(f"{file} column {name!r} is not text (row {number} holds a "
                                     f"{type(value).__name__}); point --{role}-column at a text column.")
            values[role] = str(value).strip()
        for role in ("instruction", "response"):
            if not values[role]:
                raise FedrouterError(f"{file} row {number} has an empty {getattr(columns, role)!r}; every row "
                                     f"needs an instruction and a response.")
        instruction = values["instruction"] + (f"\n\n{values['input']}" if values.get("input") else "")
        out.append(Record(instruction=instruction, response=values["response"], task=values.get("task", ""),
                          client=values.get("client", ""), source=f"{file.name}:{number}"))
    return out


def _text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FedrouterError(f"{file} is not UTF-8 text; save it as UTF-8.") from None


def _jsonl_rows(file: Path) -> Iterable[tuple[int, Any]]:
    for number, line in enumerate(_text(file).splitlines(), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except ValueError:
                raise FedrouterError(f"{file} line {number} is not valid JSON; fix or remove that line.") from None


def _json_rows(file: Path) -> Iterable[tuple[int, Any]]:
    try:
        data = json.loads(_text(file))
    except ValueError:
        raise FedrouterError(f"{file} is not valid JSON; a .json file holds one list of records "
                             "(use .jsonl for one record per line).") from None
    if not isinstance(data, list):
        raise FedrouterError(f"{file} holds a JSON {type(data).__name__}, not a list of records.")
    return enumerate(data, start=1)


def _csv_rows(file: Path) -> Iterable[tuple[int, Any]]:
    text = _text(file)
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))  # quoted fields may span lines
    except csv.Error as exc:
        raise FedrouterError(f"{file} is not readable CSV ({exc}); fix it or convert it.") from None
    return enumerate(rows, start=2)  # row numbers as a spreadsheet shows them, after the header


def _parquet_rows(file: Path) -> Iterable[tuple[int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except (pa.ArrowInvalid, OSError):
        raise FedrouterError(f"{file} is not a readable Parquet file, whatever its extension says.") from None
    return enumerate(table.to_pylist(), start=1)


def _from_saved_dataset(folder: Path, columns: Columns) -> list[Record]:
    """A folder `datasets.Dataset.save_to_disk` wrote (every split of a DatasetDict, in order)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises many types for a damaged folder
        raise FedrouterError(f"{folder} could not be read by datasets.load_from_disk ({exc.__class__.__name__}); "
                             "save it again with save_to_disk.") from None
    return [record for part in dataset_parts(loaded) for record in _records(folder, enumerate(part, start=1), columns)]


def dataset_parts(loaded) -> list:
    """The splits of what `datasets` loaded, in order: every split of a DatasetDict, or the one Dataset."""
    import datasets

    return list(loaded.values()) if isinstance(loaded, datasets.DatasetDict) else [loaded]


def parse_hub_source(source: str) -> tuple[str, str | None]:
    """'hf:NAME[:CONFIG]' -> (NAME, CONFIG or None)."""
    name, _, config = source[len(HUB_PREFIX):].partition(":")
    if not name:
        raise FedrouterError(f"--source {source} names no dataset; write hf:NAME or hf:NAME:CONFIG.")
    return name, config or None


@functools.lru_cache(maxsize=4)
def load_named_dataset(source: str):
    """The DatasetDict (or Dataset) `datasets.load_dataset` gives for hf:NAME[:CONFIG]; kept, so
    the partition's fingerprint and its rows come from one load."""
    import datasets

    name, config = parse_hub_source(source)
    try:
        return datasets.load_dataset(name, config)
    except Exception as exc:  # offline misses, unknown names and configs arrive as many types
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise FedrouterError(f"datasets could not load {name!r}{f' ({config})' if config else ''}: {reason}. Offline, "
                             "only datasets already in the local datasets cache load; check the name.") from None


def _from_named_dataset(source: str, columns: Columns) -> list[Record]:
    parts = dataset_parts(load_named_dataset(source))
    records = [record for part in parts for record in _records(Path(source), enumerate(part, start=1), columns)]
    if not records:
        raise FedrouterError(f"{source} holds no rows; name a dataset with records.")
    return records
