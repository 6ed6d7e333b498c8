"""Shared vocabularies and the per-row slot sampler for the synthetic task generators.

Names (made-up words and first names) are partitioned into train / test halves, so rows of
different splits can never share the same text. Changing anything here changes the generated
output: bump ``synthetic.GENERATOR_VERSION`` if you do.
"""

from __future__ import annotations

import random

CV: tuple[str, ...] = tuple(c + v for c in "bdfgklmnprstvz" for v in "aeiou")
ONSETS: tuple[tuple[str, ...], tuple[str, ...]] = (CV[0::2], CV[1::2])  # train / test halves
CODAS = ("", "", "", "n", "r", "s", "l", "x", "th")
FIRST = ("Anna", "Ben", "Carla", "David", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira",
         "Liam", "Maya", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera",
         "Wes", "Xenia", "Yusuf", "Zoe", "Amir", "Bea", "Chen", "Dana", "Emil", "Fay", "Gil", "Hana",
         "Ivo", "Jade", "Kofi", "Lena", "Marco", "Nora", "Otto", "Priya", "Ravi", "Sofia")
FIRST_BY_PART = (FIRST[0::2], FIRST[1::2])
CITY_END = ("", "", "ton", "ville", "burg", "port", "field", " Falls")
CO_END = ("Labs", "Group", "Systems", "Foods", "Motors", "Bank", "Airways", "Energy", "Media", "Pharma")
ROLES = ("data analyst", "nurse", "pilot", "software engineer", "chef", "teacher", "lawyer",
         "product manager", "designer", "mechanic", "journalist", "pharmacist")
SKILLS = ("Spanish", "the piano", "calculus", "Python", "oil painting", "chess", "welding",
          "public speaking", "photography", "Japanese", "accounting", "rock climbing")
GADGETS = ("laptop", "phone", "smartwatch", "e-bike", "blender", "camera", "headset", "drone", "tablet")
INDUSTRIES = ("shipping", "software", "mining", "insurance", "biotech", "retail", "solar", "textile")
GENRES = ("jazz", "folk", "synth-pop", "hip hop", "ambient", "punk", "soul")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TIMES = ("9 am", "10:30", "noon", "1 pm", "3 pm", "4:30", "6 pm", "7 pm", "8:30")


class Gen:
    """Slot sampler bound to one row's RNG and one split's half of the name space."""

    def __init__(self, rng: random.Random, part: int) -> None:
        self.rng, self.part = rng, part

    def pick(self, seq: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(seq)

    def num(self, lo: int, hi: int) -> str:
        return str(self.rng.randint(lo, hi))

    def coin(self) -> str:
        rest = "".join(self.pick(CV) for _ in range(self.rng.randint(1, 2)))
        return (self.pick(ONSETS[self.part]) + rest + self.pick(CODAS)).capitalize()

    def first(self) -> str:
        return self.pick(FIRST_BY_PART[self.part])

    def person(self) -> str:
        return f"{self.first()} {self.coin()}"

    def city(self) -> str:
        return self.coin() + self.pick(CITY_END)

    def company(self) -> str:
        return f"{self.coin()} {self.pick(CO_END)}"

    def school(self) -> str:
        return f"{self.coin()} {self.pick(('Academy', 'Institute', 'College', 'University'))}"

    def product(self) -> str:
        return f"{self.coin()} {self.num(2, 9)} {self.pick(GADGETS)}"


def article(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word
