"""The scripted-assistant domain: question/answer exchanges and conversation plans for dialogue training.

A user asks short things (greetings, arithmetic with small numbers, simple facts, spelling) and the agent
answers in one sentence that a small model can learn exactly. ``plan_conversation`` strings exchanges into a
two-speaker timeline with the phenomena of real full-duplex talk: pauses of varied length before answers,
user back-channels while the agent speaks (the agent goes on), and interruptions ("wait", "stop") after
which the agent falls silent within a few hundred milliseconds and acknowledges. Everything is seeded.

The plan holds texts and timing *intentions* (gaps, where an interruption cuts in); the corpus builder
(:mod:`delaykit.data.dialogues`) synthesizes the turns and resolves the times.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .sentences import number_words

GREETINGS = (
    ("Hello.", "Hello! How can I help you?"),
    ("Hi there.", "Hi! What can I do for you?"),
    ("Good morning.", "Good morning! How can I help?"),
    ("Good evening.", "Good evening! What would you like to know?"),
    ("Hey, are you there?", "Yes, I am here. How can I help?"),
    ("Thank you.", "You are welcome."),
    ("Thanks a lot.", "You are very welcome."),
    ("Goodbye.", "Goodbye! Have a nice day."),
    ("How are you?", "I am fine, thank you. How can I help?"),
)
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Spain": "Madrid", "Italy": "Rome", "Japan": "Tokyo",
    "Portugal": "Lisbon", "Ireland": "Dublin", "Austria": "Vienna", "Greece": "Athens", "Egypt": "Cairo",
    "Kenya": "Nairobi", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw",
    "Canada": "Ottawa", "Peru": "Lima", "Chile": "Santiago", "China": "Beijing", "Russia": "Moscow",
}
COLOURS = {"the sky": "blue", "grass": "green", "snow": "white", "a banana": "yellow", "coal": "black",
           "a tomato": "red", "an orange": "orange", "a lemon": "yellow", "milk": "white", "a carrot": "orange"}
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = ("January February March April May June July August September October November December").split()
COUNTS = (  # (question, count, what is counted)
    ("How many days are there in a week?", 7, "days"), ("How many months are there in a year?", 12, "months"),
    ("How many legs does a spider have?", 8, "legs"), ("How many legs does a dog have?", 4, "legs"),
    ("How many hours are there in a day?", 24, "hours"), ("How many minutes are there in an hour?", 60, "minutes"),
    ("How many sides does a triangle have?", 3, "sides"), ("How many sides does a square have?", 4, "sides"),
    ("How many wheels does a bicycle have?", 2, "wheels"),
)
SPELLING = ("cat dog sun tree book fish milk rain blue star moon door cake bird hand ship road time "
            "home wind").split()
BACKCHANNELS = ("Okay.", "Mm-hmm.", "Right.", "I see.", "Yes.")
INTERRUPTIONS = ("Wait.", "Stop.", "Wait, wait.", "Hold on.", "Sorry, stop.")
ACKNOWLEDGEMENTS = ("Okay.", "Sure.", "Of course.", "Okay, I will stop.")


@dataclass(frozen=True)
class Exchange:
    """One user turn and the agent's answer."""

    question: str
    answer: str
    kind: str  # greeting | arithmetic | fact | spelling


def _arithmetic(rng: random.Random) -> Exchange:
    op = rng.choice(("plus", "minus", "times"))
    if op == "times":
        a, b = rng.randint(0, 10), rng.randint(0, 10)
        result = a * b
    elif op == "minus":
        a = rng.randint(0, 20)
        b = rng.randint(0, a)
        result = a - b
    else:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        result = a + b
    a_w, b_w, r_w = number_words(a), number_words(b), number_words(result)
    question = rng.choice((f"What is {a_w} {op} {b_w}?", f"How much is {a_w} {op} {b_w}?",
                           f"Can you tell me {a_w} {op} {b_w}?"))
    return Exchange(question, f"{a_w.capitalize()} {op} {b_w} is {r_w}.", "arithmetic")


def _fact(rng: random.Random) -> Exchange:
    topic = rng.randrange(4)
    if topic == 0:
        country = rng.choice(sorted(CAPITALS))
        return Exchange(f"What is the capital of {country}?",
                        f"The capital of {country} is {CAPITALS[country]}.", "fact")
    if topic == 1:
        thing = rng.choice(sorted(COLOURS))
        return Exchange(f"What colour is {thing}?", f"{thing[0].upper()}{thing[1:]} is {COLOURS[thing]}.", "fact")
    if topic == 2:
        calendar = DAYS if rng.random() < 0.5 else MONTHS
        i = rng.randrange(len(calendar))
        nxt = calendar[(i + 1) % len(calendar)]
        return Exchange(f"What comes after {calendar[i]}?", f"After {calendar[i]} comes {nxt}.", "fact")
    question, count, noun = rng.choice(COUNTS)
    return Exchange(question, f"There are {number_words(count)} {noun}.", "fact")


def _spelling(rng: random.Random) -> Exchange:
    word = rng.choice(SPELLING)
    letters = ", ".join(letter.upper() for letter in word)
    return Exchange(f"How do you spell {word}?", f"{word.capitalize()} is spelled {letters}.", "spelling")


KINDS = ("greeting", "arithmetic", "fact", "spelling")


def exchange(rng: random.Random, kind_weights: tuple[float, ...] = (1, 3, 3, 1)) -> Exchange:
    """A random question of the domain and its answer; ``kind_weights`` weigh the ``KINDS`` in order."""
    kind = rng.choices(KINDS, weights=kind_weights)[0]
    if kind == "greeting":
        return Exchange(*rng.choice(GREETINGS), kind="greeting")
    if kind == "arithmetic":
        return _arithmetic(rng)
    if kind == "fact":
        return _fact(rng)
    return _spelling(rng)


def question_kind(question: str) -> str:
    """The kind of exchange (greeting | arithmetic | fact | spelling) a question of this domain belongs to,
    read back from its wording; "other" for a question the domain never asks."""
    if any(question == asked for asked, _ in GREETINGS):
        return "greeting"
    if question.startswith("How do you spell "):
        return "spelling"
    if any(f" {op} " in question for op in ("plus", "minus", "times")):
        return "arithmetic"
    if question.startswith(("What is the capital of ", "What colour is ", "What comes after ")) or any(
            question == asked for asked, _, _ in COUNTS):
        return "fact"
    return "other"


@dataclass
class PlannedTurn:
    """A turn to synthesize and where it goes: after the previous turn's end plus ``gap`` seconds, or, for
    a back-channel or interruption, ``cut_in`` of the way into the previous (agent) turn."""

    speaker: str  # "agent" | "user"
    text: str
    gap: float = 0.0
    cut_in: float | None = None  # fraction of the previous turn after which this one starts
    interrupts: bool = False  # the previous (agent) turn is cut short when this one starts


@dataclass
class ConversationPlan:
    turns: list[PlannedTurn] = field(default_factory=list)


@dataclass(frozen=True)
class ConversationConfig:
    exchanges: tuple[int, int] = (2, 4)  # exchanges per conversation
    answer_gap: tuple[float, float] = (0.2, 0.7)  # agent's pause after a question
    question_gap: tuple[float, float] = (0.4, 1.5)  # user's pause after an answer
    kind_weights: tuple[float, ...] = (1, 3, 3, 1)  # greeting, arithmetic, fact, spelling (KINDS)
    backchannel_prob: float = 0.15
    interrupt_prob: float = 0.15
    agent_stop_seconds: float = 0.3  # how long the agent keeps talking over an interruption


def plan_conversation(rng: random.Random, config: ConversationConfig = ConversationConfig()) -> ConversationPlan:
    """A conversation of a few exchanges, with back-channels and interruptions."""
    plan = ConversationPlan()
    for _ in range(rng.randint(*config.exchanges)):
        item = exchange(rng, config.kind_weights)
        plan.turns.append(PlannedTurn("user", item.question, gap=rng.uniform(*config.question_gap)))
        plan.turns.append(PlannedTurn("agent", item.answer, gap=rng.uniform(*config.answer_gap)))
        roll = rng.random()
        if roll < config.interrupt_prob:
            plan.turns.append(PlannedTurn("user", rng.choice(INTERRUPTIONS), cut_in=rng.uniform(0.2, 0.6),
                                          interrupts=True))
            plan.turns.append(PlannedTurn("agent", rng.choice(ACKNOWLEDGEMENTS), gap=rng.uniform(*config.answer_gap)))
        elif roll < config.interrupt_prob + config.backchannel_prob:
            plan.turns.append(PlannedTurn("user", rng.choice(BACKCHANNELS), cut_in=rng.uniform(0.3, 0.7)))
    return plan
