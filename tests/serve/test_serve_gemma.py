"""The engine on a real model from another family: Gemma-3-270M (sliding-window layers, GQA, tied head)."""

from __future__ import annotations

import threading

import pytest
import torch

from kollm.serve.engine import Engine, EngineConfig, Token
from kollm.serve.sampling import SamplingParams

pytestmark = pytest.mark.slow


def test_gemma_batched_greedy_matches_generate_past_the_sliding_window(gemma_dir):
    """A 700-token prompt (past Gemma's 512-token window, prefilled in 256-token chunks) and two short ones, in
    one batch: each gets the tokens transformers' own generate gives it alone."""
    engine = Engine.load(gemma_dir, config=EngineConfig(prefill_chunk=256))
    sentence = "번째 문장은 서울의 날씨와 교통에 대한 이야기입니다."
    long = "다음은 한국어 문서입니다. " + " ".join(f"{i}{sentence}" for i in range(60))
    prompts = [engine.encode(t) for t in (long, "대한민국의 수도는", "맛있는 김치찌개를 만들려면")]
    assert len(prompts[0]) > 600
    ref = []
    for ids in prompts:

        def utf8(input_ids: torch.Tensor, scores: torch.Tensor, start: int = len(ids)) -> torch.Tensor:
            owed = 0
            for t in input_ids[0, start:].tolist():
                owed = engine.utf8.step(owed, t)
            return engine.utf8.mask(scores, owed)

        out = engine.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    max_new_tokens=8, min_new_tokens=8, do_sample=False, logits_processor=[utf8])
        ref.append(out[0, len(ids):].tolist())
    got: dict = {}

    def run(i: int) -> None:
        p = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
        got[i] = [s.id for s in engine.generate(prompts[i], p) if isinstance(s, Token)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(prompts))] == ref
