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

SYNTHETIC_TASKS: tuple[str, ...] = ("paraphrase", "triples_to_text", "dialogue_summary", "headline")
TASK_CATEGORIES: dict[str, str] = {"paraphrase": "paraphrase", "triples_to_text": "structure_to_text",
                                   "dialogue_summary": "summarization", "headline": "summarization"}
SPLITS: tuple[str, ...] = ("train", "test")
# Bumped whenever the generated text changes, so cached partitions are rebuilt.
GENERATOR_VERSION = 2

_CV: tuple[str, ...] = tuple(c + v for c in "bdfgklmnprstvz" for v in "aeiou")
_ONSETS: tuple[tuple[str, ...], tuple[str, ...]] = (_CV[0::2], _CV[1::2])  # train / test halves
_CODAS = ("", "", "", "n", "r", "s", "l", "x", "th")
_FIRST = ("Anna", "Ben", "Carla", "David", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira",
          "Liam", "Maya", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera",
          "Wes", "Xenia", "Yusuf", "Zoe", "Amir", "Bea", "Chen", "Dana", "Emil", "Fay", "Gil", "Hana",
          "Ivo", "Jade", "Kofi", "Lena", "Marco", "Nora", "Otto", "Priya", "Ravi", "Sofia")
_FIRST_BY_PART = (_FIRST[0::2], _FIRST[1::2])
_CITY_END = ("", "", "ton", "ville", "burg", "port", "field", " Falls")
_CO_END = ("Labs", "Group", "Systems", "Foods", "Motors", "Bank", "Airways", "Energy", "Media", "Pharma")
_ROLES = ("data analyst", "nurse", "pilot", "software engineer", "chef", "teacher", "lawyer",
          "product manager", "designer", "mechanic", "journalist", "pharmacist")
_SKILLS = ("Spanish", "the piano", "calculus", "Python", "oil painting", "chess", "welding",
           "public speaking", "photography", "Japanese", "accounting", "rock climbing")
_GADGETS = ("laptop", "phone", "smartwatch", "e-bike", "blender", "camera", "headset", "drone", "tablet")
_INDUSTRIES = ("shipping", "software", "mining", "insurance", "biotech", "retail", "solar", "textile")
_GENRES = ("jazz", "folk", "synth-pop", "hip hop", "ambient", "punk", "soul")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TIMES = ("9 am", "10:30", "noon", "1 pm", "3 pm", "4:30", "6 pm", "7 pm", "8:30")


class _Gen:
    """Slot sampler bound to one row's RNG and one split's half of the name space."""

    def __init__(self, rng: random.Random, part: int) -> None:
        self.rng, self.part = rng, part

    def pick(self, seq: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(seq)

    def num(self, lo: int, hi: int) -> str:
        return str(self.rng.randint(lo, hi))

    def coin(self) -> str:
        rest = "".join(self.pick(_CV) for _ in range(self.rng.randint(1, 2)))
        return (self.pick(_ONSETS[self.part]) + rest + self.pick(_CODAS)).capitalize()

    def first(self) -> str:
        return self.pick(_FIRST_BY_PART[self.part])

    def person(self) -> str:
        return f"{self.first()} {self.coin()}"

    def city(self) -> str:
        return self.coin() + self.pick(_CITY_END)

    def company(self) -> str:
        return f"{self.coin()} {self.pick(_CO_END)}"

    def school(self) -> str:
        return f"{self.coin()} {self.pick(('Academy', 'Institute', 'College', 'University'))}"

    def product(self) -> str:
        return f"{self.coin()} {self.num(2, 9)} {self.pick(_GADGETS)}"


def _article(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


# ---------------------------------------------------------------- paraphrase (QQP-like)
_SLOTS: dict[str, Callable[[_Gen], str]] = {
    "city": _Gen.city, "city2": _Gen.city, "company": _Gen.company, "person": _Gen.person,
    "school": _Gen.school, "product": _Gen.product,
    "role": lambda g: g.pick(_ROLES), "skill": lambda g: g.pick(_SKILLS),
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


def _fill_slots(g: _Gen, text: str, slots: dict[str, str] | None = None) -> dict[str, str]:
    slots = {} if slots is None else slots
    for _, name, _, _ in string.Formatter().parse(text):
        if name and name not in slots:
            value = _SLOTS[name](g)
            slots[name] = _article(value) if name == "role" else value
    return slots


def _paraphrase(g: _Gen) -> tuple[str, str]:
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
_Rel = tuple[str, Callable[[_Gen], str], str]
_ENTITY_TYPES: dict[str, tuple[Callable[[_Gen], str], tuple[_Rel, ...]]] = {
    "person": (_Gen.person, (
        ("birthPlace", _Gen.city, "was born in {o}"),
        ("occupation", lambda g: g.pick(_ROLES), "works as {a}"),
        ("employer", _Gen.company, "is employed by {o}"),
        ("birthYear", lambda g: g.num(1940, 2004), "was born in the year {o}"),
        ("almaMater", _Gen.school, "studied at {o}"),
        ("spouse", _Gen.person, "is married to {o}"))),
    "company": (_Gen.company, (
        ("foundingYear", lambda g: g.num(1890, 2022), "was founded in {o}"),
        ("location", _Gen.city, "is headquartered in {o}"),
        ("founder", _Gen.person, "was started by {o}"),
        ("industry", lambda g: g.pick(_INDUSTRIES), "operates in the {o} industry"),
        ("numberOfEmployees", lambda g: g.num(12, 90000), "employs {o} people"),
        ("product", _Gen.product, "makes the {o}"))),
    "city": (_Gen.city, (
        ("country", lambda g: g.coin() + g.pick(("ia", "land", "stan", "a")), "is located in {o}"),
        ("populationTotal", lambda g: g.num(900, 3_000_000), "has a population of {o}"),
        ("leaderName", _Gen.person, "is led by {o}"),
        ("river", lambda g: g.coin() + " River", "lies on the {o}"),
        ("elevation", lambda g: g.num(2, 3400), "sits at an elevation of {o} metres"))),
    "album": (lambda g: "The " + g.coin() + g.pick((" Sessions", " Tapes", "", " Nights")), (
        ("artist", _Gen.person, "was recorded by {o}"),
        ("releaseYear", lambda g: g.num(1962, 2024), "was released in {o}"),
        ("genre", lambda g: g.pick(_GENRES), "is {a} album"),
        ("recordLabel", _Gen.company, "came out on the {o} label"),
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


def _facts(g: _Gen, subject: str, rels: list[_Rel]) -> tuple[list[str], list[str], dict[str, str]]:
    triples, frags, objects = [], [], {}
    for name, make_obj, frag in rels:
        obj = make_obj(g)
        objects[name] = obj
        triples.append(f"({subject} | {name} | {obj})")
        frags.append(frag.format(o=obj, a=_article(obj)))
    return triples, frags, objects


def _triples(g: _Gen) -> tuple[str, str]:
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


# ---------------------------------------------------------------- dialogue_summary (SAMSum-like)
_Turns = list[tuple[int, str]]


def _meet(g: _Gen, n: list[str]) -> tuple[_Turns, str]:
    act, day = g.pick(("coffee", "lunch", "dinner", "a drink")), g.pick(_DAYS)
    place = f"{g.coin()} {g.pick(('Cafe', 'Bistro', 'Park', 'Bar', 'Diner'))}"
    t, t2 = g.rng.sample(_TIMES, 2)
    ask = g.pick((f"Want to grab {act} at {place} on {day}?", f"Free on {day}? Thinking {act} at {place}."))
    turns: _Turns = [(0, ask), (1, "Sure! What time?"), (0, f"How about {t}?")]
    if g.rng.random() < 0.5:
        turns += [(1, f"Can we make it {t2} instead?"), (0, f"{t2} works for me.")]
        t = t2
    else:
        turns.append((1, f"Perfect, see you at {t}."))
    who, extra = f"{n[0]} and {n[1]}", ""
    if len(n) == 3 and g.rng.random() < 0.5:
        turns.append((2, "Can I join you?"))
        who = f"{n[0]}, {n[1]} and {n[2]}"
    elif len(n) == 3:
        turns.append((2, f"I can't on {day}, sorry."))
        extra = f" {n[2]} can't come."
    return turns, f"{who} will have {act} at {place} on {day} at {t}.{extra}"


def _borrow(g: _Gen, n: list[str]) -> tuple[_Turns, str]:
    obj = g.pick(("tent", "drill", "camera", "projector", "ladder", "guitar", "suitcase", "bike"))
    why = g.pick(("the weekend", f"my trip to {g.city()}", "the move", f"{g.first()}'s party"))
    turns: _Turns = [(0, f"Could I borrow your {obj} for {why}?")]
    if g.rng.random() < 0.6:
        day = g.pick(_DAYS)
        turns += [(1, f"Sure, I'll bring it on {day}."), (0, "You're a lifesaver!")]
        return turns, f"{n[1]} will lend {n[0]} the {obj} on {day} for {why.replace('my ', 'the ')}."
    turns += [(1, f"Sorry, I lent it to my cousin in {g.city()}."), (0, "Oh well, I'll ask around.")]
    return turns, f"{n[0]} wants to borrow {n[1]}'s {obj}, but {n[1]} lent it to a cousin."


def _late(g: _Gen, n: list[str]) -> tuple[_Turns, str]:
    mins = g.pick(("10", "15", "20", "25", "30", "40"))
    why = g.pick(("the train is delayed", f"there is traffic on {g.coin()} Road", "my meeting ran over",
                  "I missed the bus"))
    food = g.pick(("the pasta", "a salad", "the soup", "a burger", "the curry"))
    turns: _Turns = [(0, f"Running about {mins} minutes late, {why}."),
                     (1, "No worries. Should I order for you?"), (0, f"Yes please, {food}!")]
    reason = why.replace("my meeting", f"{n[0]}'s meeting").replace("I missed", f"{n[0]} missed")
    return turns, f"{n[0]} is {mins} minutes late because {reason}. {n[1]} will order {food} for {n[0]}."


def _buy(g: _Gen, n: list[str]) -> tuple[_Turns, str]:
    k, items = g.num(2, 12), g.pick(("eggs", "lemons", "batteries", "bagels", "apples", "candles"))
    store = f"{g.coin()} {g.pick(('Market', 'Grocery', 'Mart'))}"
    turns: _Turns = [(0, f"Are you passing by {store}?"), (1, "Yes, in an hour. Need anything?"),
                     (0, f"Could you get me {k} {items}?"), (1, "Will do.")]
    return turns, f"{n[1]} will buy {k} {items} at {store} for {n[0]}."


def _deadline(g: _Gen, n: list[str]) -> tuple[_Turns, str]:
    doc = f"{g.coin()} {g.pick(('report', 'budget', 'proposal', 'slide deck'))}"
    day, t = g.pick(_DAYS), g.pick(_TIMES)
    turns: _Turns = [(0, f"Reminder: the {doc} is due on {day}."),
                     (1, f"I know, I'll send you my draft by {t} tomorrow."), (0, "Great, thanks.")]
    return turns, f"{n[0]} reminds {n[1]} that the {doc} is due on {day}; {n[1]} will send a draft by {t}."


_SCENES = (_meet, _borrow, _late, _buy, _deadline)
_DIALOGUE_INTROS = (
    "Summarize this conversation in one or two sentences.",
    "What happened in the chat below? Write a brief summary.",
    "Read the dialogue between friends and write a short summary of it.",
    "Briefly sum up who agreed to what in the following chat.",
)


def _dialogue(g: _Gen) -> tuple[str, str]:
    names = g.rng.sample(_FIRST_BY_PART[g.part], g.rng.choice((2, 2, 3)))
    first, second = g.rng.sample(_SCENES, 2)  # two topics per chat
    turns, summary = first(g, names)
    order = list(range(len(names)))
    if g.rng.random() < 0.5:  # either friend may open the second topic
        order[0], order[1] = 1, 0
    more, summary2 = second(g, [names[i] for i in order])
    turns += [(order[s], text) for s, text in more]
    summary = f"{summary} {summary2}"
    if g.rng.random() < 0.3:  # unrelated small talk the summary must ignore
        turns = [(0, g.pick((f"How was {g.coin()} Fest on the weekend?", "Did you watch the game yesterday?"))),
                 (1, f"{g.pick(('Loved it', 'Not bad', 'Too crowded'))}, I went with {g.first()}. Anyway.")] + turns
    if g.rng.random() < 0.5:
        turns = [(0, g.pick((f"Hey {names[1]}!", "hi", "Hello!"))), (1, g.pick(("Hey, what's up?", "Hi :)")))] + turns
    if len(names) == 3 and g.rng.random() < 0.5:
        turns.append((2, g.pick(("haha", "Good luck with that!", "Say hi from me!"))))
    while g.rng.random() < 0.3:
        speaker = 1 - turns[-1][0] if turns[-1][0] < 2 else 0
        turns.append((speaker, g.pick(("Cool.", "See you!", "np", "Thanks!", "Great."))))
    chat = "\n".join(f"{names[s]}: {text}" for s, text in turns)
    return f"Task: dialogue summarization.\n{g.pick(_DIALOGUE_INTROS)}\nChat:\n{chat}\nSummary:", summary


# ---------------------------------------------------------------- headline (Gigaword-like)
def _event(g: _Gen, kind: int, day: str, city: str) -> tuple[str, str, str]:
    """(lead sentence, headline, a shorter side-note sentence) of one news event of `kind`."""
    co, co2, pct = g.company(), g.company(), g.num(2, 61)
    if kind == 0:
        amt, ind = g.num(15, 950), g.pick(_INDUSTRIES)
        lead = g.pick((f"{co}, the {city}-based {ind} company, said on {day} it had agreed to buy rival {co2} "
                       f"for {amt} million dollars.",
                       f"{ind.capitalize()} firm {co} agreed on {day} to acquire {co2} in a deal worth {amt} "
                       f"million dollars, the {city}-based company said."))
        return lead, f"{co} to buy {co2} for {amt} mln dlrs", f"{co} also agreed to buy {co2} for {amt} million dollars."
    if kind == 1:
        up, q = g.rng.random() < 0.5, g.pick(("first-quarter", "second-quarter", "third-quarter", "annual"))
        cause = g.pick(("strong demand in Asia", "higher fuel costs", "a weaker currency", "cost cuts"))
        move = "rose" if up else "fell"
        lead = f"{co} said on {day} its {q} net profit {move} {pct} percent from a year earlier, citing {cause}."
        return lead, f"{co} {q} profit {'up' if up else 'down'} {pct} pct", f"{co} said its profit {move} {pct} percent."
    if kind == 2:
        who, rival = g.person(), g.person()
        lead = (f"{who} was elected mayor of {city} on {day}, defeating incumbent {rival} with "
                f"{g.num(51, 78)} percent of the vote.")
        return lead, f"{who.split()[-1]} wins {city} mayoral race", f"{who} was elected mayor of {city} on {day}."
    if kind == 3:
        ev, short = g.rng.choice((("A strong earthquake", "quake"), ("Flash floods", "floods"),
                                  ("A tropical storm", "storm")))
        dead = g.num(3, 240)
        lead = (f"{ev} struck the {city} region on {day}, killing at least {dead} people and "
                f"destroying {g.num(20, 4000)} homes, officials said.")
        return lead, f"{short} kills {dead} in {city}", f"{ev} hit the {city} region, killing {dead} people."
    if kind == 4:
        cup, s1, s2 = g.coin(), g.num(2, 6), g.num(0, 1)
        lead = (f"{city} United beat {g.city()} Rovers {s1}-{s2} on {day} to win the {cup} Cup "
                f"for the first time in {g.num(3, 60)} years.")
        return lead, f"{city} United win {cup} Cup", f"{city} United won the {cup} Cup on {day}."
    lead = (f"Thousands of workers at {co}'s {city} plant walked off the job on {day}, demanding a "
            f"{pct} percent pay rise, a union spokesman said.")
    return lead, f"{co} workers strike in {city} over pay", f"Workers at {co}'s {city} plant went on strike on {day}."


_NEWS_INTROS = (
    "Write a short headline for this news article.",
    "Give this news story a concise title.",
    "Generate a headline for the news report below.",
    "What would be a good headline for the following news article?",
)


def _news(g: _Gen) -> tuple[str, str]:
    day, city = g.pick(_DAYS), g.city()
    kinds = g.rng.sample(range(6), 3)  # the headline event plus other events in the same report
    lead, head, _ = _event(g, kinds[0], day, city)
    asides = [_event(g, k, day, city)[2] for k in kinds[1:1 + g.rng.randint(1, 2)]]
    link = g.pick(("In other news,", "Separately,", "Meanwhile,", "Earlier,"))
    first = asides[0]
    if first.split()[0] in ("A", "Flash", "Workers"):
        first = first[0].lower() + first[1:]
    side = " ".join([f"{link} {first}"] + asides[1:])
    extras = (f"{g.person()}, a spokesperson, declined to comment further.",
              f"Analysts at {g.company()} said the news had been widely expected.",
              "Further details were not immediately available.",
              f"Local media in {city} reported the news first, citing people familiar with the matter.")
    story = " ".join([lead] + g.rng.sample(extras, g.rng.randint(0, 2)) + [side])
    text = (f"Task: headline generation.\n{g.pick(_NEWS_INTROS)}\n"
            f"Article: {city.upper()}, {day} (Newswire) - {story}\nHeadline:")
    return text, head


# ---------------------------------------------------------------- public API
_BUILDERS: dict[str, Callable[[_Gen], tuple[str, str]]] = {
    "paraphrase": _paraphrase, "triples_to_text": _triples, "dialogue_summary": _dialogue, "headline": _news,
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
        instruction, response = build(_Gen(_row_rng(seed, task, split, i), part))
        rows.append({"id": f"{task}-{split}-{i:05d}", "task": task, "category": TASK_CATEGORIES[task],
                     "instruction": instruction, "response": response})
    return rows
