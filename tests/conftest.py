"""Shared fixtures: a tiny tokenizer and a tiny trained-format model, built by the tests themselves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "corpora"

KOREAN_LINES = [
    "서울은 대한민국의 수도이며 한강이 도시를 가로질러 흐른다.",
    "오늘 아침 기온은 영하 3도까지 떨어졌고 오후에는 눈이 내릴 전망이다.",
    "이 제품은 배송이 빨랐고 포장도 꼼꼼해서 만족스러웠어요 ㅎㅎ",
    "한글은 1443년 세종대왕이 창제한 문자로 자음과 모음을 모아 쓴다.",
    "A: 내일 회의 몇 시에 시작해요? B: 오전 10시에 3층 회의실에서요.",
    "KTX를 타면 서울에서 부산까지 2시간 30분 정도 걸린다.",
    "Python과 PyTorch로 작은 언어 모델을 학습해 보았다. 🙂",
]


def korean_texts(n: int = 60) -> list[str]:
    """Deterministic small Korean documents (enough for a tokenizer and a few training steps)."""
    return [" ".join(KOREAN_LINES[(i + j) % len(KOREAN_LINES)] for j in range(3 + i % 4)) for i in range(n)]


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from kollm.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    return save_tokenizer(train_tokenizer(korean_texts(), TokenizerConfig(vocab_size=400)), out)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """A kollm model trained for a few steps and exported as a HF folder."""
    from kollm.model import ModelConfig
    from kollm.train import TrainConfig, train_model

    out = tmp_path_factory.mktemp("run")
    texts = korean_texts()
    res = train_model(ModelConfig(depth=2, max_seq_len=64), TrainConfig(batch_size=4, max_steps=8, eval_every_s=1e9),
                      tiny_tokenizer, texts[:50], texts[50:], out)
    return res.model_dir


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def run_kollm(*args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run the real `kollm` command (as a user would) and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "kollm.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)
