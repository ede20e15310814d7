"""Generation tasks on kollm's serving engine (FastHF.generate_until): the same texts as lm-eval's HFLM, which runs
transformers' `generate`; what the engine cannot reproduce goes to HFLM; log-likelihood scoring is unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_kollm, with_window

os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"

CONTEXTS = ["서울은 대한민국의", "오늘 아침 기온은", "이 제품은 배송이", "한글은 1443년", "KTX를 타면 서울에서",
            "A: 내일 회의 몇 시에", "서울 " * 400]  # the last is longer than the window: HFLM left-truncates it
GREEDY = [  # what tasks write in generation_kwargs, and lm-eval's aliases and defaults
    {"until": ["\n"], "do_sample": False, "max_gen_toks": 32},
    {"until": ["다", "고 "], "do_sample": False, "max_gen_toks": 40},  # stop strings the tiny model does write
    {"until": "졌", "max_gen_toks": 24},  # a string, no do_sample: temperature 0 -> greedy
    {"until": [" "], "do_sample": False, "max_gen_toks": 7},  # stops at once: every output is ""
    {"max_new_tokens": 5, "temperature": 0.0},  # no until: only EOS, the length limit
    {"until": ["\n\n"], "do_sample": False, "temperature": 0.7, "max_gen_toks": 16},  # do_sample=False wins
]


@pytest.fixture(scope="module")
def long_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny kollm checkpoint with a 512-token window (RoPE extends), so few-shot prompts fit untruncated."""
    return with_window(tiny_model_dir, tmp_path_factory.mktemp("long") / "model", 512)


def instances(kind: str, args: list[tuple]) -> list:
    from lm_eval.api.instance import Instance

    return [Instance(kind, {}, a, i) for i, a in enumerate(args)]


def test_engine_generates_what_hflm_generates(long_model_dir):
    """Stop strings, max_gen_toks and its aliases, a left-truncated context, a mixture of greedy settings in one
    call; the engine is built at the first generation request, once, and log-likelihoods stay the same."""
    from lm_eval.models.huggingface import HFLM

    from kollm.eval.backends import make_backend

    fast = make_backend(str(long_model_dir), "kollm").lm
    ll_reqs = instances("loglikelihood", [(c, " 서울") for c in CONTEXTS] + [("한국의 수도는", " 서울입니다")])
    before = fast.loglikelihood(ll_reqs, disable_tqdm=True)
    reqs = instances("generate_until", [(c, kw) for kw in GREEDY for c in CONTEXTS])
    assert fast._engine is None  # nothing built until a generation request comes
    theirs = HFLM.generate_until(fast, reqs, disable_tqdm=True)  # transformers' generate, HFLM's batches of 8
    ours = fast.generate_until(reqs, disable_tqdm=True)
    assert ours == theirs
    engine = fast._engine
    assert engine is not None and engine.runner.forward is not None  # kollm's own forward, not transformers'
    by_kw = [ours[i * len(CONTEXTS):(i + 1) * len(CONTEXTS)] for i in range(len(GREEDY))]
    assert all(by_kw[0]) and len({len(s) for s in by_kw[0]}) > 1  # real, different outputs
    assert not any("다" in s or "고 " in s for s in by_kw[1]) and sum(map(len, by_kw[1])) < sum(map(len, by_kw[0]))
    assert by_kw[3] == [""] * len(CONTEXTS)
    assert fast.generate_until(reqs[:3], disable_tqdm=True) == ours[:3] and fast._engine is engine  # built once
    after = fast.loglikelihood(ll_reqs, disable_tqdm=True)  # the engine fused q/k/v and gate/up under the model
    assert after == before
    fast.model.generation_config.max_new_tokens = 3  # a folder's own limit: transformers lets it win
    few = reqs[:len(CONTEXTS)]
    assert fast.generate_until(few, disable_tqdm=True) == HFLM.generate_until(fast, few, disable_tqdm=True)


def test_what_the_engine_cannot_reproduce_goes_to_hflm(long_model_dir, monkeypatch):
    """Sampling, and greedy search that the model's generation_config turns into something else (a repetition
    penalty), run through HFLM's own generate_until; the greedy rest on the engine, results in request order."""
    from lm_eval.models.huggingface import HFLM

    from kollm.eval.backends import make_backend

    fast = make_backend(str(long_model_dir), "kollm").lm
    sent = []

    def parent(self, requests, disable_tqdm=False):
        sent.extend(r.args for r in requests)
        return [f"hf:{r.args[0]}" for r in requests]

    greedy = {"until": ["다"], "do_sample": False, "max_gen_toks": 8}
    sampled = {"until": ["다"], "do_sample": True, "temperature": 0.8, "max_gen_toks": 8}
    args = [(CONTEXTS[0], greedy), (CONTEXTS[1], sampled), (CONTEXTS[2], greedy), (CONTEXTS[3], {"temperature": 1.0})]
    expected = HFLM.generate_until(fast, instances("generate_until", [args[0], args[2]]), disable_tqdm=True)
    monkeypatch.setattr(HFLM, "generate_until", parent)
    out = fast.generate_until(instances("generate_until", args), disable_tqdm=True)
    assert sent == [args[1], args[3]]
    assert out == [expected[0], f"hf:{CONTEXTS[1]}", expected[1], f"hf:{CONTEXTS[3]}"]
    sent.clear()
    fast.model.generation_config.repetition_penalty = 1.3
    assert fast.generate_until(instances("generate_until", [args[0]]), disable_tqdm=True) == [f"hf:{CONTEXTS[0]}"]
    assert sent == [args[0]]


def test_kollm_eval_generation_tasks_score_as_with_hf_backend(long_model_dir, tmp_path):
    """`kollm eval` on generation tasks: the kollm backend (serving engine) gives the --backend hf scores."""
    args = ("--model", str(long_model_dir), "--tasks", "kollm_query_correction,kollm_review_summary", "--shots", "2",
            "--limit", "6")
    runs = {}
    for backend in ("kollm", "hf"):
        r = run_kollm("eval", *args, "--backend", backend, "--out", str(tmp_path / backend))
        assert r.returncode == 0, r.stderr[-2000:]
        run = json.loads((tmp_path / backend / "results.json").read_text())["runs"][0]
        assert run["backend"] == backend
        runs[backend] = run["lm_eval"]["results"]
    for task, metrics in (("kollm_query_correction", ("exact_match,none", "char_edit_distance,none")),
                          ("kollm_review_summary", ("rouge_l,none", "chrf,none"))):
        for m in metrics:
            assert runs["kollm"][task][m] == runs["hf"][task][m], (task, m)


def test_generation_tasks_share_their_shots_and_the_engine_runs_them_once(long_model_dir):
    """Generation tasks give every item the same shots (first_n), so their prompts share one prefix, and the
    engine computes it once: the other items wait for the first one's prefill and reuse its KV."""
    import lm_eval

    from kollm.eval.backends import make_backend
    from kollm.eval.harness import task_manager
    from kollm.serve.kv import PREFIX_BLOCK

    fast = make_backend(str(long_model_dir), "kollm").lm
    contexts: list[str] = []
    generate = fast._engine_generate

    def spy(args, disable_tqdm):
        contexts.extend(c for c, _ in args)
        return generate(args, disable_tqdm)

    fast._engine_generate = spy
    lm_eval.simple_evaluate(model=fast, tasks=["kollm_query_correction"], num_fewshot=3, limit=8,
                            task_manager=task_manager(["kollm_query_correction"]), log_samples=False,
                            bootstrap_iters=0, verbosity="ERROR")
    assert len(contexts) == 8 and os.path.commonprefix(contexts).count("교정:") == 3  # the same three shots
    ids = [fast.tok_encode(c) for c in contexts]
    shared = len(os.path.commonprefix(ids))
    stats = fast._engine.stats()
    assert shared >= 2 * PREFIX_BLOCK
    assert stats.prefix_hits >= 7 * shared  # all but the first reused the shots, to where the prompts part


@pytest.mark.slow
def test_engine_generates_what_hflm_generates_on_gemma(gemma_dir):
    """Gemma-3-270M (262k vocabulary, sliding-window layers, kollm's own forward): query correction at 3 shots."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from kollm.eval.backends import make_backend
    from kollm.eval.harness import task_manager

    fast = make_backend(str(gemma_dir), "kollm").lm
    tm = task_manager(["kollm_query_correction"])
    calls = {}

    def record(name, fn):
        def run(requests, disable_tqdm=False):
            calls[name] = fn(requests, disable_tqdm)
            return calls[name]
        return run

    scores = {}
    for name, fn in (("hf", lambda r, d: HFLM.generate_until(fast, r, d)), ("kollm", fast.generate_until)):
        lm = fast
        lm.generate_until = record(name, fn)
        res = lm_eval.simple_evaluate(model=lm, tasks=["kollm_query_correction"], num_fewshot=3, limit=12,
                                      task_manager=tm, log_samples=False, bootstrap_iters=0, verbosity="ERROR")
        scores[name] = res["results"]["kollm_query_correction"]
        del lm.generate_until
    assert calls["kollm"] == calls["hf"]
    assert scores["kollm"]["exact_match,none"] == scores["hf"]["exact_match,none"]
    assert scores["kollm"]["char_edit_distance,none"] == scores["hf"]["char_edit_distance,none"]
