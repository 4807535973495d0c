"""Corpus manifests: both layouts read into the same rows; the check keeps good rows and counts the rest; a
manifest is written whole or not at all."""

from __future__ import annotations

import json

import numpy as np
import pytest

from delaykit.audio import write_audio
from delaykit.data import manifest as m
from delaykit.data.synth import read_manifest

RATE = 24_000
MAIN = "SPEAKER_MAIN"


def tone(seconds: float = 1.0) -> np.ndarray:
    return (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def aligned(*words: tuple[str, float, float], speaker: str = MAIN) -> list:
    return [[word, [start, end], speaker] for word, start, end in words]


GOOD = aligned(("hello", 0.1, 0.4), ("there.", 0.4, 0.9))
# (name, alignments, reasons it is skipped for); every file is 1 s of audio
CASES = [
    ("good", GOOD, ()),
    ("good_near_end", aligned(("late", 0.5, 1.05)), ()),  # within the 0.1 s tolerance
    ("dialogue", GOOD + aligned(("yes", 0.3, 0.5), speaker="SPEAKER_USER"), ()),  # speakers may overlap
    ("start_after_end", aligned(("hello", 0.5, 0.4)), (m.START_AFTER_END,)),
    ("negative", aligned(("hello", -0.1, 0.4)), (m.NEGATIVE_TIME,)),
    ("overlap", aligned(("hello", 0.1, 0.5), ("there", 0.4, 0.9)), (m.OUT_OF_ORDER,)),
    ("out_of_order", aligned(("there", 0.5, 0.9), ("hello", 0.1, 0.4)), (m.OUT_OF_ORDER,)),
    ("past_end", aligned(("hello", 0.1, 1.2)), (m.PAST_END,)),
    ("speaker", aligned(("hello", 0.1, 0.4), speaker="SPEAKER_OTHER"), (m.UNKNOWN_SPEAKER,)),
    ("empty_word", aligned(("hello", 0.1, 0.4), (" ", 0.4, 0.5)), (m.EMPTY_WORD,)),
    ("malformed", [["hello", 0.1, MAIN]], (m.MALFORMED_ALIGNMENTS,)),
    ("two_problems", aligned(("", -0.2, 0.3)), (m.EMPTY_WORD, m.NEGATIVE_TIME)),
    ("no_alignments", None, (m.MISSING_ALIGNMENTS,)),
]


def write_manifest(root, extra_rows=()):
    """WAVs for CASES (plus a missing and an unreadable file) and their manifest; the expected report."""
    (root / "wavs").mkdir(parents=True)
    rows, expected = [], {}
    for name, alignments, reasons in CASES:
        write_audio(root / "wavs" / f"{name}.wav", tone(), RATE)
        row = {"path": f"wavs/{name}.wav", "duration": 1.0}
        if alignments is not None:
            row["alignments"] = alignments
        rows.append(row)
        for reason in reasons:
            expected[reason] = expected.get(reason, 0) + 1
    (root / "wavs" / "broken.wav").write_text("not audio")
    rows += [{"path": "wavs/absent.wav", "alignments": GOOD}, {"path": "wavs/broken.wav", "alignments": GOOD}]
    expected[m.MISSING_AUDIO] = expected[m.UNREADABLE_AUDIO] = 1
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return expected


def test_check_counts_each_problem_and_keeps_good_rows(tmp_path):
    expected = write_manifest(tmp_path)
    rows = m.read_corpus(tmp_path)
    good, report = m.check_corpus(rows, speakers={MAIN, "SPEAKER_USER"})
    assert sorted(row["path"].rsplit("/", 1)[1] for row in good) == ["dialogue.wav", "good.wav",
                                                                     "good_near_end.wav"]
    assert report.problems == expected
    assert (report.rows, report.kept, report.skipped) == (len(CASES) + 2, 3, len(CASES) - 1)
    assert all(len(report.examples[reason]) >= 1 for reason in expected)
    assert "absent.wav" in report.examples[m.MISSING_AUDIO][0]
    summary = report.summary()
    assert summary.startswith(f"3 of {len(CASES) + 2} rows kept") and m.PAST_END in summary


def test_speakers_are_free_unless_restricted_and_alignments_optional_when_asked(tmp_path):
    write_manifest(tmp_path)
    rows = m.read_corpus(tmp_path / "manifest.jsonl")
    _, report = m.check_corpus(rows)
    assert m.UNKNOWN_SPEAKER not in report.problems
    _, report = m.check_corpus(rows, require_alignments=False)
    assert m.MISSING_ALIGNMENTS not in report.problems


def test_rows_have_absolute_paths_text_duration(tmp_path):
    write_manifest(tmp_path)
    rows = {r["path"].rsplit("/", 1)[1]: r for r in m.read_corpus(tmp_path)}
    good = rows["good.wav"]
    assert good["path"] == str(tmp_path / "wavs" / "good.wav")
    assert good["text"] == "hello there." and good["duration"] == 1.0 and good["alignments"] == GOOD
    assert rows["no_alignments.wav"]["alignments"] is None and rows["no_alignments.wav"]["text"] == ""
    assert rows["absent.wav"]["duration"] is None
    # the codec trainer's reader: rows as written, paths absolute
    assert [r["path"] for r in read_manifest(tmp_path)] == [r["path"] for r in m.read_corpus(tmp_path)]


def test_directory_of_wav_and_json_pairs(tmp_path):
    (tmp_path / "a").mkdir()
    write_audio(tmp_path / "a" / "one.wav", tone(), RATE)
    (tmp_path / "a" / "one.json").write_text(json.dumps({"alignments": GOOD}))
    write_audio(tmp_path / "two.wav", tone(0.5), RATE)
    (tmp_path / "two.json").write_text(json.dumps({"alignments": aligned(("late", 0.1, 0.9))}))
    write_audio(tmp_path / "three.wav", tone(), RATE)  # no JSON
    write_audio(tmp_path / "four.wav", tone(), RATE)
    (tmp_path / "four.json").write_text("{not json")
    rows = m.read_corpus(tmp_path)
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["one.wav", "four.wav", "three.wav", "two.wav"]
    assert rows[0]["text"] == "hello there." and abs(rows[3]["duration"] - 0.5) < 1e-9
    good, report = m.check_corpus(rows)
    assert [r["path"] for r in good] == [str(tmp_path / "a" / "one.wav")]
    assert report.problems == {m.MISSING_ALIGNMENTS: 1, m.MALFORMED_ALIGNMENTS: 1, m.PAST_END: 1}


def test_broken_manifest_line_names_its_place(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"path": "a.wav"}) + "\n{broken\n")
    with pytest.raises(ValueError, match="manifest.jsonl:2"):
        m.read_corpus(tmp_path)
    with pytest.raises(FileNotFoundError):
        m.read_corpus(tmp_path / "nowhere")


def test_a_manifest_appears_only_when_its_corpus_is_finished(tmp_path):
    (tmp_path / m.MANIFEST_NAME).write_text('{"path": "old.wav"}\n')
    with pytest.raises(RuntimeError), m.manifest_writer(tmp_path) as f:
        f.write('{"path": "a.wav"}\n')
        assert not (tmp_path / m.MANIFEST_NAME).exists()  # the old corpus's, gone before its files are overwritten
        raise RuntimeError("stopped")
    assert not (tmp_path / m.MANIFEST_NAME).exists()
    with m.manifest_writer(tmp_path) as f:
        f.write('{"path": "a.wav"}\n')
    assert (tmp_path / m.MANIFEST_NAME).read_text() == '{"path": "a.wav"}\n'
    assert not (tmp_path / (m.MANIFEST_NAME + ".partial")).exists()
