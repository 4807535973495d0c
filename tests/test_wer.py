"""Word error rate: normalisation and edit counts on hand-checked cases."""

from delaykit.evaluation.wer import align_counts, normalize, word_error_rate


def test_normalize_drops_case_and_punctuation_but_keeps_apostrophes():
    assert normalize("Hello, World! It's 'quoted' -- ok?") == ["hello", "world", "it's", "quoted", "ok"]
    assert normalize("  ") == []


def test_counts_of_each_edit():
    ref = "the cat sat on the mat".split()
    assert align_counts(ref, ref).errors == 0
    counts = align_counts(ref, "the cat sit on mat".split())
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 1, 0)
    counts = align_counts(ref, "oh the cat sat on the mat".split())
    assert (counts.substitutions, counts.deletions, counts.insertions) == (0, 0, 1)
    assert align_counts(ref, []).deletions == 6
    assert align_counts([], ["a", "b"]).insertions == 2


def test_corpus_wer_sums_counts():
    counts = word_error_rate(["one two three", "four five"], ["one two", "Four, five six!"])
    assert counts.reference_words == 5 and counts.errors == 2
    assert abs(counts.wer - 0.4) < 1e-12


def test_start_errors_only_for_utterances_recognised_word_for_word():
    from delaykit.evaluation.asr import _start_errors
    from delaykit.modes.words import Word

    row = {"alignments": [["Hello,", [0.5, 0.9], "S"], ["world.", [1.0, 1.4], "S"]]}
    words = [Word("hello", 0.48, 0.96), Word("World", 1.04, 1.6)]
    assert [round(e, 3) for e in _start_errors(row, words)] == [-0.02, 0.04]
    assert _start_errors(row, [Word("hello", 0.48, 0.96)]) == []
    assert _start_errors(row, [Word("hello", 0.48, 0.96), Word("word", 1.0, 1.2)]) == []


def test_wer_per_voice_and_variant_groups_random_variants():
    from delaykit.evaluation.asr import _by_speaker

    rows = [{"voice": "en-us+m3"}, {"voice": "en-us+dkrand12"}, {"voice": "en-029+dkrand99"}, {"voice": "flite:slt"}]
    references = ["one two", "three four", "five six seven eight", "nine"]
    hypotheses = ["one two", "three", "five six", "ten nine"]
    report = _by_speaker(rows, references, hypotheses)
    assert report["by_voice"] == {
        "en-029": {"utterances": 1, "reference_words": 4, "wer": 0.5},
        "en-us": {"utterances": 2, "reference_words": 4, "wer": 0.25},
        "flite:slt": {"utterances": 1, "reference_words": 1, "wer": 1.0},
    }
    assert report["by_variant"]["random"] == {"utterances": 2, "reference_words": 6, "wer": 0.5}
    assert report["by_variant"]["m3"]["wer"] == 0.0 and report["by_variant"]["(none)"]["utterances"] == 1
    assert _by_speaker([{"path": "a.wav"}], ["x"], ["y"]) == {}  # no voices named: no breakdown


def test_numbers_become_digits_as_whisper_writes_them():
    assert normalize("born in one thousand nine hundred and ten", numbers=True) == ["born", "in", "1910"]
    assert normalize("the twenty-first of May", numbers=True) == ["the", "21st", "of", "may"]
    assert normalize("two hundred and thirty-four people", numbers=True) == ["234", "people"]
    assert normalize("nineteen ten", numbers=True) == ["19", "10"]  # two numbers, not one
    assert normalize("one and two", numbers=True) == ["1", "and", "2"]
    counts = word_error_rate(["Sunday the fifteenth of August, one thousand nine hundred and ten"],
                             ["Sunday 15th of August, 1910"], numbers=True)
    assert counts.errors == 1 and counts.reference_words == 6  # only "the" is missing
