"""The engine on a real model from another family: Gemma-3-270M (sliding-window layers, GQA, tied head); and what a
real model does with the API's safety features: personal numbers it copies from the prompt are masked everywhere,
and constrained JSON is valid against its schema."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import jsonschema
import pytest
from live import running
from reference import engine_greedy_together, hf_greedy, outside_strings

from kollm.serve.app import create_app
from kollm.serve.config import EngineConfig
from kollm.serve.engine import Engine

pytestmark = pytest.mark.slow

# The base model ships no chat template; Gemma's turn format, for the chat route
GEMMA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' "
                  "else 'user' }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
                  "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


@pytest.fixture(scope="module")
def engine(gemma_dir, tmp_path_factory):
    template = tmp_path_factory.mktemp("gemma") / "chat.jinja"
    template.write_text(GEMMA_TEMPLATE, encoding="utf-8")
    return Engine.load(gemma_dir, template, config=EngineConfig(prefill_chunk=256))


@pytest.fixture(scope="module")
def url(engine):
    with running(create_app(engine)) as u:
        yield u


def test_gemma_batched_greedy_matches_generate_past_the_sliding_window(engine):
    """A 700-token prompt (past Gemma's 512-token window, prefilled in 256-token chunks) and two short ones, in
    one batch: each gets the tokens transformers' own generate gives it alone."""
    sentence = "번째 문장은 서울의 날씨와 교통에 대한 이야기입니다."
    long = "다음은 한국어 문서입니다. " + " ".join(f"{i}{sentence}" for i in range(60))
    prompts = [engine.encode(t) for t in (long, "대한민국의 수도는", "맛있는 김치찌개를 만들려면")]
    assert len(prompts[0]) > 600
    n = [8] * len(prompts)
    assert engine_greedy_together(engine, prompts, n) == [hf_greedy(engine, ids, 8) for ids in prompts]


# Prompts after which Gemma copies a number: the repros (a number to repeat, a prompt ending mid-number)
PII_PROMPTS = [
    ("고객 정보\n이름: 김민수\n연락처: 010-9876-5432\n\n고객 정보\n이름: 김민수\n연락처:", "9876"),
    ("동생 전화번호는 010-1234-5679이고 내 번호는 010-", "1234"),
    ("주민등록번호: 850315-1234567\n다시 한 번 확인합니다. 주민등록번호: 8", "50315"),
    ("문의: kim.minsu@example.co.kr\n다시 적으면 문의:", "@"),
]


def _shows(text: str) -> str:
    """A logprobs token as the characters it stands for (`bytes:\\xNN` tokens as their bytes)."""
    if text.startswith("bytes:"):
        return bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", text)).decode("latin-1")
    return text


@pytest.mark.parametrize(("prompt", "secret"), PII_PROMPTS)
def test_gemma_copies_personal_numbers_and_the_mask_hides_them_everywhere(engine, url, prompt, secret):
    body = {"prompt": prompt, "temperature": 0, "logprobs": 3}
    try:
        engine.mask_pii = False
        plain = httpx.post(f"{url}/v1/completions", json={**body, "max_tokens": 24}, timeout=120).json()
        assert secret in plain["choices"][0]["text"]  # the model does leak it: the mask has work to do
        engine.mask_pii = True
        for max_tokens in (13, 24):  # 13 cuts the number short (the 010-9876-543)
            c = httpx.post(f"{url}/v1/completions", json={**body, "max_tokens": max_tokens}, timeout=120).json()
            c = c["choices"][0]
            shown = [c["text"], *map(_shows, c["logprobs"]["tokens"]),
                     *(_shows(k) for top in c["logprobs"]["top_logprobs"] for k in top)]
            assert not any(re.search(r"\d{2}|@", s) for s in shown), shown
            assert re.search(r"\[(전화번호|주민등록번호|이메일|개인정보)\]", c["text"])
            events = httpx.post(f"{url}/v1/completions", json={**body, "max_tokens": max_tokens, "stream": True},
                                timeout=120).text.split("\n\n")
            streamed = "".join(ch["text"] for e in events if e.startswith("data: {")
                               for ch in json.loads(e[6:])["choices"])
            assert streamed == c["text"]
        echo = httpx.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 1, "echo": True},
                          timeout=120).json()["choices"][0]["text"]
        assert secret not in echo and "[" in echo
    finally:
        engine.mask_pii = False


SCHEMAS = {
    "promo": {"type": "object", "properties": {"title": {"type": "string"}, "discount": {
        "type": "integer", "minimum": 0, "maximum": 90}}, "required": ["title", "discount"]},
    "review": {"type": "object", "properties": {"sentiment": {"type": "string", "enum": ["긍정", "부정", "중립"]},
                                                "summary": {"type": "string"},
                                                "keywords": {"type": "array", "items": {"type": "string"},
                                                             "maxItems": 5}},
               "required": ["sentiment", "summary", "keywords"]},
    "query": {"type": "object", "properties": {"corrected": {"type": "string"}, "changed": {"type": "boolean"}},
              "required": ["corrected", "changed"]},
}
JSON_PROMPTS = {
    "promo": ["겨울 패딩 기획전 홍보 문구를 JSON으로 써 줘.", "설날 선물 세트 할인 행사 문구를 만들어 줘."],
    "review": ["다음 리뷰를 분석해 줘: 배송이 빠르고 포장도 꼼꼼해서 만족스러웠어요.",
               "리뷰: 사이즈가 너무 작고 색이 사진과 달라요. 환불하고 싶어요."],
    "query": ["검색어를 바르게 고쳐 줘: 서울 날시", "검색어 교정: 노트북 추쳔"],
}


def test_gemma_json_schema_outputs_are_valid_and_never_padded(url):
    """3 schemas x 2 prompts, greedy and sampled, at once: every output that ends ("stop") validates against its
    schema; no output pads with whitespace (it reached max_tokens with '{\\n  \\n  \\n' before: 0/5 valid).
    Measured here: 8 of 12 end within 256 tokens; the rest run on inside a free-text string."""

    async def one(client: httpx.AsyncClient, name: str, prompt: str, temperature: float) -> tuple:
        r = await client.post(f"{url}/v1/chat/completions", json={
            "messages": [{"role": "user", "content": prompt}], "max_tokens": 256, "temperature": temperature,
            "seed": 1, "response_format": {"type": "json_schema", "json_schema": {"name": name,
                                                                                  "schema": SCHEMAS[name]}}})
        c = r.json()["choices"][0]
        return name, c["message"]["content"], c["finish_reason"]

    async def run() -> list:
        async with httpx.AsyncClient(timeout=900) as client:
            return await asyncio.gather(*(one(client, name, p, t) for name, prompts in JSON_PROMPTS.items()
                                          for p in prompts for t in (0.0, 0.8)))

    results = asyncio.run(run())
    for _, text, _ in results:
        assert not re.search(r"\s", re.sub(r"[,:] ", "", outside_strings(text))), text
    ended = [(name, text) for name, text, reason in results if reason == "stop"]
    for name, text in ended:
        jsonschema.validate(json.loads(text), SCHEMAS[name])
    assert len(ended) >= 6, results
