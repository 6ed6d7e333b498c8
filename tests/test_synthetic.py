"""Unit tests for the embedded synthetic dataset (fedrouter_cli.data.synthetic)."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

try:
    from fedrouter_cli.data import synthetic
except ModuleNotFoundError:  # running from outside the repo without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fedrouter_cli.data import synthetic

from fedrouter_cli.data.synthetic import SYNTHETIC_TASKS, TASK_CATEGORIES, generate_rows

# The first line of each phrasing (or, for prompts that put the input first, the last line)
# identifies which instruction template was used.
PROMPT_MARKERS: dict[str, tuple[str, ...]] = {
    "paraphrase": ("Do these two questions", "Are the following questions", "Would an answer",
                   "Decide whether the two questions"),
    "triples_to_text": ("Turn these facts", "Write a sentence that expresses", "Describe this data",
                        "Verbalize the knowledge-graph"),
    "dialogue_summary": ("Summarize this conversation", "What happened in the chat",
                         "Read the dialogue", "Briefly sum up"),
    "headline": ("Write a short headline", "concise title", "Generate a headline", "good headline"),
}


def test_public_constants() -> None:
    assert SYNTHETIC_TASKS == ("paraphrase", "triples_to_text", "dialogue_summary", "headline")
    assert set(TASK_CATEGORIES) == set(SYNTHETIC_TASKS)
    # the partition stage fingerprints this; v2 is the first version with task frames
    assert isinstance(synthetic.GENERATOR_VERSION, int) and synthetic.GENERATOR_VERSION >= 2


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_row_schema(task: str) -> None:
    for i, row in enumerate(generate_rows(task, "train", 20)):
        assert set(row) == {"id", "task", "category", "instruction", "response"}
        assert row["id"] == f"{task}-train-{i:05d}"
        assert row["task"] == task and row["category"] == TASK_CATEGORIES[task]
        assert row["instruction"].strip() and row["response"].strip()


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_deterministic_and_seed_sensitive(task: str) -> None:
    assert generate_rows(task, "train", 50, seed=3) == generate_rows(task, "train", 50, seed=3)
    assert generate_rows(task, "train", 50, seed=3) != generate_rows(task, "train", 50, seed=4)


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_prefix_stable(task: str) -> None:
    assert generate_rows(task, "test", 120, seed=7)[:40] == generate_rows(task, "test", 40, seed=7)


def test_ids_unique_across_tasks_and_splits() -> None:
    ids = [r["id"] for t in SYNTHETIC_TASKS for s in ("train", "test") for r in generate_rows(t, s, 300)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_train_test_disjoint(task: str) -> None:
    train = {r["instruction"] for r in generate_rows(task, "train", 2000)}
    test = {r["instruction"] for r in generate_rows(task, "test", 2000)}
    assert not train & test
    # nearly all rows within a split are distinct as well
    assert len(train) > 1990 and len(test) > 1990


def test_paraphrase_labels_balanced() -> None:
    labels = [r["response"] for r in generate_rows("paraphrase", "train", 1000)]
    assert set(labels) == {"yes", "no"}
    assert 0.4 <= labels.count("yes") / len(labels) <= 0.6


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_several_instruction_phrasings(task: str) -> None:
    rows = generate_rows(task, "train", 200)
    seen = {m for r in rows for m in PROMPT_MARKERS[task] if m in r["instruction"]}
    assert len(seen) >= 3
    # every row uses one of the known phrasings of its own task and none of the others'
    others = [m for t, ms in PROMPT_MARKERS.items() if t != task for m in ms]
    for r in rows:
        assert any(m in r["instruction"] for m in PROMPT_MARKERS[task])
        assert not any(m in r["instruction"] for m in others)


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_one_task_frame_per_task(task: str) -> None:
    # every row of a task opens with the same task line, which no other task uses, so the
    # task (not the topic of the row) dominates its embedding
    heads = {t: {r["instruction"].splitlines()[0] for r in generate_rows(t, "train", 100)} for t in SYNTHETIC_TASKS}
    assert len(heads[task]) == 1
    assert all(not heads[task] & heads[t] for t in SYNTHETIC_TASKS if t != task)


def test_rows_mix_topics() -> None:
    # topics are mixed within a row, so they do not form separate sub-clusters of a task
    for r in generate_rows("paraphrase", "train", 100):
        q1, q2 = (line for line in r["instruction"].splitlines() if line.startswith("Question "))
        assert q1.count("?") >= 2 and q2.count("?") >= 2
    for r in generate_rows("triples_to_text", "train", 100):
        subjects = {line[1:].split(" | ")[0] for line in r["instruction"].splitlines() if line.startswith("(")}
        assert len(subjects) == 2
    for r in generate_rows("dialogue_summary", "train", 100):
        assert r["response"].count(". ") >= 1
    for r in generate_rows("headline", "train", 100):
        assert any(w in r["instruction"] for w in ("In other news,", "Separately,", "Meanwhile,", "Earlier,"))


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_instruction_lengths_vary(task: str) -> None:
    counts = [len(r["instruction"].split()) for r in generate_rows(task, "train", 500)]
    assert statistics.pstdev(counts) > 3
    assert min(counts) >= 12 and max(counts) <= 150


def test_responses_follow_inputs() -> None:
    for r in generate_rows("headline", "train", 200):
        assert len(r["response"].split()) < len(r["instruction"].split())
    for r in generate_rows("triples_to_text", "train", 200):
        subject = r["instruction"].split("|")[0].split("(")[-1].split(":")[-1].strip()
        assert r["response"].startswith(subject)
    for r in generate_rows("dialogue_summary", "train", 200):
        speakers = {line.split(":")[0] for line in r["instruction"].splitlines() if ": " in line}
        assert any(name in r["response"] for name in speakers)


@pytest.mark.parametrize(
    ("task", "split", "needle"),
    [("sentiment", "train", "valid tasks"), ("paraphrase", "validation", "valid splits")],
)
def test_bad_arguments_raise(task: str, split: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as info:
        generate_rows(task, split, 5)
    assert "paraphrase" in str(info.value) or "train" in str(info.value)


def test_fast_enough() -> None:
    import time

    start = time.perf_counter()
    for task in synthetic.SYNTHETIC_TASKS:
        generate_rows(task, "train", 2500)
    assert time.perf_counter() - start < 2.0
