"""Speech to text (data/speech.py) on project-made espeak-ng clips, and audio files in `kollm data run`.

whisper-base comes from the session fixture (tests/conftest.py: the kollm[whisper] wheels, assembled once). Clips
are English: no offline Korean speech exists that whisper can understand (espeak-ng's Korean voice is
unintelligible to it), so the Korean path is checked for what can honestly be checked: Hangul NFC output when the
language is named, and a reported language and probability when it is detected."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import unicodedata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import speech_clips as clips  # noqa: E402

from kollm.data.config import DataConfig  # noqa: E402
from kollm.data.pipeline import run_pipeline  # noqa: E402
from kollm.data.speech import AudioError, check_folder, decode  # noqa: E402
from kollm.errors import KollmError  # noqa: E402

if not clips.have_tools():
    pytest.fail("the speech tests need espeak-ng and sox: apt-get install espeak-ng sox", pytrace=False)

TWO = clips.SENTENCES[:2]


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    return clips.clip(TWO, tmp_path_factory.mktemp("speech") / "two.wav", gap_s=0.8)


def test_english_words_and_segment_timestamps(whisper_model, two):
    t = whisper_model.transcribe(two, language="en", word_timestamps=True)
    assert clips.wer(t.text, " ".join(TWO)) <= 0.25, t.text
    assert t.language == "en" and abs(t.duration - clips.duration(two)) < 0.05
    assert t.segments and t.text == unicodedata.normalize("NFC", t.text)
    prev_end = 0.0
    for s in t.segments:  # in order, inside the clip, each with its text
        assert prev_end - 0.01 <= s.start < s.end <= t.duration + 0.01 and s.text.strip()
        prev_end = s.end
    words = [w for s in t.segments for w in s.words]
    assert len(words) >= 12
    for a, b in zip(words, words[1:], strict=False):
        assert a.start <= a.end <= b.start + 0.01
    assert all(0 <= w.start and w.end <= t.duration + 0.01 for w in words)


def test_vad_skips_a_long_silence(whisper_model, tmp_path):
    """20 s of silence between two sentences: no word inside it, and the second sentence's words are on the file's
    own clock (where it really starts), so VAD's cut is invisible to the caller. (A segment's own start or end may
    sit at the edge of the cut: faster-whisper maps words one by one, segments by where they fall.)"""
    a, b = clips.clip(TWO[:1], tmp_path / "a.wav"), clips.clip(TWO[1:], tmp_path / "b.wav")
    gap = clips.silence(tmp_path / "gap.wav", 20.0)
    whole = tmp_path / "whole.wav"
    clips.sox(a, gap, b, whole)
    ends_a, starts_b = clips.duration(a), clips.duration(a) + 20.0
    t = whisper_model.transcribe(whole, language="en", word_timestamps=True)
    assert clips.wer(t.text, " ".join(TWO)) <= 0.25, t.text
    words = [w for s in t.segments for w in s.words]
    assert not any(ends_a + 0.5 < w.start < starts_b - 0.5 for w in words), words
    assert any(abs(w.start - starts_b) < 1.0 and "please" in w.word.lower() for w in words), (starts_b, words)
    assert sum(w.end - w.start for w in words) < t.duration - 15  # the silence was not transcribed
    # silence alone: nothing to say
    assert whisper_model.transcribe(clips.silence(tmp_path / "quiet.wav", 5.0)).text == ""


def test_bad_audio_is_a_one_line_error(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("not audio at all\n" * 50)
    for bad in (tmp_path / "empty.wav", tmp_path / "text.mp3", b"", b"RIFF" + b"\x00" * 40):
        with pytest.raises(AudioError) as e:
            decode(bad)
        assert "\n" not in str(e.value)


def test_whisper_folder_checks(tmp_path, whisper_dir):
    with pytest.raises(KollmError, match="kollm import whisper"):
        check_folder(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(whisper_dir / "config.json", partial)
    with pytest.raises(KollmError, match="no model.bin, tokenizer.json"):  # faster-whisper would download one
        check_folder(partial)


def test_korean_path(whisper_model, tmp_path):
    """espeak-ng's Korean is not speech whisper understands, so no accuracy here (docs/data.md cites whisper-base's
    published Korean error rate); what is checked: with language="ko" the output is Hangul, NFC, timestamped; when
    detecting, a language whisper knows is reported with its probability."""
    ko = clips.clip(["안녕하세요. 오늘 날씨가 좋습니다."], tmp_path / "ko.wav", voice="ko")
    t = whisper_model.transcribe(ko, language="ko", temperature=0.01)  # no fallback re-decodes of nonsense: fast
    letters = [c for c in t.text if c.isalpha()]
    assert letters and sum("가" <= c <= "힣" for c in letters) / len(letters) > 0.8, t.text
    assert t.text == unicodedata.normalize("NFC", t.text) and t.language == "ko" and t.language_probability == 1
    assert all(0 <= s.start < s.end <= t.duration + 0.01 for s in t.segments)
    detected = whisper_model.transcribe(ko, temperature=0.01)
    assert detected.language in whisper_model.languages and 0 < detected.language_probability <= 1


def _read_clean(out: Path) -> list[dict]:
    rows = []
    for f in sorted((out / "clean").glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh]
    return rows


def _cfg(inp: Path, out: Path, **kw) -> DataConfig:
    # English clips: the Korean quality rules and near-dedup are for text corpora, not this check
    return DataConfig(inputs=[str(inp)], out=str(out), workers=1, quality=False, near_dedup=False, **kw)


@pytest.fixture(scope="module")
def audio_corpus(tmp_path_factory) -> Path:
    """Each format kollm reads, one sentence each, plus a broken file and a text file beside them."""
    d = tmp_path_factory.mktemp("audio-corpus")
    src = clips.clip(TWO[:1], d / "s0.wav")
    clips.sox(clips.clip(clips.SENTENCES[2:3], d / ".s1.wav"), d / "s1.flac")
    clips.sox(clips.clip(clips.SENTENCES[3:4], d / ".s2.wav"), d / "s2.ogg")
    clips.encode(clips.clip(clips.SENTENCES[4:5], d / ".s3.wav"), d / "s3.mp3")
    clips.encode(clips.clip(clips.SENTENCES[5:6], d / ".s4.wav"), d / "s4.m4a")
    for p in d.glob(".s*.wav"):
        p.unlink()
    assert src.is_file()
    (d / "broken.wav").write_bytes(b"RIFF not really a wave file")
    (d / "notes.txt").write_text("회의 메모: 다음 주 월요일까지 보고서를 제출한다.\n", encoding="utf-8")
    return d


def test_audio_in_the_data_pipeline(whisper_dir, audio_corpus, tmp_path):
    out = tmp_path / "out"
    run_pipeline(_cfg(audio_corpus, out, whisper=str(whisper_dir), whisper_language="en"))
    rows = {r["id"]: r for r in _read_clean(out)}
    refs = {"s0.wav": 0, "s1.flac": 2, "s2.ogg": 3, "s3.mp3": 4, "s4.m4a": 5}
    assert set(rows) == {*refs, "notes.txt:1"}
    for name, i in refs.items():
        r = rows[name]
        assert clips.wer(r["text"], clips.SENTENCES[i]) <= 0.25, (name, r["text"])
        assert r["language"] == "en" and r["source"].endswith(name) and r["duration"] > 1
        assert r["segments"] and all(0 <= s["start"] < s["end"] <= r["duration"] + 0.01 and s["text"]
                                     for s in r["segments"])
    stats = {s["stage"]: s for s in json.loads((out / "stats.json").read_text())["stages"]}
    assert stats["read"]["removed"] == {"bad_audio": 1}


def test_audio_needs_a_whisper_folder(audio_corpus, tmp_path):
    run_pipeline(_cfg(audio_corpus, tmp_path / "lenient"))  # removed with the reason, the text file kept
    stats = {s["stage"]: s for s in json.loads((tmp_path / "lenient" / "stats.json").read_text())["stages"]}
    assert stats["read"]["removed"] == {"no_whisper": 6} and stats["read"]["docs_out"] == 1
    with pytest.raises(KollmError, match="--whisper DIR"):
        run_pipeline(_cfg(audio_corpus, tmp_path / "strict", strict=True))
    with pytest.raises(KollmError, match="kollm import whisper"):
        run_pipeline(_cfg(audio_corpus, tmp_path / "missing", whisper=str(tmp_path / "nowhere")))


def test_strict_run_stops_at_a_broken_audio_file(whisper_dir, audio_corpus, tmp_path):
    one = tmp_path / "in"
    one.mkdir()
    shutil.copy(audio_corpus / "broken.wav", one)
    with pytest.raises(KollmError, match=r"broken\.wav: not audio FFmpeg can decode.*re-encode it"):
        run_pipeline(_cfg(one, tmp_path / "out", whisper=str(whisper_dir), strict=True))


def test_pii_is_masked_in_segments_too():
    """A transcript's segments repeat its text in the row: the PII stage masks both."""
    from datatrove.data import Document

    from kollm.data.steps import MaskPII

    said = "제 번호는 010-1234-5678 입니다."
    doc = Document(text=said, id="call.wav", metadata={"segments": [{"start": 0.0, "end": 2.5, "text": said}]})
    out = MaskPII().process(doc)
    assert "010-1234" not in out.text and "010-1234" not in out.metadata["segments"][0]["text"]
    assert out.metadata["segments"][0]["text"] == out.text
