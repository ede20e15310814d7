"""The lm-eval model behind `kollm eval --model`: a HF folder in-process, or an OpenAI-compatible server by URL.

BOS follows kollm's one rule (`special_tokens.encode_with_bos`: first when the tokenizer defines one, as in
training and serving), decided once, here, and handed to every backend: lm-eval's API backend sends no BOS by
default, so a model served by vLLM scored lower than the same model in-process (Gemma-3-270M: 0.567 vs 0.633 on a
30-item Korean COPA-style task) until both prepend it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kollm.errors import KollmError

BACKENDS = ("kollm", "hf")  # in-process: kollm = FastHF (shared-context KV reuse), hf = lm-eval's own HFLM


@dataclass
class Backend:
    lm: Any  # an lm_eval.api.model.LM
    name: str  # what results.json records: kollm | hf | local-completions
    model: str  # the folder or URL as given
    add_bos_token: bool


def is_url(model: str) -> bool:
    return model.startswith(("http://", "https://"))


def _bos_tokenizer(folder: str | Path) -> tuple[Any, bool]:
    """The folder's tokenizer, made to prepend BOS on its own `encode` (lm-eval encodes through it) exactly when it
    defines one, and whether it does: kollm tokenizers name `<|bos|>`, Gemma's `<bos>`, Qwen's none."""
    from kollm.tokenizer import load_tokenizer  # transformers: seconds to import, only once a model is evaluated

    tok = load_tokenizer(folder, add_bos=True)
    return tok, tok.bos_token_id is not None


def check_server(url: str, timeout: float = 5.0) -> str:
    """The served model's id from GET /v1/models; an unreachable URL is a one-line error, not a hang."""
    base = url.rstrip("/").removesuffix("/completions").removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{base}/v1/models", timeout=timeout) as r:
            data = json.loads(r.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise KollmError(f"cannot reach the model server at {url} ({reason}); start it (kollm serve --model DIR, "
                         "vllm serve ...) or fix --model") from None
    models = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]
    return models[0] if models else "default"


def make_backend(model: str, backend: str = "kollm", tokenizer: str | None = None, batch_size: int = 8,
                 max_length: int | None = None) -> Backend:
    """An lm-eval LM for `model` (a HF folder or a server URL); `tokenizer` defaults to the model folder."""
    if is_url(model):
        return _server(model, tokenizer, batch_size)
    if backend not in BACKENDS:
        raise KollmError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)} (a URL picks the server)")
    from kollm.model.hf import load_hf_causal_lm

    folder = Path(model)
    if not (folder / "config.json").is_file():
        raise KollmError(f"{folder} is not a Hugging Face model folder (no config.json); pass --model DIR or URL")
    tok, add_bos = _bos_tokenizer(Path(tokenizer) if tokenizer else folder)
    net, _ = load_hf_causal_lm(folder)  # device and dtype from kollm.runtime
    # kollm folders carry serving defaults (max_new_tokens=128) in generation_config.json, which transformers
    # would let override each task's max_gen_toks; a task's own limit must win
    net.generation_config.max_new_tokens = None
    if backend == "kollm":
        from kollm.eval.fast import FastHF as cls
    else:
        from lm_eval.models.huggingface import HFLM as cls
    lm = cls(pretrained=net, tokenizer=tok, batch_size=batch_size, add_bos_token=add_bos, max_length=max_length)
    return Backend(lm, backend, model, add_bos)


def _server(url: str, tokenizer: str | None, batch_size: int) -> Backend:
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    if not tokenizer:
        raise KollmError(f"--model {url} is a server: also pass --tokenizer DIR (the served model's folder), "
                         "which lm-eval needs to split context from continuation")
    name = check_server(url)
    tok, add_bos = _bos_tokenizer(tokenizer)
    base = url.rstrip("/")
    if not base.endswith("/completions"):
        base = base.removesuffix("/v1") + "/v1/completions"
    lm = LocalCompletionsAPI(base_url=base, model=name, tokenizer=str(tokenizer), tokenizer_backend="huggingface",
                             add_bos_token=add_bos, batch_size=batch_size, max_retries=1, timeout=120)
    lm.tokenizer = tok  # lm-eval loads it without add_bos_token; BOS must come from the tokenizer itself
    return Backend(lm, "local-completions", url, add_bos)
