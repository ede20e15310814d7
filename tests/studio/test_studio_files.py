"""File variables (#26): a version declares `files` ({"receipt": "image"}); the playground's picker posts an image
(OCR'd by the Studio with tesseract) or a recording (transcribed by the model server's /v1/audio/transcriptions)
and gets its text back; the app endpoint takes data URLs for file variables. Korean receipts are rendered by the
OCR tests' generator, speech is espeak-ng's (tests/data/speech_clips.py), the model server is scripted (httpx
MockTransport) or a real `kollm serve --whisper` on whisper-base."""

from __future__ import annotations

import base64
import difflib
import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from kollm.errors import KollmError
from kollm.studio.apps import AppSpec, diff, file_kinds
from kollm.studio.builtin import template

from .helpers import (
    PASSWORD,
    FakeModel,
    browser_log_in,
    browser_new_app,
    log_in,
    make_key,
    make_studio,
    new_app,
    required_in_ci,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import ocr_images  # noqa: E402
import speech_clips  # noqa: E402

RECEIPT = ocr_images.make("receipt", 0)  # a rendered Korean receipt (PNG) and the text drawn on it
TRANSCRIPT = "김지은: 두 번째 시안으로 가죠. 박민수: 목요일까지 수정 요청할게요."


class AudioModel(FakeModel):
    """The scripted model server, which also transcribes (OpenAI's verbose_json), refuses with `audio_status`, or
    has no transcription route at all (`audio_status=404`, kollm serve without --whisper)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: list[httpx.Request] = []
        self.audio_status = 200

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/audio/transcriptions":
            return super().handler(request)
        self.audio.append(request)
        if self.audio_status == 404:
            return httpx.Response(404, json={"error": {"message": "speech transcription is not enabled on this "
                                                       "server; start the server with --whisper DIR"}})
        if self.audio_status != 200:
            return httpx.Response(self.audio_status, json={"error": {"message": "the audio cannot be decoded"}})
        return httpx.Response(200, json={"task": "transcribe", "language": "korean", "duration": 4.25,
                                         "text": " " + TRANSCRIPT, "segments": []})


@pytest.fixture
def audio_studio(tmp_path):
    fake = AudioModel()
    client = TestClient(make_studio(tmp_path, fake), raise_server_exceptions=False)
    return client, log_in(client), fake


def _extract(client, tok, slug, var, kind, name, data, **headers):
    return client.post(f"/apps/{slug}/extract", data={"csrf_token": tok, "var": var, "kind": kind},
                       files={"file": (name, data)}, headers=headers)


def _similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# --- the version's declaration -------------------------------------------------------------------------------------
def test_files_are_part_of_the_version_and_checked():
    spec = AppSpec(template="영수증:\n{{receipt}}\n{{memo}}", files={"receipt": "image"}).check()
    assert AppSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert AppSpec.from_dict({"template": "{{a}}"}).files == {}  # versions saved before #26
    assert AppSpec.from_dict({"template": "{{a}}", "keyboard_switch": True}).fix_typos  # saved before the rename
    assert not AppSpec.from_dict({"template": "{{a}}"}).keep_close  # versions saved before keep_close
    # keep_close compares the output with the one text input it corrects: a file variable is not one
    AppSpec(template=spec.template, files={"receipt": "image"}, keep_close=True).check()
    with pytest.raises(KollmError, match="2 text variables"):
        AppSpec(template="{{a}} {{b}}", keep_close=True).check()
    lines = diff(AppSpec(template=spec.template), spec, "v1", "v2")
    assert "+files: receipt=image" in lines
    for files, says in (({"total": "image"}, "'total' is not in the template"),
                        ({"receipt": "video"}, "image or audio"), ({"receipt": "text"}, "image or audio"),
                        (["receipt"], "must map variables")):
        with pytest.raises(KollmError, match=says):
            AppSpec(template=spec.template, files=files).check()
    # the editor's choices: file kinds only, for variables the draft's template still has
    form = [("file-receipt", "image"), ("file-memo", "text"), ("file-old", "audio"), ("template", "x")]
    assert file_kinds(form, spec.template) == {"receipt": "image"}
    assert template("receipt-json")["spec"].check().files == {"receipt": "image"}
    assert template("meeting-minutes")["spec"].check().files == {"transcript": "audio"}


def test_the_editor_saves_the_kinds_and_shows_the_picker(studio):
    client, tok, _ = studio
    assert new_app(client, tok, "rc", "receipt-json").status_code == 200
    page = client.get("/apps/rc").text
    assert re.search(r'<select name="file-receipt"[^>]*>.*?<option value="image" selected>', page, re.S)
    assert 'class="pg-file" data-var="receipt" data-url="/apps/rc/extract"' in page
    form = {"csrf_token": tok, "template": "영수증:\n{{receipt}}\n메모: {{memo}}", "mode": "chat",
            "file-receipt": "image", "file-memo": "audio", "note": "메모 추가"}
    r = client.post("/apps/rc/versions", data=form)
    assert r.status_code == 200 and "+files: receipt=image, memo=audio" in r.text
    form = {**form, "template": "{{memo}}", "file-memo": "text"}  # receipt gone from the draft: its choice drops
    r = client.post("/apps/rc/versions", data=form)
    assert r.status_code == 200 and "-files: receipt=image, memo=audio" in r.text
    assert "+files" not in r.text


# --- the playground's picker -----------------------------------------------------------------------------------------
def test_an_image_is_read_by_ocr(studio):
    client, tok, _ = studio
    new_app(client, tok, "rc", "receipt-json")
    r = _extract(client, tok, "rc", "receipt", "image", "receipt.png", RECEIPT.data)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["var"] == "receipt" and got["kind"] == "image" and got["confidence"] > 60
    assert _similar(got["text"], RECEIPT.truth) > 0.9, got["text"]
    assert RECEIPT.truth.splitlines()[0] in got["text"]  # the store's name, in Korean
    assert got["note"].startswith("이미지에서 글자 인식(OCR)으로 읽음 · 신뢰도")
    assert r.headers["cache-control"] == "no-store"


def test_bad_images_and_requests_are_clear_400s(tmp_path, monkeypatch):
    client = TestClient(make_studio(tmp_path, FakeModel(), max_file_bytes=50_000), raise_server_exceptions=False)
    tok = log_in(client)
    new_app(client, tok, "rc", "receipt-json")
    blank = ocr_images._png(Image.new("L", (400, 200), 255))
    for name, data, kind, says in (
            ("r.png", b"this is not a picture", "image", "이미지를 읽을 수 없습니다"),
            ("r.png", RECEIPT.data[:2000], "image", "이미지를 읽을 수 없습니다"),  # truncated
            ("blank.png", blank, "image", "글자를 찾지 못했습니다"),
            ("big.png", b"\x89PNG" + bytes(60_000), "image", "50,000바이트를 넘습니다"),
            ("empty.png", b"", "image", "빈 파일입니다"),
            ("r.png", RECEIPT.data, "video", "image 또는 audio")):
        r = _extract(client, tok, "rc", "receipt", kind, name, data)
        assert r.status_code == 400 and says in r.json()["error"]["message"], (name, r.text)
    r = client.post("/apps/rc/extract", data={"csrf_token": tok, "kind": "image"})
    assert r.status_code == 400 and "파일을 선택하세요" in r.json()["error"]["message"]
    assert _extract(client, tok, "nope", "x", "image", "r.png", RECEIPT.data).status_code == 404
    # the guards of every POST: the CSRF token, a login
    assert _extract(client, "forged", "rc", "receipt", "image", "r.png", RECEIPT.data).status_code == 403
    anon = TestClient(client.app, raise_server_exceptions=False)
    r = _extract(anon, tok, "rc", "receipt", "image", "r.png", RECEIPT.data)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"

    # tesseract missing: one line that says what to install
    from kollm.data import ocr

    def missing() -> str:
        raise ocr.OcrUnavailable(f"tesseract is not installed; install it: sudo apt-get install {ocr.APT}")

    monkeypatch.setattr(ocr, "_tesseract", missing)
    r = _extract(client, tok, "rc", "receipt", "image", "r.png", RECEIPT.data)
    assert r.status_code == 400
    said = r.json()["error"]["message"]
    assert said.startswith("이미지의 글자 인식(OCR)을 쓸 수 없습니다: tesseract is not installed")
    assert "apt-get install tesseract-ocr tesseract-ocr-kor" in r.json()["error"]["message"]


def test_a_recording_is_transcribed_by_the_model_server(audio_studio):
    client, tok, fake = audio_studio
    new_app(client, tok, "mm", "meeting-minutes")
    wav = b"RIFF....WAVEfmt fake audio bytes"
    r = _extract(client, tok, "mm", "transcript", "audio", "회의.wav", wav)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["text"] == TRANSCRIPT and got["language"] == "korean" and got["duration"] == 4.25
    assert got["note"] == "음성에서 받아씀 · 언어 korean · 4.2초"
    req = fake.audio[-1]  # OpenAI's multipart shape: the file, the model, verbose_json for language and duration
    assert req.headers["content-type"].startswith("multipart/form-data")
    body = req.content
    assert wav in body and b'name="model"\r\n\r\nwhisper-1' in body
    assert b'name="response_format"\r\n\r\nverbose_json' in body and b"audio/x-wav" in body

    fake.audio_status = 404  # a server that does not transcribe: say how to get one that does
    r = _extract(client, tok, "mm", "transcript", "audio", "회의.wav", wav)
    assert r.status_code == 502 and r.json()["error"]["type"] == "model_error"
    assert "kollm serve --whisper" in r.json()["error"]["message"] and "--model-url" in r.json()["error"]["message"]
    fake.audio_status = 400  # the server read the file and refused it: the caller's input
    r = _extract(client, tok, "mm", "transcript", "audio", "회의.wav", wav)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("음성 파일을 받아쓸 수 없습니다")


# --- the app endpoint -------------------------------------------------------------------------------------------------
def test_the_app_endpoint_takes_data_urls(audio_studio):
    client, tok, fake = audio_studio
    new_app(client, tok, "rc", "receipt-json")
    key = make_key(client, tok, "rc")
    h = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/apps/rc", headers=h).json()["files"] == {"receipt": "image"}
    fake.reply = '{"store": "x", "date": "2024-11-22", "items": [], "total": 36400}'
    r = client.post("/v1/apps/rc/run", headers=h, json={"inputs": {"receipt": _data_url("image/png", RECEIPT.data)}})
    assert r.status_code == 200, r.text
    sent = fake.requests[-1]["messages"][-1]["content"]  # what the model was asked: the receipt's text
    assert sent.startswith("영수증:\n") and _similar(sent.removeprefix("영수증:\n"), RECEIPT.truth) > 0.9
    assert "base64" not in sent
    got = r.json()["extracted"]["receipt"]
    assert got["kind"] == "image" and got["text"] == sent.removeprefix("영수증:\n") and got["confidence"] > 60
    logged = client.get("/apps/rc/logs").text  # the log keeps the text, not megabytes of base64
    assert "base64" not in logged
    # plain text passes through unchanged
    r = client.post("/v1/apps/rc/run", headers=h, json={"inputs": {"receipt": "GS25 합계 3,000원"}})
    assert r.status_code == 200 and "extracted" not in r.json()
    assert fake.requests[-1]["messages"][-1]["content"] == "영수증:\nGS25 합계 3,000원"
    # bad data URLs are 400s that say what is wrong
    for value, says in ((_data_url("audio/wav", b"RIFF"), "image 변수인데 audio/wav"),
                        ("data:image/png;base64,@@not-base64@@", "data URL을 읽을 수 없습니다"),
                        ("data:image/png,rawbytes", "not base64"),
                        (_data_url("image/png", b"not a png"), "이미지를 읽을 수 없습니다")):
        r = client.post("/v1/apps/rc/run", headers=h, json={"inputs": {"receipt": value}})
        assert r.status_code == 400 and says in r.json()["error"]["message"], (value[:40], r.text)
        assert r.json()["error"]["type"] == "invalid_request_error"

    # a recording for the meeting app, transcribed by the model server
    new_app(client, tok, "mm", "meeting-minutes")
    h = {"Authorization": f"Bearer {make_key(client, tok, 'mm')}"}
    r = client.post("/v1/apps/mm/run", headers=h, json={"inputs": {"transcript": _data_url("audio/wav", b"RIFFxx")}})
    assert r.status_code == 200 and r.json()["extracted"]["transcript"]["language"] == "korean"
    assert f"녹취록:\n{TRANSCRIPT}\n회의록:" in fake.requests[-1]["prompt"]


def test_a_data_url_over_the_file_limit_is_refused(tmp_path):
    # the file limit, not the (smaller) test-set upload limit, bounds the routes that take files
    client = TestClient(make_studio(tmp_path, FakeModel(), max_file_bytes=20_000, max_upload_bytes=2_000),
                        raise_server_exceptions=False)
    tok = log_in(client)
    new_app(client, tok, "rc", "receipt-json")
    h = {"Authorization": f"Bearer {make_key(client, tok, 'rc')}"}
    r = client.post("/v1/apps/rc/run", headers=h, json={"inputs": {"receipt": _data_url("image/png", bytes(25_000))}})
    assert r.status_code == 400 and "20,000바이트를 넘습니다" in r.json()["error"]["message"]
    r = _extract(client, tok, "rc", "receipt", "image", "r.png", RECEIPT.data[:15_000])  # over 2,000, under 20,000
    assert r.status_code == 400 and "이미지를 읽을 수 없습니다" in r.json()["error"]["message"]
    r = client.post("/v1/apps/rc/run", headers=h, json={"inputs": {"receipt": _data_url("image/png", bytes(90_000))}})
    assert r.status_code == 413  # past what the request body may hold at all


# --- the real transcription endpoint ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_recording_through_kollm_serve_whisper(tmp_path, tiny_model_dir, whisper_dir, whisper_model):
    """The Studio -> `kollm serve --whisper` (whisper-base) on an espeak-ng English clip: there is no offline
    Korean speech whisper understands (tests/data/speech_clips.py)."""
    from live import running

    from kollm.serve.app import create_app
    from kollm.serve.audio import Transcriber
    from kollm.serve.engine import Engine

    if not speech_clips.have_tools():
        required_in_ci("espeak-ng and sox are missing (apt-get install espeak-ng sox)")
    clip = speech_clips.clip(speech_clips.SENTENCES[:2], tmp_path / "two.wav")
    server = create_app(Engine.load(tiny_model_dir), transcriber=Transcriber(whisper_dir))
    with running(server) as url:
        client = TestClient(make_studio(tmp_path, None, model_url=f"{url}/v1"), raise_server_exceptions=False)
        tok = log_in(client)
        new_app(client, tok, "mm", "meeting-minutes")
        r = _extract(client, tok, "mm", "transcript", "audio", "two.wav", clip.read_bytes())
    assert r.status_code == 200, r.text
    got = r.json()
    said = speech_clips.words(" ".join(speech_clips.SENTENCES[:2]))
    heard = speech_clips.words(got["text"])
    assert _similar(" ".join(heard), " ".join(said)) > 0.8, got["text"]
    assert got["language"] == "english" and abs(got["duration"] - speech_clips.duration(clip)) < 0.1


# --- in a browser ----------------------------------------------------------------------------------------------------
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "studio-files.png"


def test_a_receipt_photo_fills_the_playground_in_a_browser(browser, tmp_path):
    """Playwright in Debian's chromium: create an app from 영수증 정리, choose a rendered receipt in the playground,
    see its OCR text in the box, marked as extracted. With KOLLM_STUDIO_README_SHOT=1 the shot is written
    to docs/studio-files.png."""
    from live import running
    from playwright.sync_api import expect

    photo = tmp_path / "영수증.png"
    photo.write_bytes(RECEIPT.data)
    studio = make_studio(tmp_path, None, model_url="http://127.0.0.1:9/v1", admin_password=PASSWORD)
    with running(studio) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, locale="ko-KR")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        browser_log_in(page, url)
        browser_new_app(page, "receipt-json", "receipt")

        assert page.locator("select[name=file-receipt]").input_value() == "image"
        picker = page.locator(".pg-file[data-var=receipt]")
        expect(picker).to_be_visible()
        picker.locator("input[type=file]").set_input_files(str(photo))
        note = picker.locator(".pg-extracted")
        expect(note).to_contain_text("신뢰도", timeout=60_000)
        assert "done" in (note.get_attribute("class") or ""), note.inner_text()
        box = page.locator("textarea.pg-input[data-var=receipt]")
        text = box.input_value()
        assert _similar(text, RECEIPT.truth) > 0.9 and RECEIPT.truth.splitlines()[0] in text, text
        assert "extracted" in (box.get_attribute("class") or "")
        expect(picker.locator("img.pg-thumb")).to_be_visible()
        page.locator("#playground").scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "files.png"), full_page=False)
        if os.environ.get("KOLLM_STUDIO_README_SHOT"):  # as test_studio_browser.py refreshes docs/studio.png
            DOCS_SHOT.write_bytes((tmp_path / "files.png").read_bytes())
        box.fill(text + "\n메모: 법인카드")  # the text stays editable; an edit is marked as one
        expect(note).to_contain_text("고쳐 씀")

        # a text variable has no picker; choosing 음성 for it shows one that takes recordings
        page.select_option("select[name=file-receipt]", "text")
        expect(picker).to_be_hidden()
        page.select_option("select[name=file-receipt]", "audio")
        assert picker.locator("input[type=file]").get_attribute("accept").startswith("audio/")
        assert not errors, errors
