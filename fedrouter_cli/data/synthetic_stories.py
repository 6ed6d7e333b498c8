"""Story-like task families of the synthetic dataset: dialogue_summary (SAMSum-like) and
headline (Gigaword-like). Each builder maps one row's ``Gen`` to (instruction, response)."""

from __future__ import annotations

from fedrouter_cli.data.synthetic_vocab import (
    DAYS,
    FIRST_BY_PART,
    INDUSTRIES,
    TIMES,
    Gen,
)

# ---------------------------------------------------------------- dialogue_summary (SAMSum-like)
_Turns = list[tuple[int, str]]


def _meet(g: Gen, n: list[str]) -> tuple[_Turns, str]:
    act, day = g.pick(("coffee", "lunch", "dinner", "a drink")), g.pick(DAYS)
    place = f"{g.coin()} {g.pick(('Cafe', 'Bistro', 'Park', 'Bar', 'Diner'))}"
    t, t2 = g.rng.sample(TIMES, 2)
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


def _borrow(g: Gen, n: list[str]) -> tuple[_Turns, str]:
    obj = g.pick(("tent", "drill", "camera", "projector", "ladder", "guitar", "suitcase", "bike"))
    why = g.pick(("the weekend", f"my trip to {g.city()}", "the move", f"{g.first()}'s party"))
    turns: _Turns = [(0, f"Could I borrow your {obj} for {why}?")]
    if g.rng.random() < 0.6:
        day = g.pick(DAYS)
        turns += [(1, f"Sure, I'll bring it on {day}."), (0, "You're a lifesaver!")]
        return turns, f"{n[1]} will lend {n[0]} the {obj} on {day} for {why.replace('my ', 'the ')}."
    turns += [(1, f"Sorry, I lent it to my cousin in {g.city()}."), (0, "Oh well, I'll ask around.")]
    return turns, f"{n[0]} wants to borrow {n[1]}'s {obj}, but {n[1]} lent it to a cousin."


def _late(g: Gen, n: list[str]) -> tuple[_Turns, str]:
    mins = g.pick(("10", "15", "20", "25", "30", "40"))
    why = g.pick(("the train is delayed", f"there is traffic on {g.coin()} Road", "my meeting ran over",
                  "I missed the bus"))
    food = g.pick(("the pasta", "a salad", "the soup", "a burger", "the curry"))
    turns: _Turns = [(0, f"Running about {mins} minutes late, {why}."),
                     (1, "No worries. Should I order for you?"), (0, f"Yes please, {food}!")]
    reason = why.replace("my meeting", f"{n[0]}'s meeting").replace("I missed", f"{n[0]} missed")
    return turns, f"{n[0]} is {mins} minutes late because {reason}. {n[1]} will order {food} for {n[0]}."


def _buy(g: Gen, n: list[str]) -> tuple[_Turns, str]:
    k, items = g.num(2, 12), g.pick(("eggs", "lemons", "batteries", "bagels", "apples", "candles"))
    store = f"{g.coin()} {g.pick(('Market', 'Grocery', 'Mart'))}"
    turns: _Turns = [(0, f"Are you passing by {store}?"), (1, "Yes, in an hour. Need anything?"),
                     (0, f"Could you get me {k} {items}?"), (1, "Will do.")]
    return turns, f"{n[1]} will buy {k} {items} at {store} for {n[0]}."


def _deadline(g: Gen, n: list[str]) -> tuple[_Turns, str]:
    doc = f"{g.coin()} {g.pick(('report', 'budget', 'proposal', 'slide deck'))}"
    day, t = g.pick(DAYS), g.pick(TIMES)
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


def build_dialogue(g: Gen) -> tuple[str, str]:
    names = g.rng.sample(FIRST_BY_PART[g.part], g.rng.choice((2, 2, 3)))
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
def _event(g: Gen, kind: int, day: str, city: str) -> tuple[str, str, str]:
    """(lead sentence, headline, a shorter side-note sentence) of one news event of `kind`."""
    co, co2, pct = g.company(), g.company(), g.num(2, 61)
    if kind == 0:
        amt, ind = g.num(15, 950), g.pick(INDUSTRIES)
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


def build_headline(g: Gen) -> tuple[str, str]:
    day, city = g.pick(DAYS), g.city()
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
