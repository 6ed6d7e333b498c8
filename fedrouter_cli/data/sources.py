"""Where task rows come from: the built-in generator, a folder of JSONL files, or the HF hub."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fedrouter_cli.data import synthetic
from fedrouter_cli.errors import FedrouterError

SPLITS = ("train", "test")
# The paper's four tasks, as available on the Hugging Face hub in Parquet form (datasets >= 4
# no longer runs loading scripts, so script-only repositories are avoided).
HF_TASKS: dict[str, tuple[str, str | None]] = {
    "qqp": ("nyu-mll/glue", "qqp"),
    "webnlg": ("GEM/web_nlg", "en"),
    "samsum": ("knkarthick/samsum", None),
    "gigaword": ("Harvard/gigaword", None),
}


@dataclass(frozen=True)
class Row:
    id: str
    task: str
    instruction: str
    response: str
    category: str = ""


def available_tasks(source: str) -> tuple[str, ...]:
    if source == "synthetic":
        return synthetic.SYNTHETIC_TASKS
    if source == "hf":
        return tuple(HF_TASKS)
    folder = _source_dir(source)
    tasks = tuple(sorted(p.name for p in folder.iterdir() if (p / "train.jsonl").exists()))
    if not tasks:
        raise FedrouterError(
            f"--source {source} holds no <task>/train.jsonl files; point it at a folder of task folders."
        )
    return tasks


def resolve_tasks(source: str, tasks: tuple[str, ...]) -> tuple[str, ...]:
    known = available_tasks(source)
    if not tasks:
        return known
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise FedrouterError(
            f"Unknown task(s) {', '.join(unknown)} for --source {source}; known tasks: {', '.join(known)}."
        )
    if len(set(tasks)) != len(tasks):
        raise FedrouterError(f"--tasks lists a task twice ({','.join(tasks)}); list each task once.")
    return tasks


def load_rows(source: str, task: str, split: str, wanted: int, seed: int) -> list[Row]:
    """All rows of one task and split (the generator makes exactly `wanted`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    if source == "synthetic":
        return [Row(**r) for r in synthetic.generate_rows(task, split, wanted, seed)]
    if source == "hf":
        return _load_hf(task, split)
    return _load_jsonl(_source_dir(source) / task / f"{split}.jsonl", task)


def _source_dir(source: str) -> Path:
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise FedrouterError(
            f"--source {source} is neither 'synthetic', 'hf' nor an existing folder; "
            "pass a folder of <task>/{train,test}.jsonl files."
        )
    return folder


def _load_jsonl(path: Path, task: str) -> list[Row]:
    if not path.exists():
        raise FedrouterError(f"{path} is missing; every task folder needs train.jsonl and test.jsonl.")
    rows: list[Row] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FedrouterError(f"{path} is not UTF-8 text; save it as UTF-8 JSON lines.") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise FedrouterError(f"{path} line {number} is not valid JSON; fix or remove that line.") from None
        if not isinstance(record, dict):
            raise FedrouterError(f"{path} line {number} is not a JSON object; each line must be one object.")
        for key in ("instruction", "response"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise FedrouterError(
                    f"{path} line {number} has no text '{key}' field; every row needs 'instruction' and 'response'."
                )
        rows.append(Row(
            id=str(record.get("id") or f"{task}-{path.stem}-{number:06d}"),
            task=task,
            instruction=record["instruction"],
            response=record["response"],
            category=str(record.get("category") or ""),
        ))
    if not rows:
        raise FedrouterError(f"{path} holds no rows; add JSON lines with 'instruction' and 'response'.")
    return rows


def _load_hf(task: str, split: str) -> list[Row]:
    """The paper's four data sets from the hub, turned into instruction/response rows."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a declared dependency
        raise FedrouterError("--source hf needs the 'datasets' package; pip install datasets.") from None
    repo, name = HF_TASKS[task]
    hf_split = {"train": "train", "test": "validation" if task == "qqp" else "test"}[split]
    try:
        data = datasets.load_dataset(repo, name, split=hf_split)
    except Exception as exc:  # the hub raises many types; all mean "not reachable or not there"
        raise FedrouterError(
            f"Could not load {repo} from the Hugging Face hub ({exc.__class__.__name__}); "
            "--source hf needs internet access, otherwise use --source synthetic or a JSONL folder."
        ) from None
    return [_hf_row(task, i, dict(r)) for i, r in enumerate(data)]


def _hf_row(task: str, index: int, record: dict) -> Row:
    if task == "qqp":
        instruction = (f"Do these two questions ask the same thing?\n{record['question1']}\n"
                       f"{record['question2']}\n\nOPTIONS:\n- no\n- yes")
        response = "yes" if record["label"] == 1 else "no"
    elif task == "webnlg":
        triples = record.get("input") or record.get("modified_triple_sets", {}).get("mtriple_set", [[]])[0]
        instruction = "Write a sentence that verbalizes this data: " + "; ".join(triples)
        response = record.get("target") or record.get("lex", {}).get("text", [""])[0]
    elif task == "samsum":
        instruction = "Summarize this dialogue:\n" + record["dialogue"]
        response = record["summary"]
    else:
        instruction = "Write a headline for this article: " + record["document"]
        response = record["summary"]
    return Row(id=f"{task}-{index:07d}", task=task, instruction=instruction, response=response)
