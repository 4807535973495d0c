"""Transcript writers (delaykit.formats): segment grouping rules and whisper-style layouts, byte for byte
against small golden files in tests/golden/."""

from pathlib import Path

import pytest

from delaykit.formats import FORMATS, SegmentRule, format_timestamp, group_segments, render, writer
from delaykit.modes.words import Word
from delaykit.text_stream import TimedWord

GOLDEN = Path(__file__).parent / "golden"

# Exercises every rule: a sentence end ("there."), a pause >= 0.8 s (before "after"), twelve words in a row
# (the counting run), a closing quote after a "?", a cue arrow in the text, and times past one hour.
WORDS = [
    Word("Hello", 0.0, 0.4), Word("there.", 0.4, 0.96),
    Word("How", 1.04, 1.2), Word("are", 1.2, 1.36), Word("you?\"", 1.36, 1.6),
    Word("after", 2.4, 2.72), Word("a", 2.72, 2.8), Word("pause", 2.8, 3.2),
    *[Word(word, 3.2 + 0.16 * i, 3.36 + 0.16 * i) for i, word in enumerate(
        "one two three four five six seven eight nine ten eleven twelve thirteen".split())],
    Word("a-->b", 5.6, 5.92), Word("café", 5.92, 6.24),
    Word("late", 3601.5, 3602.25),
]


@pytest.mark.parametrize("name", FORMATS)
def test_formats_match_golden_files(name):
    expected = (GOLDEN / f"transcript.{name}").read_bytes()
    assert render(name, WORDS).encode("utf-8") == expected


def test_segments_follow_the_documented_rule():
    segments = group_segments(WORDS)
    assert [segment.text for segment in segments] == [
        "Hello there.", 'How are you?"', "after a pause one two three four five six seven eight nine",
        "ten eleven twelve thirteen a-->b café", "late"]
    assert (segments[0].start, segments[0].end) == (0.0, 0.96)
    assert [len(segment.words) for segment in group_segments(WORDS, SegmentRule(max_words=100))] == [2, 3, 18, 1]
    # a pause of exactly 0.8 s (on the 80 ms frame grid) splits, 0.72 s does not
    paused = [Word("a", 0.0, 0.08 * 2), Word("b", 0.08 * 12, 0.08 * 13), Word("c", 0.08 * 22, 0.08 * 23)]
    assert [segment.text for segment in group_segments(paused)] == ["a", "b c"]


def test_any_timed_word_works_and_empty_words_are_skipped():
    timed = [TimedWord("hi", 0.0, 0.5, "main"), TimedWord(" ", 0.5, 0.6), TimedWord("you", 0.6, 1.0)]
    assert render("txt", timed) == "hi you\n"
    assert render("srt", []) == "" and render("vtt", []) == "WEBVTT\n\n"
    assert render("json", []) == '{"text": "", "segments": [], "language": "en"}\n'


def test_timestamps_and_unknown_formats():
    assert format_timestamp(3723.4567, always_include_hours=True, decimal_marker=",") == "01:02:03,457"
    assert format_timestamp(59.9996) == "01:00.000"
    with pytest.raises(ValueError, match="known: txt, srt, vtt, tsv, json"):
        writer("docx")
