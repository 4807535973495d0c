"""Golden cases of the aligned text stream (PAD = 3, EPAD = 0, one token per 80 ms frame)."""

from delaykit.text_stream import TextStreamConfig, TimedWord, aligned_text_stream, num_frames

VOCAB = {"hello": [10, 11], "world": [12], "again": [13, 14, 15], "yes": [16]}
P, E = 3, 0


def tokenize(word: str) -> list[int]:
    return VOCAB[word]


HELLO_WORLD = [TimedWord("hello", 0.0, 0.4), TimedWord("world", 0.5, 0.9)]


def test_words_start_at_their_frame_and_padding_before_a_word_is_epad():
    # world starts at 0.5 s: reached by frame 6 (6 * 80 ms = 0.48 s <= 0.5 s < 0.56 s)
    stream = aligned_text_stream(HELLO_WORLD, tokenize, num_frames(1.0))
    assert stream.tokens == [10, 11, P, P, P, E, 12, P, P, P, P, P, P]
    assert stream.dropped_tokens == 0


def test_a_word_queued_behind_another_follows_it_without_epad():
    words = [TimedWord("again", 0.0, 0.1), TimedWord("world", 0.1, 0.2), TimedWord("yes", 0.5, 0.6)]
    stream = aligned_text_stream(words, tokenize, 10)
    assert stream.tokens == [13, 14, 15, 12, P, E, 16, P, P, P]


def test_every_word_announced_for_tts():
    words = [TimedWord("again", 0.0, 0.1), TimedWord("world", 0.1, 0.2), TimedWord("yes", 0.6, 0.7)]
    stream = aligned_text_stream(words, tokenize, 10, TextStreamConfig(announce_every_word=True))
    # "again" at frame 0 and "world" queued behind it each get an EPAD frame of their own; "yes" follows
    # padding, which becomes its EPAD as in the other layouts
    assert stream.tokens == [E, 13, 14, 15, E, 12, E, 16, P, P]


def test_text_behind_audio_for_asr():
    stream = aligned_text_stream(HELLO_WORLD, tokenize, 13, TextStreamConfig(shift_seconds=0.5))
    assert stream.tokens == [P, P, P, P, P, E, 10, 11, P, P, P, E, 12]


def test_text_ahead_of_audio_for_tts():
    # hello moves before the start (frame 0), world to 0.34 s (frame 4)
    stream = aligned_text_stream(HELLO_WORLD, tokenize, 13, TextStreamConfig(shift_seconds=-0.16))
    assert stream.tokens == [10, 11, P, E, 12, P, P, P, P, P, P, P, P]


def test_speaker_turns_and_overflow():
    words = [TimedWord("yes", 0.0, 0.1, "main"), TimedWord("world", 0.2, 0.3, "main"),
             TimedWord("hello", 0.3, 0.5, "other")]
    config = TextStreamConfig(speaker_tokens={"main": 1, "other": 2})
    # world (frame 2) and hello (frame 3) arrive right after the previous word: no padding, so no EPAD;
    # the other speaker's turn opens with its speaker token
    assert aligned_text_stream(words, tokenize, 10, config).tokens == [1, 16, 12, 2, 10, 11, P, P, P, P]
    short = aligned_text_stream(words, tokenize, 5, config)
    assert short.tokens == [1, 16, 12, 2, 10] and short.dropped_tokens == 1


def test_frame_count():
    assert num_frames(1.0) == 13 and num_frames(0.08) == 1 and num_frames(0.0801) == 2
