"""The engine on each model family it claims (Llama, Qwen2, Qwen3, Gemma 3, which run through the engine's own
forward) and on one it does not know (Phi-3, which runs through transformers' forward): small random models
built from transformers' own configs, with the tiny kollm tokenizer. Batched, chunked, continuous decoding must
give each request exactly what transformers' generate gives it alone, past Gemma 3's sliding window too."""

from __future__ import annotations

import pytest
import torch
from reference import engine_greedy_together, hf_greedy

from kollm.serve.config import EngineConfig
from kollm.serve.engine import Engine


def _config(family: str, vocab: int) -> object:
    from transformers import Gemma3TextConfig, LlamaConfig, Phi3Config, Qwen2Config, Qwen3Config

    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.3)
    if family == "llama":
        return LlamaConfig(**common)
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "phi3":
        return Phi3Config(**common, pad_token_id=0)
    if family == "qwen3":
        return Qwen3Config(**common, head_dim=16)
    # Gemma 3: a 24-token sliding window on every other layer, so the prompts below run past it
    return Gemma3TextConfig(**common, head_dim=16, sliding_window=24,
                            layer_types=["sliding_attention", "full_attention"] * 2)


@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen3", "gemma3", "phi3"])
def family_engine(request, tiny_tokenizer, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp(request.param)
    tiny_tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(request.param, len(AutoTokenizer.from_pretrained(out))))
    if request.param == "qwen2":  # q/k/v biases that are not zero, so fusing them is tested too
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.data.normal_(0, 0.3)
    model.save_pretrained(out)
    engine = Engine.load(out, config=EngineConfig(max_num_seqs=3, prefill_chunk=16))
    assert (engine.runner.forward is None) == (request.param == "phi3")  # which forward runs is the point
    return engine


def test_every_family_decodes_in_a_batch_as_alone(family_engine):
    engine = family_engine
    texts = ["대한민국의 수도는 서울이고 부산은 항구 도시이며 제주도는 섬이다. 그리고 오늘 날씨는",
             "한국어", "맛있는 김치찌개를 만들려면 돼지고기와 김치를 먼저 볶고 물을 붓는다. 그 다음에는",
             "서울에서 부산까지"]
    prompts = [engine.encode(t) for t in texts]
    assert max(map(len, prompts)) > 24 + 16  # past the sliding window, over several prefill chunks
    n = [20] * len(prompts)
    assert engine_greedy_together(engine, prompts, n) == [hf_greedy(engine, ids, 20) for ids in prompts]


def test_every_family_checks_drafts_as_it_decodes(family_engine, monkeypatch):
    """Speculative decoding's check step (serve/spec.py) through the engine's own forward and transformers': drafts
    of 4 tokens, the first two right and the third wrong (a random model's text gives prompt lookup little to find),
    checked in one chunk per row, give exactly transformers' greedy tokens."""
    engine = family_engine
    texts = ["한국어 한국어 한국어 한국어 한국어", "서울에서 부산까지 가는 기차는"]
    prompts = [engine.encode(t) for t in texts]
    refs = {tuple(ids): hf_greedy(engine, ids, 30) for ids in prompts}

    def draft(r):
        d = refs[tuple(r.ids)][r.generated:r.generated + 4]
        return d[:2] + [(t + 1) % engine.vocab for t in d[2:3]] + d[3:]

    monkeypatch.setattr(engine, "_draft", draft)
    monkeypatch.setattr(engine.policy, "choose", lambda drafts, accepts: 4)
    before = engine.spec_stats.accepted_tokens
    assert engine_greedy_together(engine, prompts, [30, 30]) == [refs[tuple(ids)] for ids in prompts]
    assert engine.spec_stats.accepted_tokens > before


@pytest.mark.parametrize("family", ["qwen3", "gemma3"])
def test_short_segments_attend_as_one_batch_as_one_by_one(family, monkeypatch):
    """A packed prefill of short segments (prompts' tails, speculation's checks) attends as one padded batch:
    the same logits and the same cache as one attention per segment, slots in any order, past the sliding
    window, over keys already in the cache."""
    from transformers import AutoModelForCausalLM

    import kollm.serve.forward as forward_mod
    from kollm.serve.forward import Forward
    from kollm.serve.kv import Prefill, SlotCache

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(family, 300)).eval()
    fwd = Forward.build(model)

    def run(short_max: int) -> tuple[list[torch.Tensor], SlotCache]:
        monkeypatch.setattr(forward_mod, "SHORT_MAX", short_max)
        cache = SlotCache(len(fwd.layers))
        g = torch.Generator().manual_seed(1)
        steps = [[(0, 0, 30), (2, 0, 20), (1, 0, 26)],  # 30 tokens: the long one goes alone either way
                 [(2, 20, 9), (0, 30, 5)],  # slots out of order, past the 24-token window, over cached keys
                 [(0, 35, 3), (1, 26, 7), (2, 29, 1)]]  # consecutive slots: a view of the cache
        logits = []
        for segs in steps:
            cache.reserve(3, 64)
            ids = torch.randint(0, 300, (sum(n for _, _, n in segs),), generator=g)
            pos = torch.cat([torch.arange(start, start + n) for _, start, n in segs])
            cache.plan = Prefill(segs)
            logits.append(fwd(ids, pos, cache.plan, cache))
        return logits, cache

    short_max = forward_mod.SHORT_MAX
    want, want_cache = run(0)
    got, got_cache = run(short_max)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(got_cache.k + got_cache.v, want_cache.k + want_cache.v, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_decode_rows_ride_along_with_prefills_as_alone(family_engine, monkeypatch):
    """While prompts prefill, the decoding rows run in the same forward (`Engine._mixed_step`) through the engine's
    own forward, and apart through transformers': either way each request gets what it gets alone."""
    engine = family_engine
    calls = []
    mixed = engine.runner.mixed
    monkeypatch.setattr(engine.runner, "mixed", lambda *a, **k: calls.append(len(a[0])) or mixed(*a, **k))
    texts = ["서울에서 부산까지", "대한민국의 수도는 서울이고 부산은 항구 도시이며 제주도는 섬이다. 그리고",
             "김치찌개를 만들려면 돼지고기와 김치를 먼저 볶고 물을 붓는다. 그 다음에는", "한국어"]
    prompts = [engine.encode(t) for t in texts]
    assert engine_greedy_together(engine, prompts, [12, 8, 8, 6]) == [hf_greedy(engine, ids, n) for ids, n in
                                                                        zip(prompts, [12, 8, 8, 6], strict=True)]
    assert bool(calls) == (engine.runner.forward is not None)


@pytest.mark.parametrize("family", ["qwen3", "gemma3"])
def test_a_mixed_step_is_a_decode_step_and_a_prefill(family):
    """One forward over decode rows and prompt chunks (kv.Mixed) gives the logits and the cache that a decode step
    and a packed prefill give one after the other: long and short chunks, past the sliding window."""
    from transformers import AutoModelForCausalLM

    from kollm.serve.forward import Forward
    from kollm.serve.kv import Decode, Mixed, Prefill, SlotCache

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(family, 300)).eval()
    fwd = Forward.build(model)
    g = torch.Generator().manual_seed(1)
    first = torch.randint(0, 300, (40 + 27 + 5,), generator=g)  # what is in the cache before the step
    dec_ids, pre_ids = torch.randint(0, 300, (2,), generator=g), torch.randint(0, 300, (33 + 4,), generator=g)

    def cache_before() -> SlotCache:
        cache = SlotCache(len(fwd.layers))
        cache.reserve(4, 96)
        segs = [(0, 0, 40), (1, 0, 27), (3, 0, 5)]  # slots 0, 1 decode next; 3 goes on prefilling, 2 starts
        cache.plan = Prefill(segs)
        fwd(first, torch.cat([torch.arange(n) for _, _, n in segs]), cache.plan, cache)
        return cache

    decode, prefill = Decode(torch.tensor([40, 27]), 41), Prefill([(2, 0, 33), (3, 5, 4)])
    pre_pos = torch.cat([torch.arange(0, 33), torch.arange(5, 9)])
    want_cache = cache_before()
    want_cache.plan = decode
    want = [fwd(dec_ids, decode.pos, decode, want_cache)]
    want_cache.plan = prefill
    want.append(fwd(pre_ids, pre_pos, prefill, want_cache, torch.tensor([32, 36])))
    got_cache = cache_before()
    got_cache.plan = Mixed(decode, prefill)
    got = fwd(torch.cat([dec_ids, pre_ids]), torch.cat([decode.pos, pre_pos]), got_cache.plan, got_cache,
              torch.tensor([0, 1, 2 + 32, 2 + 36]))
    torch.testing.assert_close(got, torch.cat(want), rtol=1e-4, atol=1e-4)
    for a, b in zip(got_cache.k + got_cache.v, want_cache.k + want_cache.v, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    got_ids = fwd(torch.cat([dec_ids, pre_ids]), torch.cat([decode.pos, pre_pos]), Mixed(decode, prefill),
                  cache_before(), torch.tensor([0, 1, 2 + 32, 2 + 36]), argmax_only=True)
    assert got_ids.tolist() == torch.cat(want).argmax(-1).tolist()
