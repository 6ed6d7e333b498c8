"""Embedded default dataset: seeded synthetic tasks shaped like QQP, WebNLG, SAMSum, Gigaword.

Row ``i`` is produced by its own RNG, seeded with a stable hash of (seed, task, split, i),
so generation is deterministic and prefix-stable. Every row mentions at least one
partitioned name (a made-up word whose first syllable, or a first name, comes from the
split's half of the name space), so train and test rows can never share the same text.

Each task wraps its input in one fixed frame (a "Task: ..." line, one of a few intro phrasings,
labelled fields, a closing cue) and every row mixes several topics, so that in a sentence
embedding each task forms one compact group instead of one group per topic template.
"""

from __future__ import annotations

import hashlib
import random
import string
from typing import Callable

from fedrouter_cli.data.synthetic_stories import build_dialogue, build_headline
from fedrouter_cli.data.synthetic_vocab import (
    GENRES,
    INDUSTRIES,
    ROLES,
    SKILLS,
    Gen,
    article,
)

SYNTHETIC_TASKS: tuple[str, ...] = ("paraphrase", "triples_to_text", "dialogue_summary", "headline")
TASK_CATEGORIES: dict[str, str] = {"paraphrase": "paraphrase", "triples_to_text": "structure_to_text",
                                   "dialogue_summary": "summarization", "headline": "summarization"}
SPLITS: tuple[str, ...] = ("train", "test")
# Bumped whenever the generated text changes, so cached partitions are rebuilt.
GENERATOR_VERSION = 2

# ---------------------------------------------------------------- paraphrase (QQP-like)
_SLOTS: dict[str, Callable[[Gen], str]] = {
    "city": Gen.city, "city2": Gen.city, "company": Gen.company, "person": Gen.person,
    "school": Gen.school, "product": Gen.product,
    "role": lambda g: g.pick(ROLES), "skill": lambda g: g.pick(SKILLS),
    "n": lambda g: g.num(2, 18), "year": lambda g: g.num(1985, 2024), "price": lambda g: g.num(40, 1900),
}
_FRAMES: tuple[tuple[str, ...], ...] = (
    ("How long does it take to drive from {city} to {city2}?", "What is the driving time from {city} to {city2}?",
     "If I drive from {city} to {city2}, how many hours will it take?"),
    ("What is the best way to learn {skill} at {school} in {n} months?",
     "How can I get good at {skill} within {n} months at {school}?",
     "At {school}, what is the fastest way to master {skill} in {n} months?"),
    ("How do I get a job as {role} at {company}?", "What does it take to be hired as {role} by {company}?",
     "What is the hiring process for the job of {role} at {company}?"),
    ("Is the {product} worth buying for {price} dollars?", "Should I pay {price} dollars for the {product}?",
     "Is {price} dollars a fair price for the {product}?"),
    ("Why did {person} leave {company} in {year}?", "What made {person} quit {company} in {year}?",
     "What was the reason {person} departed from {company} in {year}?"),
    ("What is it like to live in {city} as {role}?", "How is life in {city} for someone working as {role}?",
     "Would {role} enjoy living in {city}?"),
    ("How many people lived in {city} in {year}?", "What was the population of {city} in {year}?",
     "In {year}, how large was the population of {city}?"),
    ("Who founded {company}, and in which year?", "When was {company} started and by whom?",
     "Which person created {company}, and when did that happen?"),
)
# Every task wraps its input in one fixed task frame (a title line, one of a few intro phrasings,
# labelled fields and a closing cue), so the frame, not the topic, dominates the text; and every
# instance mixes several topics (two question frames, two linked entities, two dialogue scenes,
# several news events), so the topics do not split a task into separate groups.
_PARA_INTROS = (
    "Do these two questions ask the same thing?",
    "Are the following questions paraphrases of each other, asking the same thing?",
    "Would an answer to Question 1 also answer Question 2?",
    "Decide whether the two questions below are duplicates that ask the same thing.",
)
_PARA_CUES = ("Answer yes or no.", "Reply with yes or no.", "Answer with yes or no only.")


def _fill_slots(g: Gen, text: str, slots: dict[str, str] | None = None) -> dict[str, str]:
    slots = {} if slots is None else slots
    for _, name, _, _ in string.Formatter().parse(text):
        if name and name not in slots:
            value = _SLOTS[name](g)
            slots[name] = article(value) if name == "role" else value
    return slots


def _paraphrase(g: Gen) -> tuple[str, str]:
    frames = g.rng.sample(_FRAMES, 2)  # a two-part question: two topics per instance
    slots: dict[str, str] = {}
    for frame in frames:
        _fill_slots(g, frame[0], slots)
    same = g.rng.random() < 0.5
    if same:
        pairs = [g.rng.sample(frame, 2) for frame in frames]
        other = slots
    else:
        pairs = [(g.pick(frame), g.pick(frame)) for frame in frames]
        other = dict(slots)
        key = g.pick(sorted(slots))
        while other[key] == slots[key]:
            other[key] = _fill_slots(g, "{" + key + "}")[key]
    joiner = g.pick((" ", " Also, ", " And "))

    def two_part(texts: list[str], values: dict[str, str]) -> str:
        first, second = (t.format(**values) for t in texts)
        return first + joiner + (second if joiner == " " else second[0].lower() + second[1:])

    a, b = two_part([p[0] for p in pairs], slots), two_part([p[1] for p in pairs], other)
    if g.rng.random() < 0.5:
        a, b = b, a
    text = (f"Task: duplicate question detection.\n{g.pick(_PARA_INTROS)}\n"
            f"Question 1: {a}\nQuestion 2: {b}\n{g.pick(_PARA_CUES)}")
    return text, "yes" if same else "no"


# ---------------------------------------------------------------- triples_to_text (WebNLG-like)
_Rel = tuple[str, Callable[[Gen], str], str]
_ENTITY_TYPES: dict[str, tuple[Callable[[Gen], str], tuple[_Rel, ...]]] = {
    "person": (Gen.person, (
        ("birthPlace", Gen.city, "was born in {o}"),
        ("occupation", lambda g: g.pick(ROLES), "works as {a}"),
        ("employer", Gen.company, "is employed by {o}"),
        ("birthYear", lambda g: g.num(1940, 2004), "was born in the year {o}"),
        ("almaMater", Gen.school, "studied at {o}"),
        ("spouse", Gen.person, "is married to {o}"))),
    "company": (Gen.company, (
        ("foundingYear", lambda g: g.num(1890, 2022), "was founded in {o}"),
        ("location", Gen.city, "is headquartered in {o}"),
        ("founder", Gen.person, "was started by {o}"),
        ("industry", lambda g: g.pick(INDUSTRIES), "operates in the {o} industry"),
        ("numberOfEmployees", lambda g: g.num(12, 90000), "employs {o} people"),
        ("product", Gen.product, "makes the {o}"))),
    "city": (Gen.city, (
        ("country", lambda g: g.coin() + g.pick(("ia", "land", "stan", "a")), "is located in {o}"),
        ("populationTotal", lambda g: g.num(900, 3_000_000), "has a population of {o}"),
        ("leaderName", Gen.person, "is led by {o}"),
        ("river", lambda g: g.coin() + " River", "lies on the {o}"),
        ("elevation", lambda g: g.num(2, 3400), "sits at an elevation of {o} metres"))),
    "album": (lambda g: "The " + g.coin() + g.pick((" Sessions", " Tapes", "", " Nights")), (
        ("artist", Gen.person, "was recorded by {o}"),
        ("releaseYear", lambda g: g.num(1962, 2024), "was released in {o}"),
        ("genre", lambda g: g.pick(GENRES), "is {a} album"),
        ("recordLabel", Gen.company, "came out on the {o} label"),
        ("runtime", lambda g: g.num(21, 79), "runs for {o} minutes"))),
}
# relations whose object is itself an entity with triples of its own
_LINKS: dict[str, str] = {"birthPlace": "city", "employer": "company", "spouse": "person", "location": "city",
                          "founder": "person", "leaderName": "person", "artist": "person", "recordLabel": "company"}
_TRIPLE_INTROS = (
    "Turn these facts into fluent English text.",
    "Write a sentence that expresses all of the following data triples.",
    "Describe this data in natural language.",
    "Verbalize the knowledge-graph triples below as one or two sentences.",
)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _facts(g: Gen, subject: str, rels: list[_Rel]) -> tuple[list[str], list[str], dict[str, str]]:
    triples, frags, objects = [], [], {}
    for name, make_obj, frag in rels:
        obj = make_obj(g)
        objects[name] = obj
        triples.append(f"({subject} | {name} | {obj})")
        frags.append(frag.format(o=obj, a=article(obj)))
    return triples, frags, objects


def _triples(g: Gen) -> tuple[str, str]:
    kind = g.pick(sorted(_ENTITY_TYPES))
    make_subject, rels = _ENTITY_TYPES[kind]
    subject = make_subject(g)
    links = [r for r in rels if r[0] in _LINKS]
    link = g.pick(links)  # every row also states facts about a second, linked entity
    rest = [r for r in rels if r is not link]
    chosen = [link] + g.rng.sample(rest, g.rng.randint(1, min(3, len(rest))))
    g.rng.shuffle(chosen)
    if chosen[0] is link and g.rng.random() < 0.5:
        chosen = chosen[1:] + chosen[:1]
    triples, frags, objects = _facts(g, subject, chosen)
    second = objects[link[0]]
    other_rels = [r for r in _ENTITY_TYPES[_LINKS[link[0]]][1] if r[0] != "spouse"]
    triples2, frags2, _ = _facts(g, second, g.rng.sample(other_rels, g.rng.randint(1, 2)))
    body = "\n".join(triples + triples2)
    text = f"Task: data-to-text generation.\n{g.pick(_TRIPLE_INTROS)}\nTriples:\n{body}\nText:"
    return text, f"{subject} {_join(frags)}. {second} {_join(frags2)}."


# ---------------------------------------------------------------- public API
_BUILDERS: dict[str, Callable[[Gen], tuple[str, str]]] = {
    "paraphrase": _paraphrase, "triples_to_text": _triples,
    "dialogue_summary": build_dialogue, "headline": build_headline,
}


def _row_rng(seed: int, task: str, split: str, i: int) -> random.Random:
    digest = hashlib.blake2b(f"{seed}|{task}|{split}|{i}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def generate_rows(task: str, split: str, n: int, seed: int = 0) -> list[dict[str, str]]:
    """Return ``n`` deterministic rows of ``task`` for ``split`` ("train" or "test")."""
    if task not in _BUILDERS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(SYNTHETIC_TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    part, build = SPLITS.index(split), _BUILDERS[task]
    rows: list[dict[str, str]] = []
    for i in range(n):
        instruction, response = build(Gen(_row_rng(seed, task, split, i), part))
        rows.append({"id": f"{task}-{split}-{i:05d}", "task": task, "category": TASK_CATEGORIES[task],
                     "instruction": instruction, "response": response})
    return rows
