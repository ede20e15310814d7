"""Speculative decoding with a draft model (serve/draft.py): the draft changes how many tokens a step outputs, never
which. The served model is the tiny kollm checkpoint; drafts come from its first layer alone (a smaller model with
the same tokenizer, right often enough to be both kept and refused) and from the model itself (greedy drafts it
always keeps)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from reference import (
    assert_second_tokens_follow,
    engine_greedy_together,
    engine_together,
    hf_greedy,
    second_token_dists,
)

from kollm.errors import KollmError
from kollm.serve.config import EngineConfig, ServeConfig
from kollm.serve.draft import DraftModel, check_speculative
from kollm.serve.engine import Engine
from kollm.serve.sampling import SamplingParams
from kollm.serve.sequence import Sequence
from kollm.serve.spec import Policy

REPEAT = "사과 주스 한 병 사과 주스 한 병 사과 주스 한 병 그리고 "
CFG = {"max_num_seqs": 4, "prefill_chunk": 32}


@pytest.fixture(scope="module")
def draft_dir(tiny_model_dir, tmp_path_factory):
    """The served model's first layer alone, saved as a model folder with the same tokenizer."""
    from transformers import AutoModelForCausalLM

    from kollm.tokenizer import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    model.model.layers = model.model.layers[:1]
    model.config.num_hidden_layers = 1
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:1]
    out = tmp_path_factory.mktemp("draft")
    model.save_pretrained(out)
    load_tokenizer(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def engines(tiny_model_dir, draft_dir):
    """(drafting with the one-layer draft, drafting with the model itself, not drafting)."""
    small = Engine.load(tiny_model_dir, config=EngineConfig(**CFG, speculative="draft", draft_model=str(draft_dir)))
    same = Engine.load(tiny_model_dir, config=EngineConfig(**CFG, speculative="draft",
                                                           draft_model=str(tiny_model_dir)))
    plain = Engine.load(tiny_model_dir, config=EngineConfig(**CFG, speculative="off"))
    yield small, same, plain
    for e in (small, same, plain):
        e.close()


def force(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Drafting forced on every step (the policy would skip steps it measures as not paying); the counts so far."""
    monkeypatch.setattr(engine.policy, "choose", lambda drafts, accepts: 4)
    return engine.stats().spec_draft_tokens, engine.stats().spec_accepted_tokens


def counted(engine: Engine, before: tuple[int, int]) -> tuple[int, int]:
    """Draft tokens proposed and accepted since `before`, as /metrics reports them."""
    st = engine.stats()
    return st.spec_draft_tokens - before[0], st.spec_accepted_tokens - before[1]


def test_greedy_and_seeded_outputs_are_unchanged_in_a_mixed_batch(engines, monkeypatch):
    """Greedy rows, seeded samples, a stop string, logprobs and a JSON schema in one batch: token for token what
    decoding without drafts gives; every draft slot given back once the requests are done."""
    small, _, plain = engines
    before = force(small, monkeypatch)
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["name", "n"]}
    texts = [REPEAT, "한국어 " * 12, '{"name": "사과", "n": 3} {"name": "', REPEAT * 2, "맛있는 김치찌개를 만들려면"]
    prompts = [small.encode(t) for t in texts]

    def params(e: Engine) -> list[SamplingParams]:
        return [SamplingParams(max_tokens=30, temperature=0, stop=["병 그"], ignore_eos=True),
                SamplingParams(max_tokens=30, temperature=0, logprobs=2, ignore_eos=True),
                SamplingParams(max_tokens=30, temperature=0, grammar=e.grammar("json_schema", schema)),
                SamplingParams(max_tokens=30, temperature=0.8, seed=1, ignore_eos=True),
                SamplingParams(max_tokens=25, temperature=1.0, top_p=0.9, seed=2, repetition_penalty=1.2,
                               logprobs=1)]

    a, b = engine_together(small, prompts, params(small)), engine_together(plain, prompts, params(plain))
    assert [[t.id for t in x] for x in a] == [[t.id for t in x] for x in b]
    assert ["".join(t.text for t in x) for x in a] == ["".join(t.text for t in x) for x in b]
    for x, y in zip(a[1] + a[4], b[1] + b[4], strict=True):  # the same distribution, from a longer forward
        assert x.logprob == pytest.approx(y.logprob, abs=1e-4)
        assert x.top.keys() == y.top.keys()
    drafted, accepted = counted(small, before)
    assert drafted > accepted > 0, f"drafted {drafted}, accepted {accepted}: the test needs both kept and refused"
    assert not small.drafter.rows  # finished requests gave their draft KV back


def test_the_model_as_its_own_draft_is_always_right_under_greedy(engines, monkeypatch):
    _, same, plain = engines
    before = force(same, monkeypatch)
    prompts = [same.encode(t) for t in (REPEAT, "한국어 " * 12, "오늘 날씨는")]
    n = [24, 30, 20]
    got = engine_greedy_together(same, prompts, n)
    assert got == engine_greedy_together(plain, prompts, n)
    assert got[2] == hf_greedy(same, prompts[2], n[2])
    drafted, accepted = counted(same, before)
    assert drafted > 0 and accepted >= 0.95 * drafted, (drafted, accepted)


def test_the_draft_kv_holds_exactly_the_accepted_tokens(engines):
    """After refused drafts, a row's draft cache is cut back and proposes what a fresh draft model (an empty cache)
    proposes for the same tokens; a finished request's slot is reused."""
    small = engines[0]
    with small.lock, torch.no_grad():  # the engine's own draft model, between its steps
        check_rollback(small)


def check_rollback(small: Engine) -> None:
    d = small.drafter
    fresh = DraftModel(d.model, d.name, d.utf8)
    r = Sequence(small.encode(REPEAT), SamplingParams(max_tokens=50), False)
    r.seen = list(r.ids) + [r.ids[3]]
    d.catch_up([r])
    first = d.propose([r], 4)[0]
    r.seen += first[:2] + [(first[2] + 1) % small.vocab]  # two kept, the third refused (another token output)
    d.catch_up([r])
    assert d.rows[r].tokens == r.seen[:len(d.rows[r].tokens)] and len(d.rows[r].tokens) >= len(r.seen) - 2
    fresh.catch_up([r])
    assert d.propose([r], 3) == fresh.propose([r], 3)
    slot = d.rows[r].slot
    r.cancelled = True
    d.sweep()
    assert r not in d.rows
    other = Sequence(small.encode("한국어 "), SamplingParams(max_tokens=5), False)
    other.seen = list(other.ids)
    d.catch_up([other])
    assert d.rows[other].slot == slot
    other.cancelled = True
    d.sweep()


def test_sampled_tokens_follow_the_models_distribution(engines, monkeypatch):
    """The model drafting for itself proposes the likeliest second token; the sampler keeps or refuses it: over
    1,000 seeds the second token's distribution is the model's (chi-square against its probabilities)."""
    _, same, _ = engines
    T, K = 1.5, 4
    ids = same.encode("오늘 날씨는")

    second = second_token_dists(same, ids, T, K)
    before = force(same, monkeypatch)
    n = 1000
    p = SamplingParams(max_tokens=3, temperature=T, top_k=K, ignore_eos=True)  # room for a draft after the first
    outs = engine_together(same, [ids] * n, [p.for_choice(i) for i in range(n)])
    assert counted(same, before)[1] > 0
    assert_second_tokens_follow(outs, second, K)


def test_a_request_can_opt_out(engines, monkeypatch):
    small = engines[0]
    before = force(small, monkeypatch)
    p = SamplingParams(max_tokens=20, temperature=0, speculative=False, ignore_eos=True)
    list(small.generate(small.encode(REPEAT), p))
    assert counted(small, before) == (0, 0)


def test_misuse_and_a_foreign_tokenizer_are_refused(engines, tiny_model_dir, draft_dir, tmp_path):
    small = engines[0]
    with pytest.raises(KollmError, match="needs --draft-model"):
        Engine(small.model, small.tokenizer, "x", config=EngineConfig(speculative="draft"))
    with pytest.raises(KollmError, match="only with --speculative draft"):
        check_speculative("ngram", str(draft_dir))
    with pytest.raises(KollmError, match="unknown speculative method"):
        check_speculative("eagle", "")
    foreign = shutil.copytree(draft_dir, tmp_path / "foreign")
    tok = json.loads((foreign / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = list(vocab)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two pieces trade ids: same size, other tokens
    (foreign / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    with pytest.raises(KollmError, match="does not share .* tokenizer"):
        check_speculative("draft", str(foreign), str(tiny_model_dir))  # `kollm serve`, before its port opens
    with pytest.raises(KollmError, match="does not share .* tokenizer"):
        DraftModel.load(foreign, small.tokenizer, small.utf8, "tiny")
    cfg = ServeConfig(model=str(tiny_model_dir), speculative="draft", draft_model=str(draft_dir))
    assert cfg.engine().draft_model == str(draft_dir)
    assert f"draft model {draft_dir.name}" in small.summary()


def test_policy_counts_the_draft_models_forwards():
    policy = Policy()
    room = [[-1] * 4]
    policy.record("decode", 1, 0.050)
    for tokens in range(2, 6):  # checking is nearly free
        policy.record("check", tokens, 0.052)
    assert policy.choose(room, [0.9]) == 4  # the draft's forwards not measured yet: tried
    policy.record("draft", 1, 0.050)  # each proposing forward costs a decode step: never pays
    assert policy.choose(room, [0.9]) == 0
    policy.costs[("draft", 1)] = 0.002  # a draft 25x cheaper: pays
    assert policy.choose(room, [0.9]) > 0
    policy.record("catch_up", 0, 0.5)  # unless feeding it new prompts has cost more than drafting saves
    assert policy.choose(room, [0.9]) == 0
