"""llama.cpp for tests: xllamacpp runs llama.cpp's own server in-process, on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    def __init__(self, base: str):
        self.base = base

    def post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())

    def tokenize(self, text: str, parse_special: bool = True) -> list[int]:
        return self.post("/tokenize", {"content": text, "add_special": False, "parse_special": parse_special})["tokens"]

    def greedy(self, prompt_ids: list[int], n: int) -> list[int]:
        """n tokens by argmax (top_k=1), continuing exactly `prompt_ids` (no BOS added, EOS not a stop)."""
        out = self.post("/completion", {"prompt": prompt_ids, "n_predict": n, "temperature": 0.0, "top_k": 1,
                                        "ignore_eos": True, "return_tokens": True, "cache_prompt": False})
        return out["tokens"]


@contextmanager
def llama_server(gguf_file: str | Path, n_ctx: int = 256) -> Iterator[LlamaServer]:
    import xllamacpp as x

    p = x.CommonParams()
    p.model.path = str(gguf_file)
    p.n_ctx = n_ctx
    p.n_parallel = 1
    p.cpuparams.n_threads = 2
    p.cpuparams_batch.n_threads = 2
    p.warmup = False
    p.port = _free_port()
    server = x.Server(p)
    try:
        yield LlamaServer(server.listening_address)
    finally:
        del server  # its destructor stops llama.cpp's main loop


def hf_greedy(model: object, ids: list[int], n: int) -> list[int]:
    """transformers' greedy continuation of `ids`, exactly `n` tokens (EOS blocked, as llama.cpp's ignore_eos)."""
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(ids):].tolist()
