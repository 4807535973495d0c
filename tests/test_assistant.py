"""The scripted-assistant domain: answers are right, plans are seeded and hold the full-duplex phenomena."""

import random
import re

from delaykit.data.assistant import ConversationConfig, exchange, plan_conversation, question_kind
from delaykit.data.sentences import number_words

WORD_NUMBERS = {number_words(n): n for n in range(401)}


def test_arithmetic_answers_are_correct():
    rng = random.Random(0)
    checked = 0
    for _ in range(400):
        item = exchange(rng)
        if item.kind != "arithmetic":
            continue
        match = re.fullmatch(r"(.+) (plus|minus|times) (.+) is (.+)\.", item.answer)
        assert match, item.answer
        a, op, b, result = match.groups()
        a, b, result = WORD_NUMBERS[a.lower()], WORD_NUMBERS[b], WORD_NUMBERS[result]
        assert result == {"plus": a + b, "minus": a - b, "times": a * b}[op]
        assert f"{number_words(a)} {op} {number_words(b)}" in item.question
        checked += 1
    assert checked > 100


def test_plans_are_seeded_and_hold_interruptions_and_backchannels():
    assert plan_conversation(random.Random(5)) == plan_conversation(random.Random(5))
    config = ConversationConfig(interrupt_prob=0.5, backchannel_prob=0.5)
    plans = [plan_conversation(random.Random(seed), config) for seed in range(30)]
    turns = [turn for plan in plans for turn in plan.turns]
    interruptions = [t for t in turns if t.interrupts]
    backchannels = [t for t in turns if t.cut_in is not None and not t.interrupts]
    assert interruptions and backchannels
    for plan in plans:
        assert plan.turns[0].speaker == "user"
        for previous, turn in zip(plan.turns, plan.turns[1:]):
            if turn.cut_in is not None:  # cuts in on the agent, never on the user
                assert previous.speaker == "agent" and turn.speaker == "user"


def test_question_kind_reads_the_kind_back_from_the_question():
    rng = random.Random(1)
    items = [exchange(rng) for _ in range(600)]
    assert {item.kind for item in items} == {"greeting", "arithmetic", "fact", "spelling"}
    for item in items:
        assert question_kind(item.question) == item.kind, item.question
    assert question_kind("Wait.") == "other"


def test_kind_weights_choose_what_is_asked():
    only_arithmetic = ConversationConfig(kind_weights=(0, 1, 0, 0))
    plans = [plan_conversation(random.Random(seed), only_arithmetic) for seed in range(20)]
    questions = [t.text for plan in plans for t in plan.turns if t.speaker == "user" and t.cut_in is None]
    assert questions and {question_kind(q) for q in questions} == {"arithmetic"}
    # weights written as floats draw the same conversations as the default
    assert plan_conversation(random.Random(3)) == plan_conversation(random.Random(3), ConversationConfig(
        kind_weights=(1.0, 3.0, 3.0, 1.0)))
