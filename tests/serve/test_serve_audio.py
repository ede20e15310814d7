"""POST /v1/audio/transcriptions (`kollm serve --whisper`) through the official `openai` client: every
response_format, timestamps, bad and oversized files, the API key rules, and the server without --whisper."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx
import openai
import pytest
from live import running

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
import speech_clips as clips  # noqa: E402

from kollm.errors import KollmError  # noqa: E402
from kollm.serve.app import create_app, run_server  # noqa: E402
from kollm.serve.audio import Transcriber  # noqa: E402
from kollm.serve.config import ServeConfig  # noqa: E402
from kollm.serve.engine import Engine  # noqa: E402
from kollm.serve.keys import Guard  # noqa: E402

if not clips.have_tools():
    pytest.fail("the speech tests need espeak-ng and sox: apt-get install espeak-ng sox", pytrace=False)

TWO = clips.SENTENCES[:2]
KEY = "sk-audio-test"
LIMIT = 400_000  # bytes: the test's upload limit (the default is OpenAI's 25 MB)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return Engine.load(tiny_model_dir)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return clips.clip(TWO, tmp_path_factory.mktemp("audio") / "two.wav", gap_s=0.8)


@pytest.fixture(scope="module")
def server(engine, whisper_dir, whisper_model):
    app = create_app(engine, guard=Guard(KEY, None), transcriber=Transcriber(whisper_dir, concurrency=1),
                     max_audio_bytes=LIMIT)
    with running(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def _stamps(text: str, sep: str) -> list[tuple[float, float]]:
    def sec(h: str, m: str, s: str, ms: str) -> float:
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    pat = rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d) --> (\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d)"
    return [(sec(*m[:4]), sec(*m[4:])) for m in re.findall(pat, text)]


def _in_order(spans: list[tuple[float, float]], duration: float) -> bool:
    return all(0 <= a < b <= duration + 0.01 for a, b in spans) and all(
        spans[i][1] <= spans[i + 1][0] + 0.01 for i in range(len(spans) - 1))


def test_every_response_format_through_the_openai_client(client, clip):
    ref, duration = " ".join(TWO), clips.duration(clip)
    with open(clip, "rb") as f:
        js = client.audio.transcriptions.create(file=f, model="whisper-1", language="en")
    assert clips.wer(js.text, ref) <= 0.25, js.text
    assert js.usage.type == "duration" and js.usage.seconds == int(-(-duration // 1))

    text = client.audio.transcriptions.create(file=clip, model="whisper-1", language="en", response_format="text")
    assert isinstance(text, str) and clips.wer(text, ref) <= 0.25

    srt = client.audio.transcriptions.create(file=clip, model="whisper-1", language="en", response_format="srt")
    assert srt.startswith("1\n") and _in_order(_stamps(srt, ","), duration) and _stamps(srt, ",")
    vtt = client.audio.transcriptions.create(file=clip, model="whisper-1", language="en", response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n") and _stamps(vtt, ".") == _stamps(srt, ",")
    assert clips.wer(re.sub(r"\d\d:\d\d:\d\d\.\d\d\d --> .*|WEBVTT", " ", vtt), ref) <= 0.25

    verbose = client.audio.transcriptions.create(file=clip, model="whisper-1", language="en",
                                                 response_format="verbose_json",
                                                 timestamp_granularities=["segment", "word"], temperature=0)
    assert verbose.language == "english" and abs(verbose.duration - duration) < 0.05
    assert clips.wer(verbose.text, ref) <= 0.25 and len(verbose.segments) >= 1
    assert [s.id for s in verbose.segments] == list(range(len(verbose.segments)))
    assert _in_order([(s.start, s.end) for s in verbose.segments], duration)
    assert all(s.tokens and s.avg_logprob < 0 and 0 <= s.no_speech_prob <= 1 for s in verbose.segments)
    words = verbose.words
    assert clips.wer(" ".join(w.word for w in words), ref) <= 0.25 and all(w.word == w.word.strip() for w in words)
    assert _in_order([(w.start, w.end) for w in words if w.end > w.start], duration)


def test_the_folder_name_and_a_prompt(client, clip, whisper_dir):
    out = client.audio.transcriptions.create(file=clip, model=whisper_dir.name, prompt="Fox, dog, meeting.",
                                             response_format="verbose_json")
    assert out.language == "english" and out.segments and out.words is None  # segments only, by default
    assert [m.id for m in client.models.list().data][-1] == whisper_dir.name  # listed after the LM


def _post(server: str, files: dict, key: str | None = KEY, **data: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{server}/v1/audio/transcriptions", files=files, data=data, headers=headers, timeout=60)


def test_bad_input_is_an_openai_error(server, client, clip, tmp_path):
    wav = {"file": ("a.wav", clip.read_bytes(), "audio/wav")}
    cases = [
        ({"file": ("empty.wav", b"", "audio/wav")}, {}, 400, "file", "empty"),
        ({"file": ("a.mp3", b"ID3 this is not audio" * 20, "audio/mpeg")}, {}, 400, "file", "FFmpeg"),
        ({"model": (None, "whisper-1")}, {}, 400, "file", "no `file`"),
        (wav, {"model": "gpt-4o"}, 404, "model", "whisper-1"),
        (wav, {"response_format": "docx"}, 400, "response_format", "verbose_json"),
        (wav, {"language": "klingon"}, 400, "language", "ISO 639-1"),
        (wav, {"temperature": "2"}, 400, "temperature", "between 0 and 1"),
        (wav, {"timestamp_granularities[]": "word"}, 400, "timestamp_granularities", "verbose_json"),
        (wav, {"diarize": "true"}, 400, "diarize", "unsupported"),
        (wav, {"stream": "true"}, 400, "stream", "not supported"),
        ({"file": ("big.wav", b"\0" * (LIMIT + 1000), "audio/wav")}, {}, 413, "file", "limit"),  # the route's check
    ]
    for files, data, status, param, words in cases:
        r = _post(server, files, **data)
        err = r.json()["error"]
        assert (r.status_code, err["param"]) == (status, param) and words in err["message"], (data, r.text)
    r = _post(server, {"file": ("big.wav", b"\0" * (LIMIT + 200_000), "audio/wav")})  # the gate's, before reading
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    def chunks():  # no Content-Length: the body is counted as it arrives
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
        for _ in range(8):
            yield b"\0" * 65536

    r = httpx.post(f"{server}/v1/audio/transcriptions", content=chunks(), timeout=60,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert _post(server, wav, key=None).status_code == 401 and _post(server, wav, key="wrong").status_code == 401
    r = httpx.post(f"{server}/v1/audio/transcriptions", json={"file": "x"}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(file=("x.wav", b"garbage"), model="whisper-1")


@pytest.mark.slow
def test_concurrent_requests_each_get_their_own_transcript(server, clip, tmp_path):
    other = clips.clip(clips.SENTENCES[2:3], tmp_path / "other.wav")

    async def run() -> list[str]:
        c = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
        return await asyncio.gather(*(c.audio.transcriptions.create(file=f, model="whisper-1", language="en",
                                                                    response_format="text")
                                      for f in (clip, other, clip)))

    a, b, c = asyncio.run(run())
    assert a == c and clips.wer(a, " ".join(TWO)) <= 0.25 and clips.wer(b, clips.SENTENCES[2]) <= 0.25


def test_without_whisper_the_route_says_how_to_enable_it(engine, tmp_path):
    with running(create_app(engine)) as url:
        r = _post(url, {"file": ("a.wav", b"RIFF", "audio/wav")}, key=None)
        assert r.status_code == 404 and "--whisper DIR" in r.json()["error"]["message"]
        assert len(httpx.get(f"{url}/v1/models").json()["data"]) == 1


def test_serve_refuses_a_missing_whisper_folder(tiny_model_dir, tmp_path):
    with pytest.raises(KollmError, match="kollm import whisper"):  # before the port opens or anything loads
        run_server(ServeConfig(model=str(tiny_model_dir), whisper=str(tmp_path / "nowhere")))
