"""Speculative decoding (serve/spec.py): drafts change how many tokens a step outputs, never which. Greedy output
is token-for-token that of non-speculative decoding, a seeded sample draw-for-draw, and the sampled tokens follow
the model's distribution (checked statistically against the probabilities computed directly)."""

from __future__ import annotations

import re

import httpx
import pytest
from live import running
from reference import (
    assert_second_tokens_follow,
    engine_greedy_together,
    engine_together,
    hf_greedy,
    second_token_dists,
)

from kollm.serve.app import create_app
from kollm.serve.config import EngineConfig
from kollm.serve.engine import Engine, Token
from kollm.serve.sampling import SamplingParams
from kollm.serve.spec import MAX_TOKENS, Ngrams, Policy, expected_tokens

REPEAT = "사과 주스 한 병 사과 주스 한 병 사과 주스 한 병 그리고 "


@pytest.fixture(scope="module")
def engines(tiny_model_dir):
    spec = Engine.load(tiny_model_dir, config=EngineConfig(max_num_seqs=4, prefill_chunk=32))
    plain = Engine.load(tiny_model_dir, config=EngineConfig(max_num_seqs=4, prefill_chunk=32, speculative="off"))
    return spec, plain


@pytest.fixture
def always_draft(engines, monkeypatch):
    """Drafting forced on every step (the policy would skip steps it measures as not paying)."""
    spec = engines[0]
    monkeypatch.setattr(spec.policy, "choose", lambda drafts, accepts: 4)
    before = (spec.spec_stats.draft_tokens, spec.spec_stats.accepted_tokens)
    yield spec
    drafted = spec.spec_stats.draft_tokens - before[0]
    accepted = spec.spec_stats.accepted_tokens - before[1]
    assert drafted > accepted > 0, f"drafted {drafted}, accepted {accepted}: the test needs both kept and refused"


def test_ngrams_draft_what_followed_the_latest_longest_match():
    ng = Ngrams([1, 2, 3, 9, 1, 2, 4, 5, 6, 7, 1, 2])
    assert ng.draft(3) == [4, 5, 6]  # [1, 2] last followed by 4 (not the older 3)
    ng.append(4)
    assert ng.draft(2) == [5, 6]  # [2, 4] (and [1, 2, 4]) matched: longest first
    ng.append(8)
    assert ng.draft(3) == []  # [4, 8] never occurred before; a 1-token match is not used
    ng = Ngrams([5, 6, 7, 5, 6])
    assert ng.draft(10) == [7, 5, 6]  # never past the end


def test_policy_drafts_only_when_measured_to_pay():
    policy = Policy()
    drafts, accepts = [[1, 2, 3, 4]], [0.9]
    assert policy.choose(drafts, accepts) == 0  # the plain step is measured first
    policy.record("decode", 1, 0.050)
    k = policy.choose(drafts, accepts)
    assert k > 0  # checking shapes not yet measured get tried
    for tokens in range(2, 6):  # a check costs as much as decoding its tokens one by one: never pays
        policy.record("check", tokens, 0.050 * tokens)
    assert policy.choose(drafts, accepts) == 0
    policy = Policy()
    policy.record("decode", 1, 0.050)
    for tokens in range(2, 6):  # checking is nearly free: the longest draft pays
        policy.record("check", tokens, 0.052)
    assert policy.choose(drafts, accepts) == 4
    assert policy.choose([[]], [0.9]) == 0  # nothing to check
    assert policy.choose(drafts, [0.0]) == 0  # drafts that are never accepted
    big = [[1, 2, 3]] * 40  # 40 rows: any draft passes the step's token bound
    policy.record("decode", 40, 0.2)
    assert policy.choose(big, [0.9] * 40) * 40 + 40 <= MAX_TOKENS
    assert expected_tokens(0.5, 2) == 1.75


def test_greedy_output_is_the_same_token_for_token(engines, always_draft):
    spec, plain = engines
    texts = [REPEAT, "한국어 " * 12, "맛있는 김치찌개를 만들려면 돼지고기와 김치를 먼저 볶고", REPEAT + "사과"]
    prompts = [spec.encode(t) for t in texts]
    n = [24, 30, 16, 40]
    got = engine_greedy_together(spec, prompts, n)
    assert got == engine_greedy_together(plain, prompts, n)
    assert got == [hf_greedy(spec, ids, k) for ids, k in zip(prompts, n, strict=True)]


def test_seeded_samples_stops_logprobs_and_penalties_are_unchanged(engines, always_draft):
    spec, plain = engines
    prompts = [spec.encode(REPEAT)] * 3 + [spec.encode("한국어 " * 10), spec.encode(REPEAT * 2)]
    params = [SamplingParams(max_tokens=30, temperature=0.8, seed=1, ignore_eos=True),
              SamplingParams(max_tokens=30, temperature=1.0, top_p=0.9, top_k=20, seed=2, logprobs=2),
              SamplingParams(max_tokens=30, temperature=0, repetition_penalty=1.3, presence_penalty=0.2,
                             stop=["병 그"], ignore_eos=True),
              SamplingParams(max_tokens=25, temperature=0.7, seed=3, frequency_penalty=0.3, min_p=0.05),
              SamplingParams(max_tokens=30, temperature=0.05, seed=4, ignore_eos=True)]  # drafts often kept
    a, b = engine_together(spec, prompts, params), engine_together(plain, prompts, params)
    assert [[t.id for t in x] for x in a] == [[t.id for t in x] for x in b]
    assert "".join(t.text for t in a[2]) == "".join(t.text for t in b[2])
    for x, y in zip(a[1], b[1], strict=True):  # the same distribution, computed in a longer forward
        assert x.logprob == pytest.approx(y.logprob, abs=1e-4)
        assert x.top.keys() == y.top.keys()


def test_json_schema_output_is_unchanged(engines, always_draft):
    spec, plain = engines
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["name", "n"]}
    prompt = spec.encode('{"name": "사과", "n": 3} {"name": "사과", "n": 3} {"name": "')
    out = []
    for e in (spec, plain):
        p = SamplingParams(max_tokens=40, temperature=0, grammar=e.grammar("json_schema", schema))
        out.append("".join(t.text for t in e.generate(prompt, p) if isinstance(t, Token)))
    assert out[0] == out[1]


def test_a_request_can_opt_out(engines, monkeypatch):
    spec = engines[0]
    monkeypatch.setattr(spec.policy, "choose", lambda drafts, accepts: 4)
    before = spec.spec_stats.draft_tokens
    p = SamplingParams(max_tokens=20, temperature=0, speculative=False, ignore_eos=True)
    list(spec.generate(spec.encode(REPEAT), p))
    assert spec.spec_stats.draft_tokens == before


def test_sampled_tokens_follow_the_models_distribution(engines, monkeypatch):
    """The second token is checked against a forced draft (the likeliest token after the first), kept or refused
    by the sampler: over 1,500 seeds its distribution is the model's (a chi-square test against the probabilities
    computed from the model's logits)."""
    spec, T, K = engines[0], 1.5, 4
    ids = spec.encode("오늘 날씨는")

    second = second_token_dists(spec, ids, T, K)
    monkeypatch.setattr(spec, "_draft", lambda r: [second[r.pending][0][0]] if r.generated == 1 else [])
    monkeypatch.setattr(spec.policy, "choose", lambda drafts, accepts: 4)
    n, before = 1500, spec.spec_stats.accepted_tokens
    p = SamplingParams(max_tokens=3, temperature=T, top_k=K, ignore_eos=True)  # room for a draft after the first
    outs = engine_together(spec, [ids] * n, [p.for_choice(i) for i in range(n)])
    assert spec.spec_stats.accepted_tokens > before
    assert_second_tokens_follow(outs, second, K)


def test_the_api_takes_the_opt_out_and_metrics_count_drafts(engines, monkeypatch):
    """`"speculative": false` in a request body (kollm's extension) gives the same text; /metrics shows vLLM's
    spec_decode counters; an unknown method is a one-line error."""
    spec = engines[0]
    monkeypatch.setattr(spec.policy, "choose", lambda drafts, accepts: 4)
    with running(create_app(spec)) as url:
        body = {"model": spec.name, "prompt": REPEAT, "max_tokens": 8, "temperature": 0, "ignore_eos": True}
        r = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text
        on = r.json()["choices"][0]["text"]
        off = httpx.post(f"{url}/v1/completions", json={**body, "speculative": False}, timeout=60)
        assert off.status_code == 200 and off.json()["choices"][0]["text"] == on
        bad = httpx.post(f"{url}/v1/completions", json={**body, "speculative": "sometimes"}, timeout=60)
        assert bad.status_code == 400
        text = httpx.get(f"{url}/metrics").text
    counts = {name: float(re.search(rf"^kollm:spec_decode_num_{name}_total (\S+)$", text, re.M).group(1))
              for name in ("drafts", "draft_tokens", "accepted_tokens")}
    assert counts["draft_tokens"] >= counts["accepted_tokens"] > 0 and counts["drafts"] > 0
    with pytest.raises(Exception, match="unknown speculative method"):
        Engine(spec.model, spec.tokenizer, "x", config=EngineConfig(speculative="eagle"))
