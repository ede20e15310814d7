"""Image parts in chat (serve/images.py): the official client's image_url parts are read by OCR and their text
goes where the image was, marked; remote URLs, bad data and oversized images are OpenAI-style 4xx errors."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import openai
import pytest
from conftest import with_window
from live import running
from PIL import Image, ImageDraw, ImageFont

from kollm.data import ocr
from kollm.metrics import cer
from kollm.serve import images
from kollm.serve.app import create_app
from kollm.serve.engine import Engine
from kollm.serve.protocol import MAX_IMAGE_BYTES, MAX_IMAGES

FONT_DIR = Path("/usr/share/fonts/truetype/nanum")  # fonts-nanum, as tests/data/ocr_images.py draws with
TRUTH = "합계 23,400원\nSamsung 케이블 1개"


def _png(lines: str) -> bytes:
    font = ImageFont.truetype(str(FONT_DIR / "NanumGothic.ttf"), 28)
    img = Image.new("L", (420, 130), 255)
    d = ImageDraw.Draw(img)
    for k, line in enumerate(lines.splitlines()):
        d.text((20, 20 + 45 * k), line, font=font, fill=0)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    engine = Engine.load(with_window(tiny_model_dir, tmp_path_factory.mktemp("m") / "model", 1024))
    with running(create_app(engine)) as url:
        yield url, engine.name


def test_image_part_is_read_into_the_prompt(server):
    url, name = server
    png = _png(TRUTH)
    seen = ocr.ocr_image(png).text
    assert cer(seen, TRUTH) < 0.1  # the text the model gets is the image's
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    with_image = [{"role": "user", "content": [
        {"type": "text", "text": "이 영수증의 합계는?"},
        {"type": "image_url", "image_url": {"url": _url(png), "detail": "high"}}]}]
    as_text = [{"role": "user", "content": "이 영수증의 합계는?\n" + images.marked(seen)}]
    a = client.chat.completions.create(model=name, messages=with_image, max_tokens=6, temperature=0)
    b = client.chat.completions.create(model=name, messages=as_text, max_tokens=6, temperature=0)
    assert a.usage.prompt_tokens == b.usage.prompt_tokens
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.model_extra["prompt_characters"] == len(as_text[0]["content"])
    streamed = client.chat.completions.create(model=name, messages=with_image, max_tokens=6, temperature=0,
                                              stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == a.choices[0].message.content
    assert images.marked(seen).startswith("[이미지 텍스트]\n") and images.marked(seen).endswith("\n[/이미지 텍스트]")


def _post(url: str, content: list | str, role: str = "user") -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=60,
                      json={"messages": [{"role": role, "content": content}], "max_tokens": 2})


def _image(u: str) -> list:
    return [{"type": "image_url", "image_url": {"url": u}}]


@pytest.mark.parametrize(("url", "needle"), [
    ("https://example.com/receipt.png", "remote image URLs are not fetched"),
    ("http://127.0.0.1:1/x.png", "remote image URLs are not fetched"),
    ("file:///etc/passwd", "must be a data URL"),
    ("data:image/png;base64,@@@@", "not valid base64"),
    ("data:image/png;base64,", "empty"),
    ("data:image/png;base64,AA==", "not a readable image"),
    ("data:image/png," + "x" * 10, "base64 image"),
    ("data:text/plain;base64,7JWI64WV", "base64 image"),
])
def test_bad_image_urls_are_400(server, url, needle):
    r = _post(server[0], _image(url))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert needle in err["message"] and err["param"] == "messages" and err["type"] == "invalid_request_error"
    assert "messages[0].content[0].image_url" in err["message"]


def test_remote_url_through_the_client_and_other_limits(server):
    url, name = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="data URL"):
        client.chat.completions.create(model=name, max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    r = _post(url, _image(_url(_png("가"))), role="system")
    assert r.status_code == 400 and "only allowed in user messages" in r.json()["error"]["message"]
    r = _post(url, _image(_url(_png("가"))) * (MAX_IMAGES + 1))
    assert r.status_code == 400 and f"at most {MAX_IMAGES} images" in r.json()["error"]["message"]
    r = _post(url, _image("data:image/png;base64," + "A" * ((MAX_IMAGE_BYTES + 2) // 3 * 4 + 8)))
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large", r.text
    assert "over the 8,388,608-byte limit" in r.json()["error"]["message"]
    r = _post(url, "가" * (5 << 20))  # the room for an image does not make a text body unbounded
    assert r.status_code == 413


def test_a_server_without_tesseract_says_what_to_install(server, monkeypatch):
    ocr._tesseract.cache_clear()
    try:
        monkeypatch.setattr(ocr.shutil, "which", lambda _: None)
        r = _post(server[0], _image(_url(_png("가"))))
        assert r.status_code == 501 and r.json()["error"]["code"] == "ocr_unavailable"
        assert "apt-get install tesseract-ocr tesseract-ocr-kor" in r.json()["error"]["message"]
        assert _post(server[0], "안녕").status_code == 200  # text requests are unaffected
    finally:
        monkeypatch.undo()
        ocr._tesseract.cache_clear()
