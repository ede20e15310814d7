"""Project-made speech for the speech tests and bench/speech.py: English sentences spoken by espeak-ng, padded and
joined with sox, re-encoded with PyAV (FFmpeg) where sox has no encoder (mp3, m4a). There is no offline Korean
speech whisper can understand (espeak-ng's Korean voice comes out as nonsense syllables), so these clips test the
plumbing, timestamps and word accuracy in English; the Korean path gets its own honest checks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me after the meeting tomorrow morning.",
    "The weather today is sunny with a light breeze.",
    "We shipped the new version of the model last week.",
    "Seoul is the capital city of South Korea.",
    "Open the window and let the fresh air in.",
]


def have_tools() -> bool:
    return bool(shutil.which("espeak-ng") and shutil.which("sox"))


def speak(text: str, out: Path, voice: str = "en-us", speed: int = 140) -> Path:
    """`text` spoken by espeak-ng into a wav file."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text], check=True,
                   capture_output=True)
    return out


def sox(*args: str | Path) -> None:
    subprocess.run(["sox", *map(str, args)], check=True, capture_output=True)


def clip(texts: list[str], out: Path, gap_s: float = 0.5, lead_s: float = 0.3, voice: str = "en-us") -> Path:
    """The sentences spoken one after another with `gap_s` of silence between them (and `lead_s` around), as a
    16 kHz mono wav (or whatever sox writes for `out`'s suffix: .flac, .ogg)."""
    work = out.parent / f".{out.stem}-parts"
    work.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, t in enumerate(texts):
        raw = speak(t, work / f"{i}.wav", voice)
        padded = work / f"{i}-p.wav"
        sox(raw, "-r", "16000", "-c", "1", padded, "pad", str(lead_s if i == 0 else 0), str(gap_s))
        parts.append(padded)
    sox(*parts, "-r", "16000", "-c", "1", out)
    shutil.rmtree(work, ignore_errors=True)
    return out


def silence(out: Path, seconds: float) -> Path:
    sox("-n", "-r", "16000", "-c", "1", out, "trim", "0", str(seconds))
    return out


def encode(src: Path, out: Path) -> Path:
    """Re-encode a wav with PyAV (FFmpeg's lame and aac encoders ship in its wheel): .mp3 or .m4a."""
    import av

    codec = {".mp3": "libmp3lame", ".m4a": "aac"}[out.suffix]
    with av.open(str(src)) as inp, av.open(str(out), "w", format="mp4" if out.suffix == ".m4a" else "mp3") as outp:
        stream = outp.add_stream(codec, rate=16000, layout="mono")
        for frame in inp.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                outp.mux(packet)
        for packet in stream.encode(None):
            outp.mux(packet)
    return out


def duration(path: Path) -> float:
    return float(subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True).stdout)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def wer(hyp: str, ref: str) -> float:
    """Word error rate: word-level edit distance / reference words (case and punctuation ignored)."""
    from kollm.metrics import levenshtein

    r = words(ref)
    return levenshtein(words(hyp), r) / max(1, len(r))
