"""The argmax head (serve/head.py): float16 logits with a float32 recheck give each row's float32 argmax, near-ties
included; the engine runs it only for steps whose rows are all plain greedy, and its outputs equal the float32
head's."""

from __future__ import annotations

import os

import pytest
import torch
from reference import engine_together, hf_greedy

import kollm.serve.head as head_mod
from kollm.serve.config import EngineConfig
from kollm.serve.engine import Engine
from kollm.serve.head import OutputHead
from kollm.serve.sampling import SamplingParams, argmax_rows


@pytest.fixture
def any_size(monkeypatch):
    """Every float32 head gets the float16 copy (the real threshold is Gemma-sized)."""
    monkeypatch.setattr(head_mod, "FP16_MIN", 0)


def near_tie_head(vocab: int = 4096, hidden: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A head whose rows come in pairs a hair apart (closer than float16 can tell), and hidden states of mixed
    scale: many rows' float16 argmax is the wrong one of a pair."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(vocab // 2, hidden, generator=g) * 0.05
    w = torch.stack([base, base + torch.randn(base.shape, generator=g) * 2e-5], dim=1).reshape(vocab, hidden)
    h = torch.randn(200, hidden, generator=g) * torch.logspace(-1, 2, 200)[:, None]
    h[:100] = w[torch.randint(0, vocab, (100,), generator=g)] * 300  # rows aimed at one token: its pair ties it
    return w.contiguous(), h


@pytest.mark.parametrize("bias", [False, True])
def test_argmax_head_argmax_is_the_float32_argmax_at_near_ties(any_size, bias):
    w, h = near_tie_head()
    b = torch.randn(w.shape[0]) * 1e-4 if bias else None
    head = OutputHead(w, b)
    assert head.half is not None
    exact = torch.nn.functional.linear(h, w, b)
    raw = torch.ops.quantized.linear_dynamic_fp16(h, head.half) + (0 if b is None else b)
    assert (raw.argmax(-1) != exact.argmax(-1)).sum() >= 10  # float16 alone gets these wrong: the test can fail
    assert ((raw - exact).abs() <= head.bound * h.norm(dim=-1, keepdim=True)).all()  # the bound holds everywhere
    assert torch.equal(head.argmax(h), exact.argmax(-1))
    for i in (0, 7, 150):
        torch.testing.assert_close(head.exact_row(i), exact[i], rtol=0, atol=1e-5)


def test_hidden_states_no_bound_narrows_take_the_float32_head(any_size):
    """An infinite or huge hidden state makes every token a candidate: the step runs the float32 head rather than
    gather the whole head once per row."""
    w, h = near_tie_head(seed=2)
    head = OutputHead(w)
    h = h[:4].clone()
    h[3] *= 1e30  # finite, but its norm overflows: the bound is infinite and every token is a candidate
    ran = []
    real = head._exact
    head._exact = lambda x: ran.append(len(x)) or real(x)
    got = head.argmax(h)
    assert ran == [4]  # the float32 head ran
    assert torch.equal(got, argmax_rows(head.forward(h)))
    h[3, 0] = float("inf")  # NaN logits: no candidates, no gathers; the first NaN, as float32's argmax
    assert torch.equal(head.argmax(h), argmax_rows(torch.nn.functional.linear(h, w)))


def test_argmax_head_softcap_and_plain_rows(any_size):
    w, h = near_tie_head(seed=1)
    head = OutputHead(w, None, softcap=30.0)
    exact = torch.tanh(torch.nn.functional.linear(h, w) / 30.0) * 30.0
    torch.testing.assert_close(head.forward(h), exact, rtol=0, atol=1e-5)  # not argmax_only: float32 throughout
    assert head.last is None
    assert torch.equal(head.argmax(h), exact.argmax(-1))
    torch.testing.assert_close(head.exact_row(3), exact[3], rtol=0, atol=1e-5)


@pytest.mark.parametrize("rows", [3, 17, 64])
def test_without_the_copy_argmax_runs_the_float32_slices(rows, monkeypatch):
    """No float16 copy (kollm eval's engine, or a head fbgemm cannot take): the float32 argmax from the slices,
    the same products as the logits, near-ties included; exact_row afterwards."""
    import kollm.serve.packed as packed_mod

    monkeypatch.setattr(packed_mod, "ONE_ROW_SPLIT_MIN", 0)
    w, h = near_tie_head(seed=3)
    h = h[:rows]
    head = OutputHead(w, torch.randn(w.shape[0]) * 1e-4, fp16=False)
    assert head.half is None and head.exact.big
    assert torch.equal(head.argmax(h), argmax_rows(head.forward(h)))
    torch.testing.assert_close(head.exact_row(rows - 1), head.forward(h)[-1], rtol=0, atol=1e-5)


def test_only_big_float32_heads_get_a_float16_copy(monkeypatch):
    w = torch.randn(512, 32)
    assert OutputHead(w).half is None  # below the real threshold: not worth 3 s of packing
    monkeypatch.setattr(head_mod, "FP16_MIN", 0)
    assert OutputHead(w).half is not None
    assert OutputHead(w.bfloat16()).half is None
    assert OutputHead(w, fp16=False).half is None
    big = w.clone()
    big[0, 0] = 1e6  # beyond float16's range
    assert OutputHead(big).half is None


@pytest.fixture(scope="module")
def engines(tiny_model_dir):
    """The tiny model with the argmax head (forced) and without it (the engine's switch, kollm eval's choice)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(head_mod, "FP16_MIN", 0)
        fast = Engine.load(tiny_model_dir, config=EngineConfig(max_num_seqs=4, prefill_chunk=8))
        plain = Engine.load(tiny_model_dir, config=EngineConfig(max_num_seqs=4, prefill_chunk=8, argmax_head=False))
    assert fast.runner.forward.head.half is not None and plain.runner.forward.head.half is None
    yield fast, plain
    fast.close()
    plain.close()


PROMPTS = ["대한민국의 수도는", "오늘 날씨가 좋아서 공원에", "한국어", "서울에서 부산까지 기차로 가면 시간이",
           "맛있는 김치찌개를 만들려면 먼저 돼지고기를"]


def spy(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records each head call: True for an argmax-only one, False for logits."""
    calls: list[bool] = []
    head = engine.runner.forward.head
    for name, only in (("forward", False), ("argmax", True)):
        real = getattr(head, name)
        monkeypatch.setattr(head, name, lambda h, real=real, only=only: calls.append(only) or real(h))
    return calls


@pytest.mark.parametrize("speculative", [False, True])
def test_engine_greedy_with_the_argmax_head_equals_generate(engines, monkeypatch, speculative):
    fast, _ = engines
    calls = spy(fast, monkeypatch)
    ids = [fast.encode(t * 3) for t in PROMPTS]  # repeated text: the n-gram drafter finds drafts
    params = [SamplingParams(max_tokens=12 + 3 * i, temperature=0, ignore_eos=True, speculative=speculative)
              for i in range(len(ids))]
    got = [[t.id for t in toks] for toks in engine_together(fast, ids, params)]
    assert got == [hf_greedy(fast, x, p.max_tokens) for x, p in zip(ids, params, strict=True)]
    assert calls and all(calls)  # every step of plain greedy rows ran the argmax head


def test_rows_that_sample_or_report_logprobs_make_the_step_exact(engines, monkeypatch):
    fast, plain = engines
    calls = spy(fast, monkeypatch)
    ids = [fast.encode(t) for t in PROMPTS[:4]]
    params = [SamplingParams(max_tokens=10, temperature=0, ignore_eos=True),
              SamplingParams(max_tokens=10, temperature=0.8, seed=5, ignore_eos=True),
              SamplingParams(max_tokens=10, temperature=0, logprobs=3, ignore_eos=True),
              SamplingParams(max_tokens=10, temperature=0, logit_bias={5: 3.0}, ignore_eos=True)]
    got = engine_together(fast, ids, params)
    want = engine_together(plain, ids, params)
    assert [[t.id for t in x] for x in got] == [[t.id for t in x] for x in want]
    for a, b in zip(got[2], want[2], strict=True):  # reported log-probabilities come from float32 logits
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
    assert False in calls


def test_a_greedy_row_the_guard_refuses_is_masked_from_exact_logits(engines, monkeypatch):
    """When a row's argmax cannot be taken as is (the UTF-8 guard, here every row), the engine masks and picks from
    the row's exact logits, not the float16 ones."""
    fast, plain = engines
    used: list[int] = []
    real = fast.runner.exact_row

    def exact_row(i: int) -> torch.Tensor:
        used.append(i)
        return real(i)

    monkeypatch.setattr(fast.runner, "exact_row", exact_row)
    monkeypatch.setattr(fast, "_greedy", lambda r, best: None)
    ids = [fast.encode(t) for t in PROMPTS[:3]]
    params = [SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)] * 3
    got = engine_together(fast, ids, params)
    assert [[t.id for t in x] for x in got] == [[t.id for t in x] for x in engine_together(plain, ids, params)]
    assert len(used) >= 3 * 8


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS from /proc (Linux)")
def test_the_float16_copy_takes_the_memory_the_start_up_line_reports(monkeypatch):
    """fbgemm pads a row's inputs to blocks of 512: Gemma's 640 take 1,024, and the engine says so."""
    monkeypatch.setattr(head_mod, "FP16_MIN", 0)
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    w = torch.randn(65536, 640)
    before = rss()
    head = OutputHead(w)
    grown = rss() - before
    assert head.half_bytes == 65536 * 1024 * 2
    assert 0.9 * head.half_bytes < grown < 1.2 * head.half_bytes
