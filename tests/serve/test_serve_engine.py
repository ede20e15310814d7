"""The continuous-batching engine: batched decoding gives each request what it gets alone, slots are reused and
freed, identical prompts prefill once, stored prefixes are reused."""

from __future__ import annotations

import random
import threading
import time

import pytest
import torch
from live import wait_for
from reference import engine_greedy_together, hf_greedy

from kollm.serve.config import EngineConfig
from kollm.serve.engine import Engine, Finish, Token
from kollm.serve.kv import PREFIX_BLOCK
from kollm.serve.sampling import SamplingParams

PROMPTS = ["대한민국의 수도는", "오늘 날씨가 좋아서 공원에", "한국어", "서울에서 부산까지 기차로 가면 시간이",
           "맛있는 김치찌개를 만들려면 먼저 돼지고기를", "이 제품을 써 보니"]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return Engine.load(tiny_model_dir, config=EngineConfig(max_num_seqs=4, prefill_chunk=8, prefix_cache_mb=64))


def run(engine: Engine, ids: list[int], p: SamplingParams, out: dict | None = None, key: object = None,
        stop_after: int | None = None) -> list[int]:
    toks = []
    steps = engine.generate(ids, p)
    for step in steps:
        if isinstance(step, Token):
            toks.append(step.id)
            if stop_after is not None and len(toks) >= stop_after:
                steps.close()  # a client that goes away
                break
    if out is not None:
        out[key] = toks
    return toks


def run_together(engine: Engine, jobs: list[tuple[list[int], SamplingParams]]) -> dict[int, list[int]]:
    """Each job's tokens (by its index), the jobs submitted while the engine's loop is held, so they all arrive
    in the same step."""
    got: dict = {}
    threads = [threading.Thread(target=run, args=(engine, ids, p, got, i)) for i, (ids, p) in enumerate(jobs)]
    with engine.lock:  # hold the loop so they arrive together
        for t in threads:
            t.start()
        wait_for(lambda: engine._inbox.qsize() == len(jobs), what=f"{len(jobs)} requests arriving")
    for t in threads:
        t.join()
    return got


def wait_idle(engine: Engine) -> None:
    wait_for(lambda: engine.num_running() == 0, what="the engine emptying its slots")


def test_batched_greedy_matches_hf_generate(engine):
    """Requests that join and leave a running batch (4 slots, 6 prompts, 8-token prefill chunks) each get the
    tokens transformers' own generate gives them alone."""
    jobs = [(engine.encode(t), 6 + 5 * i) for i, t in enumerate(PROMPTS)]
    got = engine_greedy_together(engine, [ids for ids, _ in jobs], [n for _, n in jobs])
    assert got == [hf_greedy(engine, ids, n) for ids, n in jobs]
    wait_idle(engine)


def test_random_arrivals_departures_and_cancellations_keep_every_stream_intact(engine):
    """Slot moves under churn: seeded sampled streams are the same as alone, whatever their neighbours do."""
    rng = random.Random(0)
    jobs = []
    for i in range(16):
        ids = engine.encode(rng.choice(PROMPTS) + " " * rng.randint(0, 3))
        p = SamplingParams(max_tokens=rng.randint(1, 24), temperature=1.0, top_p=0.9, top_k=rng.choice([0, 50]),
                           seed=i, ignore_eos=True, repetition_penalty=rng.choice([1.0, 1.2]))
        jobs.append((ids, p, rng.choice([None, None, 3])))
    alone = [run(engine, ids, p, stop_after=cut) for ids, p, cut in jobs]
    got: dict = {}
    threads = []
    for i, (ids, p, cut) in enumerate(jobs):
        threads.append(threading.Thread(target=run, args=(engine, ids, p, got, i, cut)))
        threads[-1].start()
        time.sleep(rng.random() * 0.02)
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(jobs))] == alone
    wait_idle(engine)


def test_identical_prompts_prefill_once(engine):
    """n > 1 (or two clients with one prompt): the prompt runs once; each choice samples on its own seed."""
    ids = engine.encode("쇼핑 기획전 문구를 써 주세요: 겨울 패딩 할인")
    before = engine._stats["prefill_tokens"]
    engine.prefixes.clear()
    got = run_together(engine, [(ids, SamplingParams(max_tokens=8, temperature=1.0, seed=s)) for s in range(3)])
    assert engine._stats["prefill_tokens"] - before == len(ids)
    assert len({tuple(v) for v in got.values()}) > 1  # different seeds, different choices
    for s in range(3):
        engine.prefixes.clear()
        assert run(engine, ids, SamplingParams(max_tokens=8, temperature=1.0, seed=s)) == got[s]


def test_a_stored_prefix_is_reused_and_changes_nothing(engine):
    shots = "다음 검색어를 바르게 고치세요.\n검색어: 서울 날시\n교정: 서울 날씨\n검색어: 부산 맛짚\n교정: 부산 맛집\n"
    a, b = engine.encode(shots + "검색어: 제주도 여횅\n교정:"), engine.encode(shots + "검색어: 노트북 추쳔\n교정:")
    p = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    engine.prefixes.clear()
    cold = run(engine, b, p)
    engine.prefixes.clear()
    run(engine, a, p)
    hits, before = engine.stats().prefix_hits, engine._stats["prefill_tokens"]
    warm = run(engine, b, p)
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    reused = shared  # where the prompts part, not the block before (kv.PrefixStore)
    assert shared % PREFIX_BLOCK and engine.stats().prefix_hits - hits == reused
    assert engine._stats["prefill_tokens"] - before == len(b) - reused
    assert warm == cold


def test_prompts_arriving_with_a_shared_prefix_compute_it_once(engine):
    """Requests that start like one being prefilled wait for it and reuse its KV (a few-shot prefix sent with
    many requests at once): the prefix runs once, and each output is what the request gets alone."""
    shots = "다음 검색어를 바르게 고치세요.\n검색어: 서울 날시\n교정: 서울 날씨\n검색어: 부산 맛짚\n교정: 부산 맛집\n"
    prompts = [engine.encode(shots + f"검색어: {q}\n교정:") for q in ("제주도 여횅", "노트북 추쳔", "겨울 패딩 할인")]
    p = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    alone = []
    for ids in prompts:
        engine.prefixes.clear()
        alone.append(run(engine, ids, p))
    engine.prefixes.clear()
    hits, prefilled = engine._stats["prefix_hits"], engine._stats["prefill_tokens"]
    got = run_together(engine, [(ids, p) for ids in prompts])
    shared = min(next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
                 for a in prompts for b in prompts if a is not b)
    reused = shared
    assert reused >= 2 * PREFIX_BLOCK and engine._stats["prefix_hits"] - hits == 2 * reused
    assert engine._stats["prefill_tokens"] - prefilled == sum(map(len, prompts)) - 2 * reused
    assert [got[i] for i in range(3)] == alone


def test_a_closed_stream_frees_its_slot(engine):
    ids = engine.encode("옛날 옛적에")
    p = SamplingParams(max_tokens=engine.max_len - len(ids), temperature=1.0, seed=1, ignore_eos=True)
    run(engine, ids, p, stop_after=2)
    wait_idle(engine)


def test_finish_reasons_and_stop_strings(engine):
    ids = engine.encode("대한민국의 수도는")
    steps = list(engine.generate(ids, SamplingParams(max_tokens=3, temperature=0, ignore_eos=True)))
    assert isinstance(steps[-1], Finish) and steps[-1].reason == "length" and len(steps) == 4
    text = "".join(s.text for s in engine.generate(ids, SamplingParams(max_tokens=20, temperature=0,
                                                                      ignore_eos=True)) if isinstance(s, Token))
    if len(text) > 2:
        stop = text[1:3]
        steps = list(engine.generate(ids, SamplingParams(max_tokens=20, temperature=0, stop=[stop],
                                                         ignore_eos=True)))
        assert steps[-1].reason == "stop" and stop not in "".join(s.text for s in steps if isinstance(s, Token))


def test_blocked_argmax_is_torch_argmax_ties_and_nan_included():
    from kollm.serve.sampling import argmax_rows

    torch.manual_seed(0)
    for rows, vocab in ((1, 4096), (5, 262144), (3, 1000)):  # 1000: not a multiple of the block, plain argmax
        x = torch.randn(rows, vocab)
        assert torch.equal(argmax_rows(x), x.argmax(-1))
        x[:, 7] = x[:, vocab - 3] = 100.0  # a tie across blocks: the first index wins
        assert torch.equal(argmax_rows(x), x.argmax(-1))
        x[0, vocab // 2] = float("nan")
        assert torch.equal(argmax_rows(x), x.argmax(-1))


def test_close_stops_the_loop_and_fails_what_was_left(tiny_model_dir):
    """An engine closed with a request still running fails it with an error, ends its thread and lets go of its
    KV (kollm eval closes each model's engine when it is done with the model)."""
    eng = Engine.load(tiny_model_dir)
    p = SamplingParams(max_tokens=10_000, temperature=0, ignore_eos=True)
    stream = eng.generate(eng.encode("한국어"), p)
    next(stream)  # running
    eng.close()
    assert not eng._thread.is_alive()
    with pytest.raises(RuntimeError, match="engine was closed"):
        list(stream)
    assert eng.cache.nbytes() == 0
