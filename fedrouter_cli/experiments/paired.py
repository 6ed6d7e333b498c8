"""The bench's per-sample scores and the statistics built on them.

Every evaluation of a cell keeps its per-sample ROUGE-1 (and label exact match) in
`<results dir>/samples/<cell>.json`, written once when the cell finishes and committed with
bench.json, so the intervals can be recomputed on any machine from the results alone.
Tables then carry, per method and scenario, a 95% bootstrap interval over test samples (all
seeds), the label accuracy of classification tasks, and paired differences of FedRouter and
FedRouter* against every other method on the same test samples and seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedrouter_cli import stats
from fedrouter_cli.files import atomic_path, read_table
from fedrouter_cli.rundir import BenchResults

# the methods compared against every other one, pairwise
CHALLENGERS = ("fedrouter", "fedrouter-star")


def sample_scores(predictions_path: Path) -> dict[str, list]:
    """One evaluation's per-sample scores from its predictions.parquet, column by column.

    Tasks whose every reference is one word are label tasks (QQP's yes/no): their label set is the
    references' labels, each answer is scored by the one label it names (stats.named_label), and
    `label` and `answer` keep both, so the tables can show how often a method gives one answer
    whatever the input, or names no label or several; "" on other tasks."""
    table = read_table(predictions_path).to_pydict()
    words = [len(r.split()) for r in table["reference"]]
    label_sets: dict[str, set[str]] = {
        t: set() for t in label_tasks([{"task": table["task"], "reference_words": words}])}
    for task, reference in zip(table["task"], table["reference"]):
        if task in label_sets:
            label_sets[task].add(stats.reference_label(reference))
    labels = [stats.reference_label(r) if t in label_sets else "" for t, r in zip(table["task"], table["reference"])]
    answers = [stats.named_label(p, label_sets[t]) if t in label_sets else ""
               for t, p in zip(table["task"], table["prediction"])]
    return {"client": table["client"], "id": table["id"], "task": table["task"],
            "rouge1": [round(float(v), 5) for v in table["rouge1"]],
            "exact": [float(t in label_sets and a == lab) for t, a, lab in zip(table["task"], answers, labels)],
            "reference_words": words, "label": labels, "answer": answers, "label_rule": stats.LABEL_RULE}


def samples_path(out: Path, cell_name: str) -> Path:
    return BenchResults(out).samples_file(cell_name)


def store_samples(out: Path, record: dict[str, Any]) -> None:
    """Move a fresh record's in-memory samples to their file (bench.json keeps only the tables).
    A record carried over under a new name (`samples_cell`) gets a copy of its stored samples
    under that name, while they are still the record's (same fingerprints)."""
    if (source := record.pop("samples_cell", None)) is not None and source != record["cell"]:
        saved = samples_path(out, source)
        if saved.exists() and json.loads(saved.read_text()).get("fingerprints") == record.get("fingerprints"):
            record["samples"] = json.loads(saved.read_text())["evaluations"]
    samples = record.pop("samples", None)
    if samples is None:
        return
    path = samples_path(out, record["cell"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"cell": record["cell"], "fingerprints": record.get("fingerprints", {}),
                                   "evaluations": samples}, separators=(",", ":")))


def load_samples(out: Path, record: dict[str, Any]) -> dict[str, dict[str, list]]:
    """A record's per-sample scores by evaluation name ({} when they were never stored, or were
    stored for other settings than the record's)."""
    path = samples_path(out, record["cell"])
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    if saved.get("fingerprints") != record.get("fingerprints"):
        return {}
    return saved["evaluations"]


def keyed(record: dict[str, Any], samples: dict[str, list], value: str = "rouge1",
          skip_tasks: frozenset[str] = frozenset()) -> dict[tuple, float]:
    """(seed, client, sample id) -> score, for pairing methods on the same test samples."""
    return {(record["seed"], c, i): v for c, i, t, v in zip(samples["client"], samples["id"], samples["task"],
                                                            samples[value]) if t not in skip_tasks}


def label_tasks(samples: list[dict[str, list]]) -> set[str]:
    """Tasks whose every reference is one word (class labels: QQP's yes/no): scored by exact match."""
    words: dict[str, bool] = {}
    for s in samples:
        for task, n in zip(s["task"], s["reference_words"]):
            words[task] = words.get(task, True) and n == 1
    return {t for t, single in words.items() if single}


def interval(records: list[dict[str, Any]], samples: list[dict[str, list]], value: str = "rouge1",
             task: str | None = None) -> dict[str, Any] | None:
    """Bootstrap interval of a method's figure over its cells' test samples (None without samples)."""
    values, strata = [], []
    for record, s in zip(records, samples):
        for c, t, v in zip(s["client"], s["task"], s[value]):
            if task is None or t == task:
                values.append(v)
                strata.append((record["seed"], c))
    if not values:
        return None
    return stats.bootstrap(values, strata).to_json()


def label_answers(records: list[dict[str, Any]], samples: list[dict[str, list]], task: str) -> dict[str, Any]:
    """How a method answers a label task, against the floor any classifier must beat.

    majority / majority_accuracy: the test samples' most common label and the label accuracy of
    always giving it (a mean over (seed, client) like every figure). top_answers: per seed, since
    each seed trains another model, the method's most common answer and how often it gives it
    (near 1.0: it answers the same whatever the input, so its accuracy is that label's share, not
    skill), for the seeds whose samples keep answers. The floor is left out when any cell's
    samples predate labels, as top_answers is when all of them predate answers."""
    out: dict[str, Any] = {}
    labels = _task_values(records, samples, task, "label")
    if labels is None:
        return out
    majority, share = _most_common(*labels)
    out |= {"majority": majority, "majority_accuracy": share}
    # answers per seed from the cells that kept them (older per-sample files have labels only)
    kept = [(r, s) for r, s in zip(records, samples) if "answer" in s]
    top = []
    for seed in sorted({r["seed"] for r, _ in kept}):
        of_seed = [(r, s) for r, s in kept if r["seed"] == seed]
        if (found := _task_values([r for r, _ in of_seed], [s for _, s in of_seed], task, "answer")) is not None:
            answer, share = _most_common(*found)
            top.append({"seed": seed, "answer": answer, "share": share})
    if top:
        out["top_answers"] = top
    # how the answers were read: by the label they name (stats.named_label), or, in per-sample files
    # older than that rule, by their first word; only the former can say how many named no label
    rules = {s.get("label_rule", "first word") for s in samples}
    out["scored_by"] = rules.pop() if len(rules) == 1 else "mixed"
    if out["scored_by"] == stats.LABEL_RULE and (found := _task_values(records, samples, task, "answer")):
        answers, strata = found
        for key, marker in (("names_no_label", stats.NO_LABEL), ("names_several", stats.SEVERAL_LABELS)):
            out[key] = round(stats.stratified_mean([float(a == marker) for a in answers], strata), 4)
    return out


def _task_values(records: list[dict[str, Any]], samples: list[dict[str, list]], task: str, field: str
                 ) -> tuple[list[str], list[tuple]] | None:
    """One field's values on one task with their (seed, client) strata; None when any record's
    samples lack the field, or none are on the task."""
    values, strata = [], []
    for record, s in zip(records, samples):
        if field not in s:
            return None
        for c, t, v in zip(s["client"], s["task"], s[field]):
            if t == task:
                values.append(v)
                strata.append((record["seed"], c))
    return (values, strata) if values else None


def _most_common(values: list[str], strata: list[tuple]) -> tuple[str, float]:
    """The most common value (ties: the first in sorted order) and its share, a mean over strata."""
    common = max(sorted(set(values)), key=values.count)
    return common, round(stats.stratified_mean([float(v == common) for v in values], strata), 4)


def pair(rows: dict[str, list[tuple[dict[str, Any], dict[str, list]]]], better: str, worse: str
         ) -> dict[str, Any] | None:
    """Paired difference in ROUGE-1 of `better` minus `worse` over the test samples both scored
    (same seed, client, sample id); None when either has no stored samples.

    With label tasks among them (QQP's yes/no, where a method that gives one answer to everything
    scores the share of that label), the same difference without them is kept as well, as
    `without_labels`, so an ordering can be checked on the generation tasks alone."""
    if not rows.get(better) or not rows.get(worse):
        return None

    def merged(method: str, skip: frozenset[str]) -> dict[tuple, float]:
        out: dict[tuple, float] = {}
        for record, s in rows[method]:
            out |= keyed(record, s, skip_tasks=skip)
        return out

    scores = [merged(better, frozenset()), merged(worse, frozenset())]
    if (row := stats.paired_row(scores[0], scores[1])) is None:
        return None
    gap = {"method": better, "against": worse, "seeds": len({k[0] for k in set(scores[0]) & set(scores[1])}), **row}
    labels = frozenset(label_tasks([s for m in (better, worse) for _, s in rows[m]]))
    if labels and (rest := stats.paired_row(merged(better, labels), merged(worse, labels))) is not None:
        gap["without_labels"] = {"left_out": sorted(labels), **rest}
    return gap


def comparisons(rows: dict[str, list[tuple[dict[str, Any], dict[str, list]]]]) -> list[dict[str, Any]]:
    """Paired differences in ROUGE-1 of each challenger against every other method of one table.

    rows: method -> its (record, samples) pairs; pairs are matched by seed, client and sample id.
    """
    out = []
    for i, challenger in enumerate(CHALLENGERS):
        for other in rows:
            if other == challenger or other in CHALLENGERS[:i]:
                continue
            if (gap := pair(rows, challenger, other)) is not None:
                out.append(gap)
    return out
