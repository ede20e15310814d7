"""The engine on a real model from another family: Gemma-3-270M (sliding-window layers, GQA, tied head)."""

from __future__ import annotations

import pytest
from reference import engine_greedy_together, hf_greedy

from kollm.serve.config import EngineConfig
from kollm.serve.engine import Engine

pytestmark = pytest.mark.slow


def test_gemma_batched_greedy_matches_generate_past_the_sliding_window(gemma_dir):
    """A 700-token prompt (past Gemma's 512-token window, prefilled in 256-token chunks) and two short ones, in
    one batch: each gets the tokens transformers' own generate gives it alone."""
    engine = Engine.load(gemma_dir, config=EngineConfig(prefill_chunk=256))
    sentence = "번째 문장은 서울의 날씨와 교통에 대한 이야기입니다."
    long = "다음은 한국어 문서입니다. " + " ".join(f"{i}{sentence}" for i in range(60))
    prompts = [engine.encode(t) for t in (long, "대한민국의 수도는", "맛있는 김치찌개를 만들려면")]
    assert len(prompts[0]) > 600
    n = [8] * len(prompts)
    assert engine_greedy_together(engine, prompts, n) == [hf_greedy(engine, ids, 8) for ids in prompts]
