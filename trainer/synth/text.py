"""What the synthetic speakers say: English sentences from a small grammar, and listener backchannels.

Templates for statements, questions and exclamations are filled from word lists, which gives hundreds of
thousands of distinct sentences; the sentence kind travels with the text because the faces react to it
(brows up at the end of a question, a smile on an exclamation).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class SentenceKind(enum.Enum):
    STATEMENT = "statement"
    QUESTION = "question"
    EXCLAMATION = "exclamation"
    LAUGH = "laugh"  # not a sentence: the speaker laughs (after an exclamation, sometimes after a statement)


@dataclass(frozen=True)
class Sentence:
    text: str
    kind: SentenceKind


BACKCHANNELS: tuple[str, ...] = ("mm-hm", "yeah", "right", "uh-huh", "okay", "I see", "mm", "sure", "oh really")
LAUGHS: tuple[str, ...] = ("ha ha ha", "ha ha", "hah ha ha ha", "he he he")

SUBJECTS = (
    "my sister", "the teacher", "our neighbour", "my brother", "the old man", "a friend of mine", "the manager",
    "my cousin", "the doctor", "everyone", "nobody", "the children", "she", "he", "they", "we", "my uncle",
    "the new student", "the driver", "your colleague",
)  # fmt: skip
# (base, past, past participle)
VERBS = (
    ("see", "saw", "seen"), ("find", "found", "found"), ("build", "built", "built"), ("paint", "painted", "painted"),
    ("fix", "fixed", "fixed"), ("buy", "bought", "bought"), ("sell", "sold", "sold"), ("visit", "visited", "visited"),
    ("cook", "cooked", "cooked"), ("open", "opened", "opened"), ("lose", "lost", "lost"), ("read", "read", "read"),
    ("write", "wrote", "written"), ("carry", "carried", "carried"), ("clean", "cleaned", "cleaned"),
    ("borrow", "borrowed", "borrowed"), ("move", "moved", "moved"), ("watch", "watched", "watched"),
    ("try", "tried", "tried"), ("bring", "brought", "brought"), ("forget", "forgot", "forgotten"),
    ("describe", "described", "described"), ("photograph", "photographed", "photographed"),
)  # fmt: skip
OBJECTS = (
    "the old bridge", "a small boat", "the new kitchen", "a red bicycle", "the garden", "that strange letter",
    "the last train", "a huge cake", "the broken window", "our tickets", "the map", "a funny movie", "the piano",
    "some fresh bread", "the blue car", "a long book", "the whole report", "an old photograph", "the yellow door",
    "a tiny puppy", "the football match", "the wedding dress", "a secret recipe", "the tall tower",
)  # fmt: skip
PLACES = (
    "near the station", "in the park", "at the market", "behind the school", "on the hill", "by the river",
    "downtown", "at home", "in the city centre", "at the office", "on the beach", "at the airport", "",
)  # fmt: skip
TIMES = (
    "yesterday", "last week", "this morning", "on Sunday", "two days ago", "last summer", "after lunch",
    "tonight", "in the evening", "every day", "",
)  # fmt: skip
ADJECTIVES = (
    "quiet", "busy", "expensive", "cheap", "warm", "cold", "beautiful", "boring", "strange", "friendly",
    "crowded", "small", "enormous", "modern", "ancient", "noisy",
)  # fmt: skip
STRONG_ADJECTIVES = ("amazing", "wonderful", "terrible", "fantastic", "brilliant", "incredible", "lovely", "awful")
INTENSIFIERS = ("really", "so", "absolutely", "totally", "quite", "very", "truly")
OPINIONS = ("I think", "I guess", "honestly,", "to be fair,", "you know,", "apparently", "I heard that", "well,")

STATEMENTS = (
    "{subj} {past} {obj} {place} {time}.",
    "{opinion} {subj} {past} {obj} {time}.",
    "{time} {subj} {past} {obj} {place}.",
    "{obj} was {intens} {adj} {place}.",
    "we should {verb} {obj} {time}.",
    "{subj} {past} {obj}, but {subj2} {past2} {obj2}.",
    "{opinion} {obj} looked {adj} {place}.",
    "{subj} wanted to {verb} {obj} {place}, so {subj2} {past2} {obj2}.",
)
QUESTIONS = (
    "did you {verb} {obj} {time}?",
    "have you ever {pp} {obj} {place}?",
    "what do you think about {obj}?",
    "why would {subj} {verb} {obj} {place}?",
    "do you know where {subj} {past} {obj}?",
    "was {obj} {adj} {place}?",
    "can you believe {subj} {past} {obj}?",
    "who {past} {obj} {time}?",
)
EXCLAMATIONS = (
    "that was {intens} {strong}!",
    "what a {strong} day!",
    "I can't believe {subj} {past} {obj}!",
    "oh, {obj} was {intens} {strong}!",
    "{obj} looked {strong}!",
    "wow, {subj} {past} {obj} {time}!",
)
KIND_WEIGHTS = {SentenceKind.STATEMENT: 0.6, SentenceKind.QUESTION: 0.25, SentenceKind.EXCLAMATION: 0.15}
TEMPLATES = {
    SentenceKind.STATEMENT: STATEMENTS,
    SentenceKind.QUESTION: QUESTIONS,
    SentenceKind.EXCLAMATION: EXCLAMATIONS,
}


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def make_sentence(rng: np.random.Generator) -> Sentence:
    """One random sentence; about 60% statements, 25% questions and 15% exclamations."""
    kinds = list(KIND_WEIGHTS)
    kind = kinds[int(rng.choice(len(kinds), p=list(KIND_WEIGHTS.values())))]
    verb, verb2 = VERBS[int(rng.integers(len(VERBS)))], VERBS[int(rng.integers(len(VERBS)))]
    words = {
        "subj": _pick(rng, SUBJECTS), "subj2": _pick(rng, SUBJECTS), "obj": _pick(rng, OBJECTS),
        "obj2": _pick(rng, OBJECTS), "place": _pick(rng, PLACES), "time": _pick(rng, TIMES),
        "adj": _pick(rng, ADJECTIVES), "strong": _pick(rng, STRONG_ADJECTIVES), "intens": _pick(rng, INTENSIFIERS),
        "opinion": _pick(rng, OPINIONS), "verb": verb[0], "past": verb[1], "pp": verb[2], "past2": verb2[1],
    }  # fmt: skip
    text = " ".join(_pick(rng, TEMPLATES[kind]).format(**words).split())  # drop the gaps of empty slots
    text = text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
    return Sentence(text=text[0].upper() + text[1:], kind=kind)
